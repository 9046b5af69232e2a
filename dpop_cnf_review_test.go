package jwtguard

import (
	"crypto/x509"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyserver/caddy/v2"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// TestAttackUnknownConfirmation: a token bound by a confirmation method
// jwtguard cannot check (cnf.jwk, cnf.x5t's SHA-1 form, cnf.kid) is never
// a bearer token, nor passes on the strength of a DPoP proof or a client
// certificate: on a route with dpop, with mtls, and with only detect's
// binding rule (each of which lets bound tokens past the verifier) it is
// refused with binding, as the SPEC's "never accepted as a plain bearer
// token" asks; and also with every cnf the token also holding a thumbprint
// this route cannot prove.
func TestAttackUnknownConfirmation(t *testing.T) {
	store, err := revocation.Open(t.TempDir(), revocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	alice := newDPoPKey(t)
	handlers := map[string]*Handler{
		"dpop":           newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop\n}"),
		"mtls":           newHandler(t, "jwtguard {\n secret "+testSecret+"\n mtls\n}"),
		"detect binding": newHandler(t, "jwtguard {\n secret "+testSecret+"\n detect {\n  binding log\n }\n}", store),
		"none":           newHandler(t, "jwtguard {\n secret "+testSecret+"\n}"),
	}
	cnfs := map[string]map[string]any{
		"jwk": {"jwk": map[string]any{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}},
		"x5t": {"x5t": "dGhpcyBpcyBub3QgYSByZWFsIHRodW1icHJpbnQ"},
		"kid": {"kid": "alice-key"},
		// A thumbprint the route cannot prove, next to one it can.
		"jkt and x5t#S256": {"jkt": alice.jkt, "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"},
	}
	for hname, h := range handlers {
		for cname, cnf := range cnfs {
			if hname != "dpop" && cname == "jkt and x5t#S256" {
				continue // refused for its jkt already, on routes without dpop
			}
			tok := sign(t, jwt.MapClaims{"sub": "mallory", "cnf": cnf})
			for _, r := range []struct {
				name string
				req  func() *http.Request
			}{
				{"as bearer", func() *http.Request { return dpopRequest("Bearer " + tok) }},
				{"with a DPoP proof", func() *http.Request {
					return dpopRequest("DPoP "+tok, alice.proof(t, "GET", apiURL, tok))
				}},
			} {
				_, up, repl, err := serve(h, r.req())
				code, _ := repl.GetString("http.auth.jwt.error")
				if up.called || err == nil {
					t.Errorf("%s route, cnf %s, %s: passed", hname, cname, r.name)
					continue
				}
				want := "binding"
				if hname != "dpop" && r.name == "with a DPoP proof" {
					want = "missing" // the DPoP scheme is no token there
				}
				if code != want {
					t.Errorf("%s route, cnf %s, %s: code %q, want %q (%v)", hname, cname, r.name, code, want, err)
				}
			}
		}
	}
}

// withCert is r from the client holding cert (nil: a TLS client without
// a certificate).
func withCert(r *http.Request, cert *x509.Certificate) *http.Request {
	if cert != nil {
		r.TLS.PeerCertificates = []*x509.Certificate{cert}
	}
	return r
}

// bindingCase is one request on a sender-constrained route and what it
// must come to: code "" passes with the {http.auth.jwt.binding} given;
// otherwise a 401 with that code, whose challenges name reason.
type bindingCase struct {
	name    string
	req     func() *http.Request
	code    string
	reason  string
	binding string
}

// wantPassed checks that a request reached upstream, with
// {http.auth.jwt.binding} = binding.
func wantPassed(t *testing.T, err error, up *upstream, repl *caddy.Replacer, binding string) {
	t.Helper()
	if err != nil || !up.called {
		got, _ := repl.GetString("http.auth.jwt.error")
		t.Fatalf("refused: %q %v", got, err)
	}
	if b, _ := repl.GetString("http.auth.jwt.binding"); b != binding {
		t.Errorf("{http.auth.jwt.binding} = %q, want %q", b, binding)
	}
}

// checkBindingCase serves c on h and checks its outcome exactly: the
// code, 401, and the challenges, which carry the reason and so tell one
// binding refusal from another.
func checkBindingCase(t *testing.T, h *Handler, c bindingCase) {
	t.Helper()
	w, up, repl, err := serve(h, c.req())
	if c.code == "" {
		wantPassed(t, err, up, repl, c.binding)
		return
	}
	got, _ := repl.GetString("http.auth.jwt.error")
	if err == nil || up.called {
		t.Fatalf("passed, want %s (%s)", c.code, c.reason)
	}
	if got != c.code {
		t.Errorf("code %q, want %q (%v)", got, c.code, err)
	}
	if status(err) != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", status(err))
	}
	var want []string
	switch {
	case h.proofs == nil && c.code == "missing":
		want = []string{bearerMissing}
	case h.proofs == nil:
		want = []string{`Bearer realm="jwtguard", error="invalid_token", error_description="` + c.reason + `"`}
	case c.code == "dpop":
		want = []string{dpopAlgs + `, error="invalid_dpop_proof", error_description="` + c.reason + `"`, bearerMissing}
	default:
		want = []string{dpopAlgs + `, error="invalid_token", error_description="` + c.reason + `"`,
			`Bearer realm="jwtguard", error="invalid_token", error_description="` + c.reason + `"`}
	}
	if h.DPoP != nil && h.DPoP.Required {
		want = want[:1] // only the DPoP challenge
	}
	if got := wwwAuthenticate(w); !slices.Equal(got, want) {
		t.Errorf("challenges:\n got  %q\n want %q", got, want)
	}
}

