//go:build jwtguard_bench

package dpop

import "github.com/jwtguard/caddy-jwtguard/verifier"

// AcceptAnySignature makes v take every proof signature as valid, so that
// a benchmark of a caller (the handler's, in the root package) measures
// everything but the signature check on its own. It exists only in test
// builds with -tags jwtguard_bench.
func (v *Verifier) AcceptAnySignature() {
	v.checkSig = func(verifier.Algorithm, string, []byte, any) bool { return true }
}
