package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// Proofs in these tests are signed by go-jose or by hand with the standard
// library, never by the code under test, and cnf.jkt values come from
// go-jose's thumbprint.

// fixed clock: 2026-01-01T00:00:00Z
var testNow = time.Unix(1767225600, 0)

// testToken stands for the access token the proof goes with.
const testToken = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiY25mIjp7ImprdCI6IngifX0.c2lnbmF0dXJl"

type testKeys struct {
	ec256, ec384, ec521, other *ecdsa.PrivateKey
	rsa, rsa1024               *rsa.PrivateKey
	ed                         ed25519.PrivateKey
}

var (
	keysOnce sync.Once
	tk       testKeys
)

// keys are generated once: RSA generation is slow.
func keys() *testKeys {
	keysOnce.Do(func() {
		must := func(err error) {
			if err != nil {
				panic(err)
			}
		}
		var err error
		tk.ec256, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tk.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		tk.ec521, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
		must(err)
		tk.other, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tk.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		tk.rsa1024, err = rsa.GenerateKey(rand.Reader, 1024)
		must(err)
		_, tk.ed, err = ed25519.GenerateKey(rand.Reader)
		must(err)
	})
	return &tk
}

// publicOf returns the public half of a private key.
func publicOf(priv crypto.Signer) crypto.PublicKey { return priv.Public() }

// jkt is go-jose's RFC 7638 thumbprint of a key.
func jkt(t testing.TB, priv crypto.Signer) string {
	t.Helper()
	k := jose.JSONWebKey{Key: publicOf(priv)}
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

// jwkJSON is go-jose's JWK of a key's public half.
func jwkJSON(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func athOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// athNonCanonical is athOf with the last character's two unused bits
// set: a lenient decoder reads the same digest.
func athNonCanonical(token string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	a := athOf(token)
	return a[:42] + string(alphabet[strings.IndexByte(alphabet, a[42])|3])
}

var jtiCounter atomic.Int64

// claims are a proof's claims for testRequest, with changes: a nil value
// removes the claim.
func claims(kv ...any) map[string]any {
	c := map[string]any{
		"jti": "jti-" + strconv.FormatInt(jtiCounter.Add(1), 10),
		"htm": "GET",
		"htu": "https://api.example.com/orders/42",
		"iat": testNow.Unix(),
		"ath": athOf(testToken),
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func testRequest(jkt string) Request {
	return Request{Method: "GET", Scheme: "https", Host: "api.example.com", Path: "/orders/42", AccessToken: testToken, JKT: jkt}
}

// joseProof signs claims with go-jose, the public key embedded as jwk.
func joseProof(t testing.TB, alg jose.SignatureAlgorithm, priv crypto.Signer, c map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt")
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// rawProof signs exactly the given header and payload JSON text with the
// standard library, so tests can build proofs no library would. alg picks
// the signature: "ES256"..., "RS256", "PS256", "EdDSA", "HS256" (key is a
// []byte) or "none" (no signature).
func rawProof(t testing.TB, alg string, key any, header, payload string) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	sig, err := signRaw(alg, key, input)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func signRaw(alg string, key any, input string) ([]byte, error) {
	switch alg {
	case "none":
		return nil, nil
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		return m.Sum(nil), nil
	case "EdDSA", "Ed25519":
		return ed25519.Sign(key.(ed25519.PrivateKey), []byte(input)), nil
	case "RS256", "PS256":
		sum := sha256.Sum256([]byte(input))
		if alg == "RS256" {
			return rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:])
		}
		return rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:], nil)
	case "ES256", "ES384", "ES512":
		priv := key.(*ecdsa.PrivateKey)
		var digest []byte
		switch alg {
		case "ES256":
			s := sha256.Sum256([]byte(input))
			digest = s[:]
		case "ES384":
			s := sha512.Sum384([]byte(input))
			digest = s[:]
		default:
			s := sha512.Sum512([]byte(input))
			digest = s[:]
		}
		r, s, err := ecdsa.Sign(rand.Reader, priv, digest)
		if err != nil {
			return nil, err
		}
		size := (priv.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	}
	return nil, errors.New("unknown alg " + alg)
}

// header is a proof header's JSON text with a jwk.
func header(typ, alg, jwk string) string {
	return `{"typ":"` + typ + `","alg":"` + alg + `","jwk":` + jwk + `}`
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// fakeClock is a settable clock.
type fakeClock struct{ ns atomic.Int64 }

func newClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func fixedNow() time.Time                { return testNow }
func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

// outcome names what Verify did: "ok", "<code>/<challenge>", or a
// description of an error that is not an *Error.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var e *Error
	if !errors.As(err, &e) {
		return "not *Error: " + err.Error()
	}
	return string(e.Code) + "/" + e.Challenge
}

const (
	okay        = "ok"
	badProof    = "dpop/" + ErrorInvalidProof
	needNonce   = "dpop/" + ErrorUseNonce
	badBinding  = string(verifier.CodeBinding) + "/" + ErrorInvalidToken
	unavailable = string(verifier.CodeStoreUnavailable) + "/"
)

func mustAlg(name string) verifier.Algorithm {
	a, ok := parseAlgorithm(name)
	if !ok {
		panic(name)
	}
	return a
}
