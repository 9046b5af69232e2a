package verifier

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestEventTokens: Config.EventTokens lets SETs and logout tokens through
// (exp then optional, but enforced when present) and changes nothing for
// a verifier without it, the access-token default.
func TestEventTokens(t *testing.T) {
	k := keys(t)
	hs := jwt.SigningMethodHS256
	access := Config{Keys: []*Key{hmacKey(t, k.secret)}, Issuers: []string{"https://issuer.example"}, Audiences: []string{"api"}}
	events := access
	events.EventTokens = true

	bcl := map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}
	set := map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{}}
	setTyp := map[string]any{"typ": "secevent+jwt"}
	tests := []struct {
		name        string
		hdr         map[string]any
		claims      map[string]any
		access, evt Code
	}{
		{"SET without exp", setTyp, with(validClaims(), "exp", nil, "jti", "j1", "events", set), CodeType, "ok"},
		{"SET with exp passed", setTyp, with(validClaims(), "exp", testNow.Unix()-1, "events", set), CodeType, CodeExpired},
		{"SET with exp ahead", setTyp, with(validClaims(), "events", set), CodeType, "ok"},
		{"SET iat in the future", setTyp, with(validClaims(), "exp", nil, "iat", testNow.Unix()+60, "events", set), CodeType, CodeNotYetValid},
		{"logout token", map[string]any{"typ": "logout+jwt"}, with(validClaims(), "events", bcl, "sid", "s1"), CodeType, "ok"},
		{"logout token without typ", nil, with(validClaims(), "events", bcl, "sid", "s1"), CodeType, "ok"},
		{"SET for another audience", setTyp, with(validClaims(), "exp", nil, "aud", "other", "events", set), CodeType, CodeAudience},
		{"SET from another issuer", setTyp, with(validClaims(), "exp", nil, "iss", "https://evil.example", "events", set), CodeType, CodeIssuer},
		{"SET with a non-string jti", setTyp, with(validClaims(), "exp", nil, "jti", 7, "events", set), CodeType, CodeClaims},
		{"access token without exp", nil, with(validClaims(), "exp", nil), CodeClaims, "ok"},
		{"access token", nil, validClaims(), "ok", "ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := mint(t, hs, k.secret, tc.hdr, tc.claims)
			if got := code(verifyErr(newVerifier(t, access), tok)); got != tc.access {
				t.Errorf("access-token verifier: got %s, want %s", got, tc.access)
			}
			if got := code(verifyErr(newVerifier(t, events), tok)); got != tc.evt {
				t.Errorf("event-token verifier: got %s, want %s", got, tc.evt)
			}
		})
	}
	// A forged SET stays forged.
	forged := mint(t, hs, []byte("an attacker's secret of 32 bytes!"), setTyp, with(validClaims(), "events", set))
	if got := code(verifyErr(newVerifier(t, events), forged)); got != CodeSignature {
		t.Fatalf("forged SET: got %s", got)
	}
}

func verifyErr(v *Verifier, tok string) error {
	_, err := v.Verify(tok)
	return err
}