// TestAttackDPoPBoundOnMTLSRoute: a route with mtls and no dpop cannot
// check a DPoP proof, so a token with cnf.jkt is refused there with
// binding (SPEC: "without dpop ... refused with binding"; README: "a
// cnf.jkt token ... where dpop is off"), even from a client holding a
// valid certificate, even one the token is also bound to: mtls proving
// one of the token's confirmations must not waive the other.
func TestAttackDPoPBoundOnMTLSRoute(t *testing.T) {
	alice := newDPoPKey(t)
	aliceCert, aliceX5T := clientCert(t, "alice")
	jktBound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	bothBound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt, "x5t#S256": aliceX5T}})
	certBound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"x5t#S256": aliceX5T}})
	const noDPoP = "token is bound to a DPoP key"
	cases := []bindingCase{
		// The control: the certificate is good, so the refusals below are
		// for the jkt.
		{name: "control: certificate-bound token, its certificate", req: func() *http.Request {
			return withCert(dpopRequest("Bearer "+certBound), aliceCert)
		}, binding: "mtls"},
		{name: "jkt-bound token as bearer, with a client certificate", req: func() *http.Request {
			return withCert(dpopRequest("Bearer "+jktBound), aliceCert)
		}, code: "binding", reason: noDPoP},
		{name: "jkt-bound token as bearer, with a valid proof too", req: func() *http.Request {
			return withCert(dpopRequest("Bearer "+jktBound, alice.proof(t, "GET", apiURL, jktBound)), aliceCert)
		}, code: "binding", reason: noDPoP},
		{name: "jkt-bound token as bearer, no certificate", req: func() *http.Request {
			return dpopRequest("Bearer " + jktBound)
		}, code: "binding", reason: noDPoP},
		{name: "bound both ways, as bearer, with its certificate", req: func() *http.Request {
			return withCert(dpopRequest("Bearer "+bothBound), aliceCert)
		}, code: "binding", reason: noDPoP},
		{name: "bound both ways, as bearer, its certificate and a valid proof", req: func() *http.Request {
			return withCert(dpopRequest("Bearer "+bothBound, alice.proof(t, "GET", apiURL, bothBound)), aliceCert)
		}, code: "binding", reason: noDPoP},
		// Without dpop the DPoP scheme is another scheme: no token.
		{name: "bound both ways, under DPoP with its certificate and a valid proof", req: func() *http.Request {
			return withCert(dpopRequest("DPoP "+bothBound, alice.proof(t, "GET", apiURL, bothBound)), aliceCert)
		}, code: "missing"},
	}
	for _, block := range []string{"mtls", "mtls required"} {
		h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n "+block+"\n}")
		for _, c := range cases {
			t.Run(block+"/"+c.name, func(t *testing.T) { checkBindingCase(t, h, c) })
		}
	}
}

