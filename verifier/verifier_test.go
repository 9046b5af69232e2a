package verifier

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestAttacks is the attack table: every token here is one an attacker
// could send, with the code the SPEC says it must fail with.
func TestAttacks(t *testing.T) {
	k := keys(t)
	hs := jwt.SigningMethodHS256
	rs := jwt.SigningMethodRS256

	// A server that would hand out the attacker's keys: it must never be asked.
	var fetched atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
	}))
	defer evil.Close()

	hmacRoute := Config{Keys: []*Key{hmacKey(t, k.secret)}, Issuers: []string{"https://issuer.example"}, Audiences: []string{"api"}}
	rsaRoute := Config{Keys: []*Key{pubKey(t, &k.rsa.PublicKey)}}
	strict := Config{
		Keys:        []*Key{hmacKey(t, k.secret)},
		Issuers:     []string{"https://issuer.example"},
		Audiences:   []string{"api"},
		TokenTypes:  []string{"at+jwt"},
		MaxLifetime: 2 * time.Hour,
	}

	setRoute := hmacRoute
	setRoute.TokenTypes = []string{"secevent+jwt", "logout+jwt"}
	// RFC 9449 and RFC 8705 thumbprints (their values are never checked here)
	const jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	const x5t = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"

	good := mint(t, hs, k.secret, nil, validClaims())
	hugeKid := strings.Repeat("A", 10000)
	attackerJWK := map[string]any{"kty": "RSA", "n": base64.RawURLEncoding.EncodeToString(k.other.N.Bytes()), "e": "AQAB"}

	tests := []struct {
		name  string
		cfg   Config
		token string
		want  Code
	}{
		{"valid HS256", hmacRoute, good, "ok"},
		{"valid RS256", rsaRoute, mint(t, rs, k.rsa, nil, validClaims()), "ok"},

		// algorithm confusion and none
		{"alg none", hmacRoute, mintRaw(t, nil, nil, `{"alg":"none","typ":"JWT"}`, `{"sub":"x","exp":1767229200}`), CodeAlgorithm},
		{"alg None", hmacRoute, mintRaw(t, nil, nil, `{"alg":"None"}`, `{"sub":"x","exp":1767229200}`), CodeAlgorithm},
		{"alg none with signature", hmacRoute, mintRaw(t, nil, nil, `{"alg":"none"}`, `{"exp":1767229200}`) + "c2ln", CodeAlgorithm},
		{"no alg", hmacRoute, mintRaw(t, hs, k.secret, `{"typ":"JWT"}`, `{"exp":1767229200}`), CodeAlgorithm},
		{"HS256 signed with the RSA public key PEM", rsaRoute, mint(t, hs, k.rsaPEM, nil, validClaims()), CodeAlgorithm},
		{"HS256 signed with the RSA modulus", rsaRoute, mint(t, hs, k.rsa.N.Bytes(), nil, validClaims()), CodeAlgorithm},
		{"RS256 against an HMAC route", hmacRoute, mint(t, rs, k.rsa, nil, validClaims()), CodeAlgorithm},
		{"HS512 with a 32-byte secret", hmacRoute, mint(t, jwt.SigningMethodHS512, k.secret, nil, validClaims()), CodeAlgorithm},
		{"ES384 token for a P-256 key", Config{Keys: []*Key{pubKey(t, &k.ec256.PublicKey)}}, mint(t, jwt.SigningMethodES384, k.ec384, nil, validClaims()), CodeAlgorithm},
		{"unknown alg", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS257"}`, `{"exp":1767229200}`), CodeAlgorithm},

		// signatures
		{"tampered payload", hmacRoute, tamper(good, `{"sub":"admin"}`), CodeSignature},
		{"signature of another token", hmacRoute, splice(good, mint(t, hs, k.secret, nil, with(validClaims(), "sub", "admin"))), CodeSignature},
		{"wrong secret", hmacRoute, mint(t, hs, []byte("an attacker's secret of 32 bytes!"), nil, validClaims()), CodeSignature},
		{"RS256 by the attacker's key", rsaRoute, mint(t, rs, k.other, nil, validClaims()), CodeSignature},
		{"empty signature", hmacRoute, good[:strings.LastIndexByte(good, '.')+1], CodeSignature},

		// hostile kid: never a path, URL or query; with static keys it selects nothing
		{"kid path traversal, attacker key", hmacRoute, mint(t, hs, []byte("/dev/null is empty, so an attacker hopes"), map[string]any{"kid": "../../../../dev/null"}, validClaims()), CodeSignature},
		{"kid URL, attacker key", rsaRoute, mint(t, rs, k.other, map[string]any{"kid": evil.URL + "/key.pem"}, validClaims()), CodeSignature},
		{"kid SQL", hmacRoute, mint(t, hs, []byte("x' UNION SELECT 'attackerattackerattacker"), map[string]any{"kid": "x' UNION SELECT 'a"}, validClaims()), CodeSignature},
		{"kid huge, real key", hmacRoute, mint(t, hs, k.secret, map[string]any{"kid": hugeKid}, validClaims()), "ok"},
		{"kid not a string", hmacRoute, mint(t, hs, k.secret, map[string]any{"kid": 7}, validClaims()), CodeMalformed},

		// keys named by the token are ignored
		{"jku to attacker", rsaRoute, mint(t, rs, k.other, map[string]any{"jku": evil.URL + "/jwks.json", "kid": "a"}, validClaims()), CodeSignature},
		{"x5u to attacker", rsaRoute, mint(t, rs, k.other, map[string]any{"x5u": evil.URL + "/cert.pem"}, validClaims()), CodeSignature},
		{"embedded jwk", rsaRoute, mint(t, rs, k.other, map[string]any{"jwk": attackerJWK}, validClaims()), CodeSignature},
		{"x5c chain", rsaRoute, mint(t, rs, k.other, map[string]any{"x5c": []string{"MIIB"}}, validClaims()), CodeSignature},
		{"crit header", hmacRoute, mint(t, hs, k.secret, map[string]any{"crit": []string{"exp"}, "exp": 1}, validClaims()), CodeMalformed},

		// time
		{"no exp", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "exp", nil)), CodeClaims},
		{"expired", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "exp", testNow.Unix()-1)), CodeExpired},
		{"expires now", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "exp", testNow.Unix())), CodeExpired},
		{"nbf in the future", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "nbf", testNow.Unix()+10)), CodeNotYetValid},
		{"iat in the future", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "iat", testNow.Unix()+10)), CodeNotYetValid},
		{"exp as a string", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "exp", "9999999999")), CodeClaims},
		{"exp overflows", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"exp":1e400}`), CodeClaims},

		// claim rules
		{"wrong iss", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "iss", "https://evil.example")), CodeIssuer},
		{"iss not a string", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "iss", 1)), CodeClaims},
		{"sid not a string", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "sid", 7)), CodeClaims},
		{"sid an object", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "sid", map[string]any{"id": "s1"})), CodeClaims},
		{"no iss", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "iss", nil)), CodeIssuer},
		{"wrong aud", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "aud", []string{"other", "more"})), CodeAudience},
		{"aud array containing ours", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "aud", []string{"other", "api"})), "ok"},
		{"aud of numbers", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "aud", []int{1})), CodeClaims},
		{"wrong typ", strict, mint(t, hs, k.secret, map[string]any{"typ": "JWT"}, validClaims()), CodeType},
		{"no typ", strict, mint(t, hs, k.secret, map[string]any{"typ": nil}, validClaims()), CodeType},
		{"typ with prefix and case", strict, mint(t, hs, k.secret, map[string]any{"typ": "Application/AT+JWT"}, validClaims()), "ok"},
		{"lifetime over max", strict, mint(t, hs, k.secret, map[string]any{"typ": "at+jwt"}, with(validClaims(), "exp", testNow.Unix()+3*3600)), CodeLifetime},
		{"no iat with max_lifetime", strict, mint(t, hs, k.secret, map[string]any{"typ": "at+jwt"}, with(validClaims(), "iat", nil)), CodeLifetime},

		// encoding
		{"16 KiB + 1", hmacRoute, strings.Repeat("a", MaxTokenLength+1), CodeMalformed},
		{"two segments", hmacRoute, good[:strings.LastIndexByte(good, '.')], CodeMalformed},
		{"four segments", hmacRoute, good + ".AAAA", CodeMalformed},
		{"padding", hmacRoute, strings.Replace(good, ".", "==.", 1), CodeMalformed},
		{"newline inside", hmacRoute, good[:10] + "\n" + good[10:], CodeMalformed},
		{"standard alphabet", hmacRoute, strings.NewReplacer("-", "+", "_", "/").Replace(good) + "+/", CodeMalformed},
		{"non-canonical trailing bits", hmacRoute, nonCanonical(good), CodeMalformed},
		{"payload not JSON", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `not json`), CodeMalformed},
		{"payload an array", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `[1,2]`), CodeMalformed},
		{"trailing data after claims", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"exp":1767229200} {}`), CodeMalformed},
		{"duplicate sub", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"sub":"user","exp":1767229200,"sub":"admin"}`), CodeMalformed},
		{"duplicate by escape", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"exp":1767229200,"\u0065xp":9999999999}`), CodeMalformed},
		{"duplicate nested", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"exp":1767229200,"realm":{"roles":["a"],"roles":["admin"]}}`), CodeMalformed},
		{"duplicate alg", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256","alg":"none"}`, `{"exp":1767229200}`), CodeMalformed},
		{"invalid UTF-8", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, "{\"sub\":\"\xff\",\"exp\":1767229200}"), CodeMalformed},
		{"deep nesting", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"exp":1767229200,"x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`), CodeMalformed},

		// a Security Event Token or logout token is never an access token
		{"SET typ", hmacRoute, mint(t, hs, k.secret, map[string]any{"typ": "secevent+jwt"}, validClaims()), CodeType},
		{"SET typ with prefix and case", hmacRoute, mint(t, hs, k.secret, map[string]any{"typ": "Application/SecEvent+JWT"}, validClaims()), CodeType},
		{"logout typ", hmacRoute, mint(t, hs, k.secret, map[string]any{"typ": "logout+jwt"}, validClaims()), CodeType},
		{"logout typ with prefix and case", hmacRoute, mint(t, hs, k.secret, map[string]any{"typ": "APPLICATION/Logout+JWT"}, validClaims()), CodeType},
		{"logout typ with a parameter", hmacRoute, mint(t, hs, k.secret, map[string]any{"typ": "logout+jwt; charset=utf-8"}, validClaims()), CodeType},
		{"SET typ accepted by token_type", setRoute, mint(t, hs, k.secret, map[string]any{"typ": "secevent+jwt"}, validClaims()), CodeType},
		{"logout typ accepted by token_type", setRoute, mint(t, hs, k.secret, map[string]any{"typ": "application/logout+jwt"}, validClaims()), CodeType},
		{"events claim", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "events", map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}, "sid", "s1")), CodeType},
		{"events claim under token_type at+jwt", strict, mint(t, hs, k.secret, map[string]any{"typ": "at+jwt"}, with(validClaims(), "events", map[string]any{"x": map[string]any{}})), CodeType},
		{"events claim null", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"iss":"https://issuer.example","aud":"api","sub":"x","exp":1767229200,"events":null}`), CodeType},
		{"events claim spelled with an escape", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"iss":"https://issuer.example","aud":"api","sub":"x","exp":1767229200,"\u0065vents":{}}`), CodeType},
		{"eventsx claim is not events", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "eventsx", 1, "event", 1)), "ok"},

		// a bound token is never a plain bearer token
		{"cnf.jkt", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"jkt": jkt})), CodeBinding},
		{"cnf x5t#S256", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"x5t#S256": x5t})), CodeBinding},
		{"cnf with both", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"jkt": jkt, "x5t#S256": x5t})), CodeBinding},
		{"cnf.jkt empty", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"jkt": ""})), CodeBinding},
		{"cnf x5t#S256 spelled with an escape", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"iss":"https://issuer.example","aud":"api","sub":"x","exp":1767229200,"cnf":{"x5t\u0023S256":"`+x5t+`"}}`), CodeBinding},
		{"cnf jwk (RFC 7800)", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"jwk": attackerJWK})), CodeBinding},
		{"cnf empty object", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{})), "ok"},
		{"cnf a string", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", jkt)), CodeClaims},
		{"cnf an array", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", []string{jkt})), CodeClaims},
		{"cnf null", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"iss":"https://issuer.example","aud":"api","sub":"x","exp":1767229200,"cnf":null}`), CodeClaims},
		{"cnf.jkt a number", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"jkt": 1})), CodeClaims},
		{"cnf.jkt null", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"jkt": nil})), CodeClaims},
		{"cnf x5t#S256 an object", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"x5t#S256": map[string]any{}})), CodeClaims},
		{"cnf.jkt twice", hmacRoute, mintRaw(t, hs, k.secret, `{"alg":"HS256"}`, `{"exp":1767229200,"cnf":{"jkt":"a","jkt":"b"}}`), CodeMalformed},
		{"cnf.jkt in the header only", hmacRoute, mint(t, hs, k.secret, map[string]any{"cnf": map[string]any{"jkt": jkt}}, validClaims()), "ok"},

		// precedence: the first rule in SPEC order wins
		{"SET typ and bad signature", hmacRoute, mint(t, hs, []byte("an attacker's secret of 32 bytes!"), map[string]any{"typ": "secevent+jwt"}, validClaims()), CodeSignature},
		{"events claim and no exp", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "events", map[string]any{}, "exp", nil)), CodeType},
		{"logout typ and expired", hmacRoute, mint(t, hs, k.secret, map[string]any{"typ": "logout+jwt"}, with(validClaims(), "exp", 1)), CodeType},
		{"bound and bad signature", hmacRoute, mint(t, hs, []byte("an attacker's secret of 32 bytes!"), nil, with(validClaims(), "cnf", map[string]any{"jkt": jkt})), CodeSignature},
		{"bound and SET typ", hmacRoute, mint(t, hs, k.secret, map[string]any{"typ": "secevent+jwt"}, with(validClaims(), "cnf", map[string]any{"jkt": jkt})), CodeType},
		{"bound and expired", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"jkt": jkt}, "exp", testNow.Unix()-1)), CodeExpired},
		{"bound and wrong audience", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"x5t#S256": x5t}, "aud", "other")), CodeAudience},
		{"bound and lifetime over max", strict, mint(t, hs, k.secret, map[string]any{"typ": "at+jwt"}, with(validClaims(), "cnf", map[string]any{"jkt": jkt}, "exp", testNow.Unix()+3*3600)), CodeLifetime},
		{"cnf.jkt a number and expired", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "cnf", map[string]any{"jkt": 1}, "exp", 1)), CodeClaims},
		// precedence: the first rule in SPEC order wins
		{"expired and wrong issuer", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "exp", testNow.Unix()-1, "iss", "evil")), CodeExpired},
		{"bad signature and expired", hmacRoute, mint(t, hs, []byte("an attacker's secret of 32 bytes!"), nil, with(validClaims(), "exp", 1)), CodeSignature},
		{"wrong type and no exp", strict, mint(t, hs, k.secret, nil, with(validClaims(), "exp", nil)), CodeType},
		{"no exp and expired-looking nbf", hmacRoute, mint(t, hs, k.secret, nil, with(validClaims(), "exp", nil, "nbf", testNow.Unix()+99)), CodeClaims},
		{"wrong audience and lifetime", strict, mint(t, hs, k.secret, map[string]any{"typ": "at+jwt"}, with(validClaims(), "aud", "x", "exp", testNow.Unix()+9999)), CodeAudience},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, tc.cfg)
			tok, err := v.Verify(tc.token)
			if got := code(err); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			if err == nil && tok.Subject == "" {
				t.Fatal("verified token has no subject")
			}
			// A second look (through the cache) gives the same answer.
			if _, err2 := v.Verify(tc.token); code(err2) != tc.want {
				t.Fatalf("second verification: got %s, want %s", code(err2), tc.want)
			}
		})
	}
	if n := fetched.Load(); n != 0 {
		t.Fatalf("the attacker's key server was contacted %d times", n)
	}
}

