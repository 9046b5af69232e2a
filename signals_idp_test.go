package jwtguard

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// What the signals tests' identity providers have in common: sigIdP here
// and procIdP in the process tests (package jwtguard_test, hence
// exported). Each adds its own poll endpoint to the mux.

// NewSignalsTestIdP returns a new ES256 key and a mux serving, for the
// issuer iss returns, the Shared Signals and OpenID discovery documents
// and a JWK Set holding that key as k1.
func NewSignalsTestIdP(t testing.TB, iss func() string) (*ecdsa.PrivateKey, *http.ServeMux) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := key.PublicKey.Bytes()
	b64 := base64.RawURLEncoding.EncodeToString
	jwk := map[string]any{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "x": b64(raw[1:33]), "y": b64(raw[33:])}
	mux := http.NewServeMux()
	for _, path := range []string{"/.well-known/ssf-configuration", "/.well-known/openid-configuration"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			json.NewEncoder(w).Encode(map[string]string{"issuer": iss(), "jwks_uri": iss() + "/jwks"})
		})
	}
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwk}})
	})
	return key, mux
}

// SignSignalsTestToken signs claims with key as k1, with typ in the header
// when it is not empty.
func SignSignalsTestToken(t testing.TB, key *ecdsa.PrivateKey, typ string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = "k1"
	if typ != "" {
		tok.Header["typ"] = typ
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
