package jwtguard

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// BenchmarkServeHTTP measures the handler with a cached token and three
// claim headers; "baseline" is the same request handed straight to next,
// so the difference is what jwtguard adds.
func BenchmarkServeHTTP(b *testing.B) {
	h := newHandler(b, `jwtguard {
		secret `+testSecret+`
		claim_header sub X-User-Id
		claim_header email X-User-Email
		claim_header roles X-User-Roles
	}`)
	tok := sign(b, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "j", "email": "a@example.com", "roles": []string{"a", "b"}})
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	run := func(b *testing.B, serve func(w http.ResponseWriter, r *http.Request) error) {
		w := httptest.NewRecorder()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			// A request as Caddy's server hands it over: fresh headers
			// and a replacer in the context.
			r := &http.Request{Method: "GET", Header: http.Header{"Authorization": {"Bearer " + tok}, "Accept": {"*/*"}, "User-Agent": {"bench"}}}
			r = r.WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			if err := serve(w, r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("baseline", func(b *testing.B) { run(b, next.ServeHTTP) })
	b.Run("jwtguard", func(b *testing.B) {
		run(b, func(w http.ResponseWriter, r *http.Request) error { return h.ServeHTTP(w, r, next) })
	})
	// distinct: every request carries a token never seen before (minted
	// beforehand, one per iteration), so parsing, the signature and
	// rendering are paid each time; revocation is on, with a store in a
	// temporary directory.
	b.Run("jwtguard-distinct", func(b *testing.B) {
		store, err := revocation.Open(b.TempDir(), revocation.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		hd := newHandler(b, `jwtguard {
			secret `+testSecret+`
			claim_header sub X-User-Id
			claim_header email X-User-Email
			claim_header roles X-User-Roles
		}`, store)
		// As many tokens as requests: a token seen twice would be cached.
		b.StopTimer()
		tokens := make([]string, b.N)
		for i := range tokens {
			tokens[i] = sign(b, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": strconv.Itoa(i),
				"email": "a@example.com", "roles": []string{"a", "b"}, "iat": time.Now().Unix()})
		}
		w := httptest.NewRecorder()
		b.ReportAllocs()
		b.ResetTimer()
		b.StartTimer()
		for i := 0; i < b.N; i++ {
			r := &http.Request{Method: "GET", Header: http.Header{"Authorization": {"Bearer " + tokens[i]}}}
			r = r.WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			if err := hd.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
	})
}