// tamper replaces the payload and keeps header and signature.
func tamper(token, payload string) string {
	parts := strings.Split(token, ".")
	return parts[0] + "." + b64(payload) + "." + parts[2]
}

// splice puts the signature of b on a.
func splice(a, b string) string {
	return a[:strings.LastIndexByte(a, '.')] + b[strings.LastIndexByte(b, '.'):]
}

// nonCanonical changes the signature's last character so that only its
// unused low bits differ: the same bytes, another spelling.
func nonCanonical(token string) string {
	sig := token[strings.LastIndexByte(token, '.')+1:]
	if len(sig)%4 == 0 {
		panic("signature has no spare bits")
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	return token[:len(token)-1] + string(alphabet[last|1])
}

func TestMaxLengthToken(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}})
	base := mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "pad", ""))
	// grow the pad claim until the token is exactly MaxTokenLength long
	pad := (MaxTokenLength - len(base)) * 3 / 4
	var tok string
	for ; ; pad++ {
		tok = mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "pad", strings.Repeat("p", pad)))
		if len(tok) >= MaxTokenLength {
			break
		}
	}
	if len(tok) == MaxTokenLength {
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("token of exactly %d bytes: %v", len(tok), err)
		}
	}
	if len(tok) > MaxTokenLength {
		if _, err := v.Verify(tok); code(err) != CodeMalformed {
			t.Fatalf("token of %d bytes: got %v", len(tok), err)
		}
	}
}

