package jwtguard

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/dpop"
)

// freshProcessReplay gives the test or benchmark a process replay cache
// of its own, as a new Caddy process starts with none: this test
// process's handlers have made one of the default size long before.
func freshProcessReplay(t testing.TB) {
	processReplay.Lock()
	saved := processReplay.cache
	processReplay.cache = nil
	processReplay.Unlock()
	t.Cleanup(func() {
		processReplay.Lock()
		processReplay.cache = saved
		processReplay.Unlock()
	})
}

// freshNonces gives the test a process nonce key of its own, as another
// Caddy process has.
func freshNonces(t testing.TB) {
	saved := sharedNonces
	own, err := dpop.NewNonces(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sharedNonces = func() *dpop.Nonces { return own }
	t.Cleanup(func() { sharedNonces = saved })
}

// TestDPoPReplayCacheSize: replay_cache bounds the proofs remembered, the
// next is refused (503 store_unavailable, Retry-After) rather than a
// replay let through; a config that asks for more grows the process's
// cache, for the old config's handlers too, and what the smaller cache
// remembered stays refused; a config that asks for less shrinks nothing.
func TestDPoPReplayCacheSize(t *testing.T) {
	freshProcessReplay(t)
	small := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop {\n  replay_cache 64\n }\n}")
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	var accepted []string
	for i := range 64 {
		p := alice.proof(t, "GET", apiURL, bound)
		if _, up, _, err := serve(small, dpopRequest("DPoP "+bound, p)); err != nil || !up.called {
			t.Fatalf("proof %d of 64 refused: %v", i+1, err)
		}
		accepted = append(accepted, p)
	}
	w, up, repl, err := serve(small, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound)))
	if code, _ := repl.GetString("http.auth.jwt.error"); err == nil || up.called || code != "store_unavailable" || status(err) != http.StatusServiceUnavailable {
		t.Fatalf("proof 65 in a cache of 64: status %d, code %q (%v); want 503 store_unavailable", status(err), code, err)
	}
	if w.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After with the full replay cache")
	}
	wantReplay := func(h *Handler, what, proof string) {
		t.Helper()
		_, up, repl, err := serve(h, dpopRequest("DPoP "+bound, proof))
		if code, _ := repl.GetString("http.auth.jwt.error"); err == nil || up.called || code != "dpop" || status(err) != http.StatusUnauthorized {
			t.Errorf("%s: status %d, code %q (%v); want 401 dpop", what, status(err), code, err)
		}
	}
	wantReplay(small, "a replay into the full cache", accepted[10])

	// The reload: the new config's handler asks for more.
	big := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop {\n  replay_cache 1000\n }\n}")
	for _, i := range []int{0, 31, 63} {
		wantReplay(big, "a replay after the reload, proof "+strconv.Itoa(i+1), accepted[i])
		wantReplay(small, "a replay through the old config's handler, proof "+strconv.Itoa(i+1), accepted[i])
	}
	for _, h := range []*Handler{big, small, big} {
		if _, up, _, err := serve(h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound))); err != nil || !up.called {
			t.Fatalf("a fresh proof after growing: %v", err)
		}
	}
	// Asking for less later changes nothing.
	newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop {\n  replay_cache 10\n }\n}")
	if n := processReplay.cache.Entries(); n != 1000 {
		t.Fatalf("the process's cache holds %d, want 1000", n)
	}
	// Nor does a handler with the default, which is larger.
	newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop\n}")
	if n := processReplay.cache.Entries(); n != 131072 {
		t.Fatalf("after a handler with the default: %d, want 131072", n)
	}
}

// TestDPoPReplayCacheJSON: the JSON field, and its bounds when a config
// comes as JSON rather than Caddyfile.
func TestDPoPReplayCacheJSON(t *testing.T) {
	var h Handler
	if err := json.Unmarshal([]byte(`{"dpop":{"replay_cache":5000}}`), &h); err != nil || h.DPoP.ReplayCache != 5000 {
		t.Fatalf("%+v %v", h.DPoP, err)
	}
	for _, n := range []int{-1, maxReplayCache + 1} {
		if err := (&DPoP{ReplayCache: n}).check(); err == nil {
			t.Errorf("replay_cache %d accepted", n)
		}
	}
	if err := (&DPoP{ReplayCache: maxReplayCache}).check(); err != nil {
		t.Errorf("replay_cache %d: %v", maxReplayCache, err)
	}
}

