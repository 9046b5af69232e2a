package jwks

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

func TestKeyTypes(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(
		jwkOf("rsa", &k.rsa1.PublicKey),
		jwkOf("p256", &k.ec256.PublicKey),
		jwkOf("p384", &k.ec384.PublicKey),
		jwkOf("p521", &k.ec521.PublicKey),
		jwkOf("ed", k.ed.Public()),
	))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{CacheEntries: -1})
	f.refresh(t)
	for _, c := range []struct {
		kid    string
		method jwt.SigningMethod
		key    any
	}{
		{"rsa", jwt.SigningMethodRS256, k.rsa1},
		{"rsa", jwt.SigningMethodRS512, k.rsa1},
		{"rsa", jwt.SigningMethodPS256, k.rsa1},
		{"p256", jwt.SigningMethodES256, k.ec256},
		{"p384", jwt.SigningMethodES384, k.ec384},
		{"p521", jwt.SigningMethodES512, k.ec521},
		{"ed", jwt.SigningMethodEdDSA, k.ed},
	} {
		tok := mint(t, c.method, c.key, c.kid, f.claims(iss))
		if _, err := f.v.Verify(tok); err != nil {
			t.Errorf("%s %s: %v", c.kid, c.method.Alg(), err)
		}
		// Without a kid, every key is a candidate.
		tok = mint(t, c.method, c.key, "", f.claims(iss))
		if _, err := f.v.Verify(tok); err != nil {
			t.Errorf("%s %s without kid: %v", c.kid, c.method.Alg(), err)
		}
	}
	// A kid names the key: another key's kid does not verify.
	wantCode(t, f.v, mint(t, jwt.SigningMethodES256, k.ec256, "rsa", f.claims(iss)), verifier.CodeAlgorithm)
	wantCode(t, f.v, mint(t, jwt.SigningMethodEdDSA, k.otherEd, "ed", f.claims(iss)), verifier.CodeSignature)
}

func TestAlgBinding(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(
		jwkOf("k1", &k.rsa1.PublicKey, "alg", "RS256", "use", "sig"),
		jwkOf("e1", &k.ec256.PublicKey, "alg", "ES384"), // the curve cannot do it
		jwkOf("e2", &k.ec384.PublicKey, "alg", "ES384"),
	))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{CacheEntries: -1})
	f.refresh(t)
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss)), "")
	wantCode(t, f.v, mint(t, jwt.SigningMethodPS256, k.rsa1, "k1", f.claims(iss)), verifier.CodeAlgorithm)
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS512, k.rsa1, "k1", f.claims(iss)), verifier.CodeAlgorithm)
	wantCode(t, f.v, mint(t, jwt.SigningMethodES384, k.ec384, "e2", f.claims(iss)), "")
	if keys, _ := f.set.Keys("e1", ""); len(keys) != 0 {
		t.Fatal("P-256 key bound to ES384 was loaded")
	}
	wantCode(t, f.v, mint(t, jwt.SigningMethodES256, k.ec256, "e1", f.claims(iss)), verifier.CodeSignature)
	skips := logged(f.logs, "jwks key skipped")
	if len(skips) != 1 || skips[0].ContextMap()["kid"] != "e1" || skips[0].Level.String() != "warn" {
		t.Fatalf("skip log lines: %v", skips)
	}
}