func TestEveryAlgorithm(t *testing.T) {
	k := keys(t)
	long := []byte(strings.Repeat("k", 64))
	cases := []struct {
		method jwt.SigningMethod
		sign   any
		key    *Key
	}{
		{jwt.SigningMethodHS256, k.secret, hmacKey(t, k.secret)},
		{jwt.SigningMethodHS384, long, hmacKey(t, long)},
		{jwt.SigningMethodHS512, long, hmacKey(t, long)},
		{jwt.SigningMethodRS256, k.rsa, pubKey(t, &k.rsa.PublicKey)},
		{jwt.SigningMethodRS384, k.rsa, pubKey(t, &k.rsa.PublicKey)},
		{jwt.SigningMethodRS512, k.rsa, pubKey(t, &k.rsa.PublicKey)},
		{jwt.SigningMethodPS256, k.rsa, pubKey(t, &k.rsa.PublicKey)},
		{jwt.SigningMethodPS384, k.rsa, pubKey(t, &k.rsa.PublicKey)},
		{jwt.SigningMethodPS512, k.rsa, pubKey(t, &k.rsa.PublicKey)},
		{jwt.SigningMethodES256, k.ec256, pubKey(t, &k.ec256.PublicKey)},
		{jwt.SigningMethodES384, k.ec384, pubKey(t, &k.ec384.PublicKey)},
		{jwt.SigningMethodES512, k.ec521, pubKey(t, &k.ec521.PublicKey)},
		{jwt.SigningMethodEdDSA, k.ed, pubKey(t, k.ed.Public())},
	}
	for _, c := range cases {
		t.Run(c.method.Alg(), func(t *testing.T) {
			v := newVerifier(t, Config{Keys: []*Key{c.key}})
			if _, err := v.Verify(mint(t, c.method, c.sign, nil, validClaims())); err != nil {
				t.Fatalf("valid token: %v", err)
			}
			// The same algorithm under an allow-list without it.
			other := HS256
			if strings.HasPrefix(c.method.Alg(), "HS") {
				other = RS256
			}
			if _, err := New(Config{Keys: []*Key{c.key}, Algorithms: AlgorithmSet(other)}); err == nil {
				t.Fatalf("allow-list %s accepted for a key that cannot verify it", other)
			}
		})
	}
}

