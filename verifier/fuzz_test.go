package verifier

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzJSON checks the strict JSON reader against encoding/json: whatever
// it accepts is valid JSON with the same member names, and whatever
// encoding/json accepts as an object without duplicates, invalid UTF-8 or
// deep nesting, it accepts too.
func FuzzJSON(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"a":1}`, `{"sub":"x","aud":["a","b"],"n":-1.5e3,"o":{"p":null},"t":true}`,
		`{"a":1,"a":2}`, `{"\u0061":1,"a":2}`, `{"a":"\ud83d\ude00"}`, `{"a":"\ud800"}`,
		` { "a" : [ 1 , 2 ] } `, `{"a":01}`, `{"a":1.}`, `{"a":"\x"}`, `[1]`, `{"a":{"b":{"c":{}}}}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		members, err := parseObject(s, nil)
		var ref map[string]json.RawMessage
		refErr := json.Unmarshal([]byte(s), &ref)
		if refErr == nil && ref == nil {
			// encoding/json takes null for an empty map; it is no object.
			refErr = errors.New("null")
		}
		if err == nil {
			if !json.Valid([]byte(s)) || refErr != nil {
				t.Fatalf("accepted invalid JSON object %q", s)
			}
			if len(members) != len(ref) {
				t.Fatalf("%q: %d members, encoding/json sees %d", s, len(members), len(ref))
			}
			for _, m := range members {
				raw, ok := ref[m.name]
				if !ok {
					t.Fatalf("%q: member %q unknown to encoding/json", s, m.name)
				}
				var a, b any
				if json.Unmarshal([]byte(m.raw), &a) != nil || json.Unmarshal(raw, &b) != nil {
					t.Fatalf("%q: member %q raw value not JSON", s, m.name)
				}
			}
			return
		}
		// Rejections must have a reason encoding/json would share, or be
		// one of our stricter rules.
		if refErr == nil && utf8.ValidString(s) && !strings.Contains(err.Error(), "duplicate") && !strings.Contains(err.Error(), "nested") {
			t.Fatalf("rejected %q (%v) that encoding/json accepts", s, err)
		}
	})
}

// FuzzParse throws arbitrary strings at the token parser and verifier:
// no panics, every failure an *Error with a known code, and nothing
// verifies without the key.
func FuzzParse(f *testing.F) {
	k := keys(f)
	good := mint(f, jwt.SigningMethodHS256, k.secret, nil, validClaims())
	f.Add(good)
	f.Add(mintRaw(f, jwt.SigningMethodHS256, k.secret, `{"alg":"HS256","kid":"../x"}`, `{"exp":1767229200,"aud":["a",1]}`))
	f.Add(mintRaw(f, nil, nil, `{"alg":"none"}`, `{"exp":1767229200}`))
	// SETs, logout tokens and bound tokens, with their claims well and badly typed
	f.Add(mintRaw(f, jwt.SigningMethodHS256, k.secret, `{"alg":"HS256","typ":"Application/SecEvent+JWT"}`, `{"exp":1767229200,"events":{"x":{}}}`))
	f.Add(mintRaw(f, jwt.SigningMethodHS256, k.secret, `{"alg":"HS256","typ":"logout+jwt"}`, `{"exp":1767229200,"events":null,"sid":"s"}`))
	f.Add(mintRaw(f, jwt.SigningMethodHS256, k.secret, `{"alg":"HS256"}`, `{"exp":1767229200,"cnf":{"jkt":"a","x5t#S256":"b","jwk":{"kty":"OKP"}}}`))
	f.Add(mintRaw(f, jwt.SigningMethodHS256, k.secret, `{"alg":"HS256"}`, `{"exp":1767229200,"cnf":{"jkt":1,"x5t\u0023S256":[]}}`))
	f.Add(mintRaw(f, jwt.SigningMethodHS256, k.secret, `{"alg":"HS256"}`, `{"exp":1767229200,"cnf":"x"}`))
	f.Add("a.b.c")
	f.Add("..")
	f.Add(strings.Repeat("e", 100) + "." + strings.Repeat("f", 100) + ".")
	known := map[Code]bool{}
	for _, c := range Codes {
		known[c] = true
	}
	// No cache: coverage must not depend on what an earlier input left
	// behind, or minimizing an input never settles.
	v := newVerifier(f, Config{Keys: []*Key{hmacKey(f, k.secret)}, HeaderClaims: []string{"sub", "a.b"}, CacheEntries: -1})
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := v.Verify(token)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || !known[e.Code] {
				t.Fatalf("error %v is not an *Error with a known code", err)
			}
			return
		}
		// Only the seed signed with the real key can verify; the fuzzer
		// cannot forge HMAC-SHA256.
		if tok.ID == "" {
			t.Fatal("verified token has no id")
		}
		in, err := Inspect(token)
		if err != nil || in.ID != tok.ID {
			t.Fatalf("Inspect disagrees with Verify: %v", err)
		}
	})
}