func TestKIDs(t *testing.T) {
	k := keys()
	p := newProvider(t, setJSON(
		jwkOf("", k.ed.Public()),                     // no kid
		jwkOf("same", &k.ec256.PublicKey),            // two keys under one kid
		jwkOf("same", &k.ec384.PublicKey),            //
		jwkOf("dup", &k.rsa1.PublicKey),              // one provider bug: the same
		jwkOf("dup", &k.rsa2.PublicKey),              // kid on both sides of a rotation
		jwkOf("p", &k.rsa1.PublicKey, "e", "AQAB=="), // padding tolerated
	))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{CacheEntries: -1})
	f.refresh(t)
	wantCode(t, f.v, mint(t, jwt.SigningMethodEdDSA, k.ed, "", f.claims(iss)), "")
	// A kid selects among the keys: the kid-less key is not among them.
	wantCode(t, f.v, mint(t, jwt.SigningMethodEdDSA, k.ed, "other", f.claims(iss)), verifier.CodeSignature)
	wantCode(t, f.v, mint(t, jwt.SigningMethodES256, k.ec256, "same", f.claims(iss)), "")
	wantCode(t, f.v, mint(t, jwt.SigningMethodES384, k.ec384, "same", f.claims(iss)), "")
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "dup", f.claims(iss)), "")
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa2, "dup", f.claims(iss)), "")
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "p", f.claims(iss)), "")
	if all, _ := f.set.Keys("", ""); len(all) != 6 {
		t.Fatalf("%d keys, want 6", len(all))
	}
}

// TestCertificateMembersIgnored: the key is n and e, whatever x5c says,
// and a key with only x5c is no key.
func TestCertificateMembersIgnored(t *testing.T) {
	k := keys()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.other.PublicKey, k.other)
	if err != nil {
		t.Fatal(err)
	}
	x5c := []string{base64.StdEncoding.EncodeToString(der)}
	p := newProvider(t, setJSON(
		jwkOf("k1", &k.rsa1.PublicKey, "x5c", x5c, "x5t", "abc", "x5u", "https://evil.example/cert"),
		map[string]any{"kty": "RSA", "kid": "certonly", "x5c": x5c},
	))
	f := newFixture(t, Options{URL: p.url()}, verifier.Config{CacheEntries: -1})
	f.refresh(t)
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.rsa1, "k1", f.claims(iss)), "")
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.other, "k1", f.claims(iss)), verifier.CodeSignature)
	wantCode(t, f.v, mint(t, jwt.SigningMethodRS256, k.other, "certonly", f.claims(iss)), verifier.CodeSignature)
}