func TestKeysTriedInOrder(t *testing.T) {
	k := keys(t)
	second := []byte("the second secret, also 32 bytes long")
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret), hmacKey(t, second)}})
	for _, secret := range [][]byte{k.secret, second} {
		tok, err := v.Verify(mint(t, jwt.SigningMethodHS256, secret, nil, validClaims()))
		if err != nil {
			t.Fatalf("token by a configured secret: %v", err)
		}
		if got, _ := tok.Key.material.([]byte); string(got) != string(secret) {
			t.Fatal("the token was attributed to the wrong key")
		}
	}
}

func TestLeeway(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, Leeway: 30 * time.Second})
	cases := []struct {
		claims map[string]any
		want   Code
	}{
		{with(validClaims(), "exp", testNow.Unix()-29), "ok"},
		{with(validClaims(), "exp", testNow.Unix()-30), CodeExpired},
		{with(validClaims(), "nbf", testNow.Unix()+30), "ok"},
		{with(validClaims(), "nbf", testNow.Unix()+31), CodeNotYetValid},
		{with(validClaims(), "iat", testNow.Unix()+30), "ok"},
		{with(validClaims(), "iat", testNow.Unix()+31), CodeNotYetValid},
	}
	for i, c := range cases {
		if _, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, c.claims)); code(err) != c.want {
			t.Errorf("case %d: got %s, want %s", i, code(err), c.want)
		}
	}
	// leeway does not stretch max_lifetime
	v = newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, Leeway: time.Hour, MaxLifetime: time.Hour})
	tok := mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "iat", testNow.Unix(), "exp", testNow.Unix()+3601))
	if _, err := v.Verify(tok); code(err) != CodeLifetime {
		t.Fatalf("lifetime 1h1s with max 1h and leeway 1h: got %v", err)
	}
}

