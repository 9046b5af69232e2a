package jwtguard

import (
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"

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