func TestParseKey(t *testing.T) {
	k := keys()
	b64 := base64.RawURLEncoding.EncodeToString
	p256 := jwkOf("e", &k.ec256.PublicKey)
	offCurve := jwkOf("e", &k.ec256.PublicKey)
	y, _ := base64.RawURLEncoding.DecodeString(offCurve["y"].(string))
	y[len(y)-1] ^= 1
	offCurve["y"] = b64(y)
	edPub := k.ed.Public().(ed25519.PublicKey)

	for _, c := range []struct {
		name  string
		jwk   map[string]any
		ok    bool
		quiet bool // for a skipped key: not logged as a problem
	}{
		{"RSA", jwkOf("r", &k.rsa1.PublicKey), true, false},
		{"RSA sig", jwkOf("r", &k.rsa1.PublicKey, "use", "sig", "key_ops", []string{"verify"}), true, false},
		{"RSA 1024 bits", jwkOf("r", &k.rsaSmall.PublicKey), false, false},
		{"RSA even exponent", jwkOf("r", &k.rsa1.PublicKey, "e", b64([]byte{1, 0, 0})), false, false},
		{"RSA exponent 1", jwkOf("r", &k.rsa1.PublicKey, "e", "AQ"), false, false},
		{"RSA huge exponent", jwkOf("r", &k.rsa1.PublicKey, "e", b64([]byte{1, 0, 0, 0, 1})), false, false},
		{"RSA no n", jwkOf("r", &k.rsa1.PublicKey, "n", nil), false, false},
		{"RSA n not base64url", jwkOf("r", &k.rsa1.PublicKey, "n", "a+b/"), false, false},
		{"RSA huge modulus", jwkOf("r", &k.rsa1.PublicKey, "n", b64(append([]byte{0xff}, make([]byte, 2048)...))), false, false},
		{"RSA alg RS512", jwkOf("r", &k.rsa1.PublicKey, "alg", "RS512"), true, false},
		{"RSA alg HS256", jwkOf("r", &k.rsa1.PublicKey, "alg", "HS256"), false, false},
		{"RSA alg none", jwkOf("r", &k.rsa1.PublicKey, "alg", "none"), false, false},
		{"RSA alg RSA-OAEP", jwkOf("r", &k.rsa1.PublicKey, "alg", "RSA-OAEP"), false, false},
		{"use enc", jwkOf("r", &k.rsa1.PublicKey, "use", "enc"), false, true},
		{"key_ops encrypt", jwkOf("r", &k.rsa1.PublicKey, "key_ops", []string{"encrypt"}), false, true},
		{"EC P-256", p256, true, false},
		{"EC off the curve", offCurve, false, false},
		{"EC short x", jwkOf("e", &k.ec256.PublicKey, "x", b64(make([]byte, 31))), false, false},
		{"EC zero point", jwkOf("e", &k.ec256.PublicKey, "x", b64(make([]byte, 32)), "y", b64(make([]byte, 32))), false, false},
		{"EC P-256K", jwkOf("e", &k.ec256.PublicKey, "crv", "secp256k1"), false, false},
		{"EC crv mismatch", jwkOf("e", &k.ec256.PublicKey, "crv", "P-384"), false, false},
		{"EC alg ES256", jwkOf("e", &k.ec256.PublicKey, "alg", "ES256"), true, false},
		{"Ed25519", jwkOf("d", edPub), true, false},
		{"Ed25519 alg EdDSA", jwkOf("d", edPub, "alg", "EdDSA"), true, false},
		{"Ed25519 short x", jwkOf("d", edPub, "x", b64(edPub[:31])), false, false},
		{"Ed448", jwkOf("d", edPub, "crv", "Ed448"), false, false},
		{"X25519", jwkOf("d", edPub, "crv", "X25519"), false, false},
		{"oct", map[string]any{"kty": "oct", "k": b64(make([]byte, 32))}, false, true},
		{"unknown kty", map[string]any{"kty": "PQC"}, false, true},
		{"no kty", map[string]any{"kid": "x"}, false, false},
	} {
		raw, _ := json.Marshal(c.jwk)
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			t.Fatal(err)
		}
		pk, skip := parseKey(&j)
		switch {
		case c.ok && skip != nil:
			t.Errorf("%s: skipped: %s", c.name, skip.reason)
		case !c.ok && skip == nil:
			t.Errorf("%s: accepted", c.name)
		case !c.ok && skip.quiet != c.quiet:
			t.Errorf("%s: quiet = %v (%s)", c.name, skip.quiet, skip.reason)
		case c.ok && pk.key == nil:
			t.Errorf("%s: no key", c.name)
		}
	}
}

func TestParseSet(t *testing.T) {
	k := keys()
	var many []map[string]any
	for i := range maxKeys + 5 {
		many = append(many, jwkOf(strings.Repeat("k", i+1), k.ed.Public()))
	}
	keys, skips, err := parseSet(setJSON(many...), "")
	if err != nil || len(keys) != maxKeys || len(skips) != 5 {
		t.Fatalf("%d keys: kept %d, skipped %d, %v", len(many), len(keys), len(skips), err)
	}
	// A key that is not an object is skipped, not fatal.
	keys, skips, err = parseSet([]byte(`{"keys":[1,"x",{"kty":"OKP","crv":"Ed25519","x":"`+
		base64.RawURLEncoding.EncodeToString(k.ed.Public().(ed25519.PublicKey))+`","kid":"d"}]}`), iss)
	if err != nil || len(keys) != 1 || len(skips) != 2 || keys[0].key.ID != "d" || keys[0].key.Issuer != iss {
		t.Fatalf("mixed document: %d keys, %d skips, %v", len(keys), len(skips), err)
	}
}