func TestRequire(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, Require: []string{"sub", "email"}})
	if _, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, validClaims())); code(err) != CodeClaims {
		t.Fatalf("missing email: got %v", err)
	}
	if _, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "email", "a@b.c"))); err != nil {
		t.Fatalf("with email: %v", err)
	}
}

func TestCacheRechecksTime(t *testing.T) {
	k := keys(t)
	now := testNow
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, Now: func() time.Time { return now }})
	tok := mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "exp", testNow.Unix()+10))
	for i := 0; i < 2; i++ { // admitted on the second sight
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if v.cache.len() != 1 {
		t.Fatalf("cache holds %d tokens, want 1", v.cache.len())
	}
	now = now.Add(10 * time.Second)
	if _, err := v.Verify(tok); code(err) != CodeExpired {
		t.Fatalf("cached token after exp: got %v", err)
	}
	if v.cache.len() != 0 {
		t.Fatal("expired token still cached")
	}
}

// TestCacheAdmitsOnSecondSight: tokens sent once never fill the cache.
func TestCacheAdmitsOnSecondSight(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}})
	for i := 0; i < 500; i++ {
		if _, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "n", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("%d tokens sent once are cached", n)
	}
	tok := mint(t, jwt.SigningMethodHS256, k.secret, nil, validClaims())
	v.Verify(tok)
	if v.cache.get(tok, v.cache.hash(tok)) != nil {
		t.Fatal("cached on first sight")
	}
	v.Verify(tok)
	if v.cache.get(tok, v.cache.hash(tok)) == nil {
		t.Fatal("not cached on second sight")
	}
}

