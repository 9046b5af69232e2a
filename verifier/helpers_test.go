package verifier

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testKeys are generated once: RSA generation is slow.
type testKeys struct {
	secret  []byte
	rsa     *rsa.PrivateKey
	rsaPEM  []byte
	ec256   *ecdsa.PrivateKey
	ec384   *ecdsa.PrivateKey
	ec521   *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	other   *rsa.PrivateKey // an attacker's key
	otherEd ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	tk       testKeys
)

func keys(t testing.TB) *testKeys {
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		tk.secret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
		tk.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		tk.other, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		tk.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tk.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		tk.ec521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		must(err)
		_, tk.ed, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		_, tk.otherEd, err = ed25519.GenerateKey(rand.Reader)
		must(err)
		tk.rsaPEM = pemPublic(&tk.rsa.PublicKey)
	})
	return &tk
}

func pemPublic(pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// mintRaw signs exactly the given header and payload JSON text, so tests
// can build tokens no well-behaved library would produce.
func mintRaw(t testing.TB, method jwt.SigningMethod, key any, header, payload string) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	if method == nil {
		return input + "."
	}
	sig, err := method.Sign(input, key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// mint signs claims (a map, JSON-encoded) with the given header fields.
func mint(t testing.TB, method jwt.SigningMethod, key any, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": method.Alg(), "typ": "JWT"}
	for k, v := range hdr {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	hj, _ := json.Marshal(h)
	cj, _ := json.Marshal(claims)
	return mintRaw(t, method, key, string(hj), string(cj))
}

// fixed clock for tests: 2026-01-01T00:00:00Z
var testNow = time.Unix(1767225600, 0)

func validClaims() map[string]any {
	return map[string]any{
		"iss": "https://issuer.example",
		"sub": "user-42",
		"aud": "api",
		"iat": testNow.Unix() - 60,
		"exp": testNow.Unix() + 3600,
	}
}

func with(c map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func hmacKey(t testing.TB, secret []byte) *Key {
	k, err := NewHMACKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubKey(t testing.TB, pub any) *Key {
	k, err := NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func code(err error) Code {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(*Error); ok {
		return e.Code
	}
	return Code("not *Error: " + err.Error())
}
