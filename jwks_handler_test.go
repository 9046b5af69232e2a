package jwtguard

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestHandlerJWKS wires a JWK Set through the handler: a provider that is
// down at start gives 503 keys_unavailable, and the same request works as
// soon as a fetch succeeds; an oidc source refuses another issuer's token.
func TestHandlerJWKS(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwk := map[string]any{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
		"x": b64(key.X.FillBytes(make([]byte, 32))), "y": b64(key.Y.FillBytes(make([]byte, 32)))}
	var up atomic.Bool
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks"})
		default:
			json.NewEncoder(w).Encode(map[string]any{"keys": []any{jwk}})
		}
	}))
	defer srv.Close()

	sign := func(iss string) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "erin", "iss": iss, "exp": time.Now().Add(time.Hour).Unix()})
		tk.Header["kid"] = "k1"
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// With one issuer line, a jwks source binds its keys to that issuer, as
	// an oidc source does by itself.
	for _, src := range []string{"jwks " + srv.URL + "/jwks\n issuer " + srv.URL, "oidc " + srv.URL} {
		t.Run(src[:4], func(t *testing.T) {
			up.Store(false)
			h := newHandler(t, "jwtguard {\n "+src+"\n claim_header sub X-User\n}")
			get := func(tok string) (int, string) {
				r := httptest.NewRequest("GET", "/", nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				w, _, repl, err := serve(h, r)
				code, _ := repl.GetString("http.auth.jwt.error")
				if status(err) == 503 && w.Header().Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				if err == nil {
					return 200, ""
				}
				return status(err), code
			}
			tok := sign(srv.URL)
			if s, c := get(tok); s != 503 || c != "keys_unavailable" {
				t.Fatalf("provider down at start: %d %s", s, c)
			}
			up.Store(true)
			if err := h.keySets[0].Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			if s, c := get(tok); s != 200 {
				t.Fatalf("after the provider came up: %d %s", s, c)
			}
			if s, c := get(sign("https://other.example")); s != 401 || (c != "signature" && c != "issuer") {
				t.Fatalf("another issuer's token: %d %s", s, c)
			}
			up.Store(false)
			if err := h.keySets[0].Refresh(context.Background()); err == nil {
				t.Fatal("refresh against a down provider succeeded")
			}
			if s, _ := get(sign(srv.URL)); s != 200 {
				t.Fatalf("provider down later: %d", s)
			}
		})
	}
}