func TestCacheNeverServesFailures(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}})
	bad := tamper(mint(t, jwt.SigningMethodHS256, k.secret, nil, validClaims()), `{"sub":"admin","exp":9999999999}`)
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(bad); code(err) != CodeSignature {
			t.Fatalf("try %d: got %v", i, err)
		}
	}
	if v.cache.len() != 0 {
		t.Fatal("a failed token was cached")
	}
}

func TestCacheBounded(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, CacheEntries: 64, CacheBytes: 1 << 20})
	for i := 0; i < 1000; i++ {
		tok := mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "n", i))
		for j := 0; j < 2; j++ {
			if _, err := v.Verify(tok); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := v.cache.len(); n > 64 || n == 0 {
		t.Fatalf("cache holds %d entries, bound is 64", n)
	}
	// byte bound: big tokens
	v = newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, CacheBytes: 64 << 10})
	for i := 0; i < 200; i++ {
		tok := mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "pad", strings.Repeat("x", 4000), "n", i))
		for j := 0; j < 2; j++ {
			if _, err := v.Verify(tok); err != nil {
				t.Fatal(err)
			}
		}
	}
	total := 0
	for i := range v.cache.shards {
		total += v.cache.shards[i].bytes
	}
	if total > 64<<10 {
		t.Fatalf("cache holds %d bytes, bound is %d", total, 64<<10)
	}
	v.SweepCache()
	v.FlushCache()
	if v.cache.len() != 0 {
		t.Fatal("flush left entries")
	}
}

func TestSweepDropsExpired(t *testing.T) {
	k := keys(t)
	now := testNow
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, Now: func() time.Time { return now }})
	short := mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "exp", testNow.Unix()+5))
	long := mint(t, jwt.SigningMethodHS256, k.secret, nil, validClaims())
	for _, tok := range []string{short, long, short, long} {
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(6 * time.Second)
	v.SweepCache()
	if v.cache.get(short, v.cache.hash(short)) != nil || v.cache.get(long, v.cache.hash(long)) == nil {
		t.Fatal("sweep should drop the expired token and keep the other")
	}
}

func TestTokenID(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}})
	tok, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "jti", "abc")))
	if err != nil {
		t.Fatal(err)
	}
	if tok.ID != "https://issuer.example#abc" {
		t.Fatalf("id with jti: %q", tok.ID)
	}
	if tok.SID != "" {
		t.Fatalf("SID %q without a sid claim", tok.SID)
	}
	tok, err = v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "sid", "s\u00e9ssion-1")))
	if err != nil || tok.SID != "séssion-1" {
		t.Fatalf("sid claim: %v, SID %q", err, tok.SID)
	}
	raw := mint(t, jwt.SigningMethodHS256, k.secret, nil, validClaims())
	tok, err = v.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.ID, "sha256:") || len(tok.ID) != len("sha256:")+43 {
		t.Fatalf("id without jti: %q", tok.ID)
	}
	// The id ignores the signature's spelling, so it names the token.
	in, err := Inspect(raw)
	if err != nil || in.ID != tok.ID {
		t.Fatalf("Inspect: %v, id %q vs %q", err, in.ID, tok.ID)
	}
	other, _ := Inspect(splice(raw, mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "x", 1))))
	if other.ID != tok.ID {
		t.Fatal("token id depends on the signature")
	}
}