// TestDPoPClusterWithoutApp: a handler with `revocation off` and no
// `detect` has no app of its own, and still spends proofs across the
// cluster, through the running config's app.
func TestDPoPClusterWithoutApp(t *testing.T) {
	runClusterApp(t)

	// Two handlers, each with a replay cache of its own as two nodes
	// have: only Redis can tell the second of the first's proof.
	freshProcessReplay(t)
	a := newHandler(t, "jwtguard {\n secret "+testSecret+"\n revocation off\n dpop\n}")
	freshProcessReplay(t)
	b := newHandler(t, "jwtguard {\n secret "+testSecret+"\n revocation off\n dpop\n}")
	if a.app != nil || b.app != nil {
		t.Fatal("a handler with revocation off took an app")
	}
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	proof := alice.proof(t, "GET", apiURL, bound)
	if _, up, _, err := serve(a, dpopRequest("DPoP "+bound, proof)); err != nil || !up.called {
		t.Fatalf("first use on A: %v", err)
	}
	_, up, repl, err := serve(b, dpopRequest("DPoP "+bound, proof))
	if code, _ := repl.GetString("http.auth.jwt.error"); err == nil || up.called || code != "dpop" {
		t.Fatalf("the proof spent on A, on B: err %v, code %q", err, code)
	}
}

// TestDPoPClusterNonceWithoutApp: handlers with no app of their own, on
// two nodes (each with its own nonce key), take each other's nonces
// through the running config's cluster: a client need not fetch a new
// nonce when the load balancer sends it to another node.
func TestDPoPClusterNonceWithoutApp(t *testing.T) {
	runClusterApp(t)
	const config = "jwtguard {\n secret " + testSecret + "\n revocation off\n dpop {\n  nonce\n }\n}"
	freshNonces(t)
	a := newHandler(t, config)
	freshNonces(t)
	b := newHandler(t, config)
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	nonce := nonceFrom(t, a, alice, bound)
	if _, up, repl, err := serve(b, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound, "nonce", nonce))); err != nil || !up.called {
		code, _ := repl.GetString("http.auth.jwt.error")
		t.Fatalf("B refused the nonce A handed out: %q %v", code, err)
	}
}

// TestAttackDPoPReplayOnLongerMaxAgeRoute: a proof spent on a route with
// max_age 10s, replayed on a route with max_age 120s once the short
// window has passed, must be refused: the handler keeps every proof for
// the process's largest max_age (Config.RememberFor), not its own. The
// proof is dated 9 s back, so the short window ends a second after it
// is spent.
func TestAttackDPoPReplayOnLongerMaxAgeRoute(t *testing.T) {
	freshProcessReplay(t)
	short := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop {\n  max_age 10s\n  leeway 0s\n }\n}")
	long := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop {\n  max_age 120s\n  leeway 0s\n }\n}")
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	iat := float64(time.Now().UnixMilli())/1e3 - 9
	proof := alice.proof(t, "GET", apiURL, bound, "iat", iat)
	if _, up, repl, err := serve(short, dpopRequest("DPoP "+bound, proof)); err != nil || !up.called {
		code, _ := repl.GetString("http.auth.jwt.error")
		t.Fatalf("the proof on the short route: %q %v", code, err)
	}
	// past the short window, whole seconds rounded up
	time.Sleep(time.Until(time.UnixMilli(int64((iat+10)*1e3))) + 1100*time.Millisecond)
	w, up, repl, err := serve(long, dpopRequest("DPoP "+bound, proof))
	code, _ := repl.GetString("http.auth.jwt.error")
	if err == nil || up.called || code != "dpop" || !strings.Contains(strings.Join(wwwAuthenticate(w), "\n"), "replayed") {
		t.Fatalf("the spent proof on the long route: %d %q %q, want 401 dpop, replayed", status(err), code, wwwAuthenticate(w))
	}
}
