package dpop

import "github.com/jwtguard/caddy-jwtguard/verifier"

// CodeDPoP is the jwtguard error code of a request whose DPoP proof is
// missing, invalid, replayed, too old, for another URL or method, or lacks
// a required nonce. verifier has no such code yet; the handler needs it in
// verifier.Codes for its metric series.
const CodeDPoP verifier.Code = "dpop"

// The error values of the DPoP challenge (RFC 9449 §7.1, §8, §12.2).
const (
	ErrorInvalidProof = "invalid_dpop_proof"
	ErrorUseNonce     = "use_dpop_nonce"
	ErrorInvalidToken = "invalid_token"
)

// Error is a request refused by Verify or ProofHeader.
type Error struct {
	// Code is what the handler reports ({http.auth.jwt.error}, metrics,
	// logs): CodeDPoP, verifier.CodeBinding, or
	// verifier.CodeStoreUnavailable when the replay cache cannot answer
	// (full, or a shared cache unreachable): fail closed, 503.
	Code verifier.Code
	// Challenge is the error of the DPoP challenge: ErrorInvalidProof,
	// ErrorUseNonce or ErrorInvalidToken; empty with store_unavailable.
	Challenge string
	// Reason is short fixed text, safe for error_description: it never
	// holds proof or token data.
	Reason string
	// Nonce, with ErrorUseNonce, is the value to send in DPoP-Nonce.
	Nonce string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Reason }

func invalid(reason string) *Error {
	return &Error{Code: CodeDPoP, Challenge: ErrorInvalidProof, Reason: reason}
}

// Errors without detail are allocated once: a flood of bad proofs should
// not also be a flood of garbage.
var (
	errMissing      = invalid("missing DPoP proof")
	errRepeated     = invalid("more than one DPoP header")
	errTooLong      = invalid("DPoP proof too long")
	errSegments     = invalid("DPoP proof is not a JWS in compact form")
	errHeaderJSON   = invalid("DPoP proof header is not a JSON object")
	errPayloadJSON  = invalid("DPoP proof claims are not a JSON object")
	errType         = invalid("DPoP proof typ is not dpop+jwt")
	errCrit         = invalid("DPoP proof header has a crit parameter")
	errAlgorithm    = invalid("DPoP proof algorithm not allowed")
	errNoJWK        = invalid("DPoP proof header has no jwk")
	errJWK          = invalid("DPoP proof jwk is not a valid public key")
	errPrivateKey   = invalid("DPoP proof jwk holds a private key")
	errKeyAlgorithm = invalid("DPoP proof jwk does not match its algorithm")
	errRSASize      = invalid("DPoP proof RSA key too small")
	errClaims       = invalid("DPoP proof claim missing or of the wrong type")
	errJTI          = invalid("DPoP proof jti missing or too long")
	errMethod       = invalid("DPoP proof htm does not match the request method")
	errURL          = invalid("DPoP proof htu does not match the request URL")
	errTooOld       = invalid("DPoP proof too old")
	errFuture       = invalid("DPoP proof issued in the future")
	errATH          = invalid("DPoP proof ath does not match the access token")
	errSignature    = invalid("DPoP proof signature invalid")
	errReplay       = invalid("DPoP proof replayed")
	errNoToken      = invalid("no access token for the DPoP proof")

	errUnbound  = &Error{Code: verifier.CodeBinding, Challenge: ErrorInvalidToken, Reason: "token is not bound to a DPoP key"}
	errMismatch = &Error{Code: verifier.CodeBinding, Challenge: ErrorInvalidToken, Reason: "DPoP proof key is not the key the token is bound to"}
	errFull     = &Error{Code: verifier.CodeStoreUnavailable, Reason: "too many recent DPoP proofs to remember"}
	errReplayIO = &Error{Code: verifier.CodeStoreUnavailable, Reason: "DPoP replay cache unavailable"}
)