func TestHeaderClaims(t *testing.T) {
	k := keys(t)
	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, HeaderClaims: []string{"sub", "realm.roles", "missing", "https://example.com/groups", "n"}})
	claims := with(validClaims(),
		"realm", map[string]any{"roles": []string{"admin", "user"}},
		"https://example.com/groups", []any{"g1", 2, true},
		"n", 1767225600,
	)
	tok, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, claims))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		val string
		ok  bool
	}{{"user-42", true}, {"admin, user", true}, {"", false}, {"g1, 2, true", true}, {"1767225600", true}}
	for i, w := range want {
		if val, ok := tok.HeaderClaim(i); val != w.val || ok != w.ok {
			t.Errorf("header claim %d: got %q %v, want %q %v", i, val, ok, w.val, w.ok)
		}
	}
	for _, bad := range []string{"a\nb", "a\rb", "a\x00b", "a\x7fb", "a\x1bb"} {
		if _, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "sub", bad))); code(err) != CodeClaims {
			t.Errorf("sub %q: got %v, want claims", bad, err)
		}
	}
	if _, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "sub", "a\tb"))); err != nil {
		t.Errorf("tab is allowed: %v", err)
	}
	// a control character in a claim that is not written to a header is fine
	if _, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "note", "a\nb"))); err != nil {
		t.Errorf("control character outside header claims: %v", err)
	}
}

func TestRender(t *testing.T) {
	cases := map[string]string{
		`"plain"`:                      "plain",
		`"esc\"aped\u00e9"`:            `esc"apedé`,
		`1767225600`:                   "1767225600",
		`1.7672256e9`:                  "1767225600",
		`12345678901234567890`:         "12345678901234567890",
		`1.5`:                          "1.5",
		`1e-7`:                         "1e-7",
		`1e21`:                         "1e+21",
		`true`:                         "true",
		`["a", 1, [2, 3], null]`:       "a, 1, 2, 3",
		`{ "a" : [1, "x y"], "b":{} }`: `{"a":[1,"x y"],"b":{}}`,
	}
	for raw, want := range cases {
		if got := render(raw); got != want {
			t.Errorf("render(%s) = %q, want %q", raw, got, want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	k := keys(t)
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "no verification key") {
		t.Fatalf("no keys: %v", err)
	}
	_, err := New(Config{Keys: []*Key{hmacKey(t, k.secret)}, Algorithms: AlgorithmSet(HS512)})
	if err == nil || !strings.Contains(err.Error(), "HS512") || !strings.Contains(err.Error(), "64") {
		t.Fatalf("HS512 with a 32-byte secret: %v", err)
	}
	if _, err := NewHMACKey([]byte("short")); err == nil || !strings.Contains(err.Error(), "32") {
		t.Fatalf("short secret: %v", err)
	}
}

func TestDecodeSecret(t *testing.T) {
	want := []byte{0xfb, 0xff, 0xfe, 0x00}
	for _, in := range []string{"base64:+//+AA==", "base64:-__-AA", "base64:+//+AA"} {
		got, err := DecodeSecret(in)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s: %x %v", in, got, err)
		}
	}
	if _, err := DecodeSecret("base64:!!"); err == nil {
		t.Error("invalid base64 accepted")
	}
	if got, _ := DecodeSecret("plain text"); string(got) != "plain text" {
		t.Error("plain secret changed")
	}
}

func TestParsePublicKeyPEM(t *testing.T) {
	k := keys(t)
	for name, pub := range map[string]any{"rsa": &k.rsa.PublicKey, "p256": &k.ec256.PublicKey, "p384": &k.ec384.PublicKey, "p521": &k.ec521.PublicKey, "ed25519": k.ed.Public()} {
		key, err := ParsePublicKeyPEM(pemPublic(pub))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if key.Algorithms() == 0 {
			t.Fatalf("%s: no algorithms", name)
		}
	}
	if _, err := ParsePublicKeyPEM(append(pemPublic(&k.rsa.PublicKey), pemPublic(&k.ec256.PublicKey)...)); err == nil {
		t.Fatal("two keys in one file accepted")
	}
	if _, err := ParsePublicKeyPEM([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")); err == nil || !strings.Contains(err.Error(), "private") {
		t.Fatalf("private key: %v", err)
	}
	if _, err := ParsePublicKeyPEM([]byte("garbage")); err == nil {
		t.Fatal("garbage accepted")
	}
}

// TestManyClaims covers tokens with more claims than parse reserves room
// for, and header claims within and beyond that room.
func TestManyClaims(t *testing.T) {
	k := keys(t)
	claims := validClaims()
	for i := range 40 {
		claims[fmt.Sprintf("c%02d", i)] = fmt.Sprintf("v%02d", i)
	}
	raw := mint(t, jwt.SigningMethodHS256, k.secret, nil, claims)
	for _, paths := range [][]string{
		{"c00", "c39"},
		{"c00", "c07", "c13", "c21", "c29", "c39", "sub"},
	} {
		v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, HeaderClaims: paths})
		for round := range 3 { // first sight, admission, cache hit
			tok, err := v.Verify(raw)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range paths {
				want := "v" + strings.TrimPrefix(p, "c")
				if p == "sub" {
					want = "user-42"
				}
				if got, ok := tok.HeaderClaim(i); !ok || got != want {
					t.Errorf("%d header claims, round %d: %s = %q %v, want %q", len(paths), round, p, got, ok, want)
				}
			}
			if n := len(tok.ClaimNames()); n != len(claims) {
				t.Errorf("round %d: %d claims, want %d", round, n, len(claims))
			}
			if got, ok := tok.Claim("c25"); !ok || got != "v25" {
				t.Errorf("round %d: c25 = %q %v", round, got, ok)
			}
		}
	}
}

