package jwtguard

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/audit"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// withAudit gives a test app the usage and events log of its store, as
// Start would.
func withAudit(tb testing.TB, h *Handler, store *revocation.Store) *audit.Log {
	tb.Helper()
	log, err := audit.Open(store.DB(), audit.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = log.Close() })
	h.app.hold.audit.Store(log)
	return log
}

// BenchmarkServeHTTPDetect is the cost of detection on the request path:
// cached tokens, revocation on, with and without rate, networks and agent
// (none firing). Tokens come from a pool of 64 so that no rule's count
// (65535 a minute each) is reached below 4 million requests a minute; both
// rows use the same pool.
func BenchmarkServeHTTPDetect(b *testing.B) {
	const block = `jwtguard {
		secret ` + testSecret + `
		claim_header sub X-User-Id
		%s
	}`
	tokens := make([]string, 64)
	for i := range tokens {
		tokens[i] = sign(b, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": fmt.Sprint(i)})
	}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	run := func(b *testing.B, detectBlock string) {
		store, err := revocation.Open(b.TempDir(), revocation.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		h := newHandler(b, fmt.Sprintf(block, detectBlock), store)
		if h.detector != nil {
			withAudit(b, h, store)
		}
		w := httptest.NewRecorder()
		serve := func(i int) {
			r := &http.Request{Method: "GET", RemoteAddr: "203.0.113.5:40000",
				Header: http.Header{"Authorization": {"Bearer " + tokens[i%len(tokens)]}, "User-Agent": {"bench/1"}}}
			r = r.WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			if err := h.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
		for i := range 2 * len(tokens) { // every token cached, every rule's state made
			serve(i)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			serve(i)
		}
	}
	b.Run("without-detect", func(b *testing.B) { run(b, "") })
	b.Run("detect", func(b *testing.B) {
		run(b, "detect {\n rate 65535 1m reject\n networks 3 10m reject\n agent reject\n }")
	})
}

// Many requests at once on one token: the rule counts every one exactly
// (the first count pass, every later one is refused) and records one event.
// Run under -race by make race.
func TestDetectConcurrentOneToken(t *testing.T) {
	store, err := revocation.Open(t.TempDir(), revocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n detect {\n  rate 100 1m reject\n  networks 2 1m\n  agent\n }\n}", store)
	log := withAudit(t, h, store)
	tok := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "hot"})
	fired := metrics.detections.WithLabelValues("rate", "reject")
	before := testutil.ToFloat64(fired)
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				r := httptest.NewRequest("GET", "/", nil)
				r.RemoteAddr = "203.0.113.5:1234"
				r.Header.Set("Authorization", "Bearer "+tok)
				_, _, repl, err := serve(h, r)
				code, _ := repl.GetString("http.auth.jwt.error")
				switch {
				case err == nil:
					ok.Add(1)
				case code == "suspicious":
					refused.Add(1)
				default:
					t.Errorf("unexpected failure %q: %v", code, err)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 100 || refused.Load() != 300 {
		t.Fatalf("%d passed and %d refused, want exactly 100 and 300", ok.Load(), refused.Load())
	}
	if n := testutil.ToFloat64(fired) - before; n != 1 {
		t.Errorf("caddy_jwtguard_detections_total{rate,reject} grew by %v, want 1 (one event)", n)
	}
	if n := h.detector.Tracked(); n != 1 || trackedTokens() < 1 {
		t.Errorf("tracked tokens: detector %d, gauge %v", n, trackedTokens())
	}
	if err := log.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		evs, _, err := log.Events(audit.EventQuery{TokenID: "https://idp#hot"})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 1 && evs[0].Detector == "rate" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events = %+v, want exactly one rate event", evs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	u, found, err := log.Usage("https://idp#hot")
	if err != nil || !found || u.Requests != 400 {
		t.Fatalf("usage = %+v %v %v, want 400 requests", u, found, err)
	}
}