// TestAttackDPoPAndMTLS: a route with both dpop and mtls. A token bound
// one way and proven passes (README: "a token bound one way, and proven,
// passes both"); a token bound both ways needs both proofs; every
// confirmation the token carries must be proven by its own means, a
// certificate never standing in for a DPoP proof nor the reverse; and an
// unbound token is refused with binding where either block is required.
func TestAttackDPoPAndMTLS(t *testing.T) {
	alice, mallory := newDPoPKey(t), newDPoPKey(t)
	aliceCert, aliceX5T := clientCert(t, "alice")
	otherCert, _ := clientCert(t, "mallory")
	jktBound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	certBound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"x5t#S256": aliceX5T}})
	bothBound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt, "x5t#S256": aliceX5T}})
	unbound := sign(t, jwt.MapClaims{"sub": "bob"})
	const (
		asBearer    = "DPoP-bound token sent without the DPoP scheme"
		notJKT      = "token is not bound to a DPoP key"
		certMissing = "client certificate missing or not the one the token is bound to"
		notBound    = "token is not sender-constrained"
	)
	cases := []bindingCase{
		{name: "jkt-bound, valid proof", req: func() *http.Request {
			return dpopRequest("DPoP "+jktBound, alice.proof(t, "GET", apiURL, jktBound))
		}, binding: "dpop"},
		{name: "jkt-bound, valid proof, some client certificate", req: func() *http.Request {
			return withCert(dpopRequest("DPoP "+jktBound, alice.proof(t, "GET", apiURL, jktBound)), otherCert)
		}, binding: "dpop"},
		{name: "certificate-bound, its certificate", req: func() *http.Request {
			return withCert(dpopRequest("Bearer "+certBound), aliceCert)
		}, binding: "mtls"},
		{name: "bound both ways, valid proof and its certificate", req: func() *http.Request {
			return withCert(dpopRequest("DPoP "+bothBound, alice.proof(t, "GET", apiURL, bothBound)), aliceCert)
		}, binding: "dpop"},

		// DPoP-bound without its proof of possession.
		{name: "jkt-bound as bearer", req: func() *http.Request {
			return dpopRequest("Bearer " + jktBound)
		}, code: "binding", reason: asBearer},
		{name: "jkt-bound as bearer, with a client certificate", req: func() *http.Request {
			return withCert(dpopRequest("Bearer "+jktBound), aliceCert)
		}, code: "binding", reason: asBearer},
		{name: "jkt-bound as bearer, with a valid proof", req: func() *http.Request {
			return dpopRequest("Bearer "+jktBound, alice.proof(t, "GET", apiURL, jktBound))
		}, code: "binding", reason: asBearer},
		// Under the DPoP scheme a missing proof is a proof failure (SPEC:
		// "no DPoP header ... dpop"), not binding.
		{name: "jkt-bound under DPoP, no proof, with a client certificate", req: func() *http.Request {
			return withCert(dpopRequest("DPoP "+jktBound), aliceCert)
		}, code: "dpop", reason: "missing DPoP proof"},
		{name: "jkt-bound under DPoP, the thief's proof", req: func() *http.Request {
			return withCert(dpopRequest("DPoP "+jktBound, mallory.proof(t, "GET", apiURL, jktBound)), aliceCert)
		}, code: "binding", reason: "DPoP proof key is not the key the token is bound to"},

		// Certificate-bound without its certificate.
		{name: "certificate-bound, no certificate", req: func() *http.Request {
			return dpopRequest("Bearer " + certBound)
		}, code: "binding", reason: certMissing},
		{name: "certificate-bound, another certificate", req: func() *http.Request {
			return withCert(dpopRequest("Bearer "+certBound), otherCert)
		}, code: "binding", reason: certMissing},
		{name: "certificate-bound under DPoP with a valid proof and its certificate", req: func() *http.Request {
			return withCert(dpopRequest("DPoP "+certBound, alice.proof(t, "GET", apiURL, certBound)), aliceCert)
		}, code: "binding", reason: notJKT},

		// Bound both ways, one proof missing.
		{name: "bound both ways, valid proof, no certificate", req: func() *http.Request {
			return dpopRequest("DPoP "+bothBound, alice.proof(t, "GET", apiURL, bothBound))
		}, code: "binding", reason: certMissing},
		{name: "bound both ways, valid proof, another certificate", req: func() *http.Request {
			return withCert(dpopRequest("DPoP "+bothBound, alice.proof(t, "GET", apiURL, bothBound)), otherCert)
		}, code: "binding", reason: certMissing},
		{name: "bound both ways, as bearer with its certificate", req: func() *http.Request {
			return withCert(dpopRequest("Bearer "+bothBound), aliceCert)
		}, code: "binding", reason: asBearer},

		// Unbound under the DPoP scheme is binding whatever is required.
		{name: "unbound under DPoP with a proof", req: func() *http.Request {
			return withCert(dpopRequest("DPoP "+unbound, alice.proof(t, "GET", apiURL, unbound)), aliceCert)
		}, code: "binding", reason: notJKT},
	}
	// An unbound bearer token: refused where either block is required,
	// passes as a bearer token where neither is (the README's example).
	unboundCases := func(required bool) []bindingCase {
		code, reason := "", ""
		if required {
			code, reason = "binding", notBound
		}
		return []bindingCase{
			{name: "unbound as bearer", req: func() *http.Request {
				return dpopRequest("Bearer " + unbound)
			}, code: code, reason: reason},
			{name: "unbound as bearer, with a client certificate", req: func() *http.Request {
				return withCert(dpopRequest("Bearer "+unbound), aliceCert)
			}, code: code, reason: reason},
			{name: "unbound as bearer, with a DPoP proof", req: func() *http.Request {
				return dpopRequest("Bearer "+unbound, alice.proof(t, "GET", apiURL, unbound))
			}, code: code, reason: reason},
		}
	}
	for _, c := range []struct {
		block    string
		required bool
	}{
		{"dpop\n mtls", false},
		{"dpop required\n mtls required", true},
		{"dpop required\n mtls", true},
		{"dpop\n mtls required", true},
	} {
		h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n "+c.block+"\n}")
		name := strings.ReplaceAll(c.block, "\n ", "+")
		for _, r := range append(append([]bindingCase(nil), cases...), unboundCases(c.required)...) {
			t.Run(name+"/"+r.name, func(t *testing.T) { checkBindingCase(t, h, r) })
		}
	}
}