// TestBoundTokens: a token with cnf carries its thumbprints for the
// proof-of-possession checks; without AllowBound it is refused, and a
// refused token is never cached.
func TestBoundTokens(t *testing.T) {
	k := keys(t)
	const jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	const x5t = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"
	bound := mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "cnf", map[string]any{"jkt": jkt, "x5t#S256": x5t}))
	plain := mint(t, jwt.SigningMethodHS256, k.secret, nil, validClaims())

	v := newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}})
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(bound); code(err) != CodeBinding {
			t.Fatalf("try %d: got %v, want binding", i, err)
		}
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("a refused bound token is cached (%d entries)", n)
	}
	if tok, err := v.Verify(plain); err != nil || tok.Bound || tok.JKT != "" || tok.X5T != "" {
		t.Fatalf("unbound token: %v, bound %v, jkt %q, x5t %q", err, tok != nil && tok.Bound, tok.JKT, tok.X5T)
	}

	v = newVerifier(t, Config{Keys: []*Key{hmacKey(t, k.secret)}, AllowBound: true})
	for i := 0; i < 3; i++ { // first sight, admission, from the cache
		tok, err := v.Verify(bound)
		if err != nil || !tok.Bound || tok.JKT != jkt || tok.X5T != x5t {
			t.Fatalf("round %d with AllowBound: %v, bound %v, jkt %q, x5t %q", i, err, tok != nil && tok.Bound, tok.JKT, tok.X5T)
		}
	}
	if v.cache.len() != 1 {
		t.Fatal("an accepted bound token is not cached")
	}
	// Only one thumbprint, or an empty one, is still bound.
	for _, cnf := range []map[string]any{{"jkt": jkt}, {"x5t#S256": x5t}, {"jkt": ""}, {"jwk": map[string]any{"kty": "OKP"}}} {
		tok, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, nil, with(validClaims(), "cnf", cnf)))
		if err != nil || !tok.Bound {
			t.Errorf("cnf %v: %v, bound %v", cnf, err, err == nil && tok.Bound)
			continue
		}
		if tok.JKT != str(cnf["jkt"]) || tok.X5T != str(cnf["x5t#S256"]) {
			t.Errorf("cnf %v: jkt %q, x5t %q", cnf, tok.JKT, tok.X5T)
		}
	}
	// Inspect reads them too, for revocation and tooling.
	if in, err := Inspect(bound); err != nil || in.JKT != jkt || in.X5T != x5t || !in.Bound {
		t.Fatalf("Inspect: %v", err)
	}
}

func str(v any) string { s, _ := v.(string); return s }
