package verifier

// Attack review of the sid claim (9dec3a1): every spelling of a sid that
// a session revocation could be dodged with, and the claims pass staying
// free of allocation. These checks held on the code reviewed.

import (
	"fmt"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestAttackSIDSpellings(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}})
	payload := func(sid string) string {
		return fmt.Sprintf(`{"iss":"https://issuer.example","sub":"user-42","aud":"api","exp":%d,%s}`, testNow.Unix()+3600, sid)
	}
	hdr := `{"alg":"HS256","typ":"JWT"}`
	for _, c := range []struct {
		name, claims string
		code         Code
		sid          string
	}{
		{"plain", `"sid":"s1"`, "ok", "s1"},
		{"escaped value", `"sid":"\u0073\u0031"`, "ok", "s1"},
		{"escaped name", `"s\u0069d":"s1"`, "ok", "s1"},
		{"escaped slash", `"sid":"a\/b"`, "ok", "a/b"},
		{"surrogate pair", `"sid":"\ud83d\ude00"`, "ok", "\U0001F600"},
		{"duplicate", `"sid":"s1","sid":"s2"`, CodeMalformed, ""},
		{"duplicate, escaped name", `"sid":"s1","s\u0069d":"s2"`, CodeMalformed, ""},
		{"number", `"sid":1`, CodeClaims, ""},
		{"null", `"sid":null`, CodeClaims, ""},
		{"bool", `"sid":true`, CodeClaims, ""},
		{"array", `"sid":["s1"]`, CodeClaims, ""},
		{"object", `"sid":{"sid":"s1"}`, CodeClaims, ""},
		// Not the sid claim: nothing to match, nothing dodged.
		{"nested only", `"ext":{"sid":"s1"}`, "ok", ""},
		{"other case", `"SID":"s1"`, "ok", ""},
	} {
		tok, err := v.Verify(mintRaw(t, jwt.SigningMethodHS256, k.secret, hdr, payload(c.claims)))
		if code(err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
			continue
		}
		if err == nil && tok.SID != c.sid {
			t.Errorf("%s: SID %q, want %q", c.name, tok.SID, c.sid)
		}
	}
}

// A sid costs the claims pass nothing: a token with one takes as many
// allocations to verify as the same token without.
func TestAttackSIDAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not stable under -race (sync.Pool drops items at random)")
	}
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, CacheEntries: -1, HeaderClaims: []string{"sub"}})
	allocs := func(claims map[string]any) float64 {
		tok := mint(t, jwt.SigningMethodHS256, k.secret, nil, claims)
		return testing.AllocsPerRun(200, func() {
			if _, err := v.Verify(tok); err != nil {
				t.Fatal(err)
			}
		})
	}
	base := with(validClaims(), "jti", "j1")
	without, withSID := allocs(base), allocs(with(base, "sid", "0f9e2b7c-session"))
	if withSID != without {
		t.Errorf("verify allocates %v times with a sid, %v without", withSID, without)
	}
}
