package jwtguard

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/cluster"
	"github.com/jwtguard/caddy-jwtguard/dpop"
	"github.com/jwtguard/caddy-jwtguard/internal/redistest"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// clusterStore opens a node's store replicating through rds, as App.open
// wires it, closed when the test ends.
func clusterStore(t *testing.T, rds *redistest.Server, node string) (*cluster.Redis, *revocation.Store) {
	t.Helper()
	eng, err := cluster.NewRedis(cluster.Options{URLs: []string{rds.URL()}, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	s, err := revocation.Open(t.TempDir(), revocation.Options{Journal: eng})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(); s.Close() })
	return eng, s
}

// clusterHandler is a dpop handler of a node whose store replicates
// through rds.
func clusterHandler(t *testing.T, rds *redistest.Server, node string) *Handler {
	t.Helper()
	eng, s := clusterStore(t, rds, node)
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop {\n  nonce\n }\n}", s)
	h.app.hold.opened.Store(&openStore{Store: s, engine: eng})
	// Each node is its own process: its own local replay cache and nonce
	// key, not this test process's shared ones.
	own, err := dpop.NewNonces(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := h.DPoP.config()
	cfg.Replay = &clusterReplay{local: dpop.NewReplayCache(0, nil), shared: h.clusterShared, log: h.logger}
	cfg.Nonces = &clusterNonces{local: own, shared: h.clusterShared}
	if h.proofs, err = dpop.New(cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

// runClusterApp runs, until t ends, the app of a config whose store
// replicates through a Redis of its own, as App.Start registers it.
func runClusterApp(t *testing.T) {
	eng, s := clusterStore(t, redistest.Start(t, false), "a")
	app := testApp(s)
	app.hold.opened.Store(&openStore{Store: s, engine: eng})
	runApp(t, app)
}

// nonceFrom sends h one of k's proofs without a nonce and returns the
// nonce its refusal hands out.
func nonceFrom(t *testing.T, h *Handler, k dpopKey, bound string) string {
	t.Helper()
	w, _, _, err := serve(h, dpopRequest("DPoP "+bound, k.proof(t, "GET", apiURL, bound)))
	nonce := w.Header().Get("DPoP-Nonce")
	if err == nil || nonce == "" {
		t.Fatalf("a proof without a nonce: %v, DPoP-Nonce %q", err, nonce)
	}
	return nonce
}

// With a cluster, a proof spent on one node is spent on all, and a nonce
// one node hands out is good on the others.
func TestDPoPAcrossCluster(t *testing.T) {
	rds := redistest.Start(t, false)
	a, b := clusterHandler(t, rds, "a"), clusterHandler(t, rds, "b")
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})

	// A hands out a nonce; B takes it.
	nonce := nonceFrom(t, a, alice, bound)
	proof := alice.proof(t, "GET", apiURL, bound, "nonce", nonce)
	if _, up, _, err := serve(b, dpopRequest("DPoP "+bound, proof)); err != nil || !up.called {
		t.Fatalf("B refused a nonce A handed out: %v", err)
	}
	// The proof B accepted, replayed on A.
	_, up, repl, err := serve(a, dpopRequest("DPoP "+bound, proof))
	if code, _ := repl.GetString("http.auth.jwt.error"); err == nil || up.called || code != "dpop" {
		t.Fatalf("a proof spent on B replayed on A: err %v, code %q", err, code)
	}
	// Redis away: each node's own cache still refuses its own replays,
	// and fresh proofs pass.
	rds.Kill()
	fresh := alice.proof(t, "GET", apiURL, bound, "nonce", nonce)
	if _, up, _, err := serve(a, dpopRequest("DPoP "+bound, fresh)); err != nil || !up.called {
		t.Fatalf("a fresh proof with Redis down: %v", err)
	}
	if _, _, repl, err := serve(a, dpopRequest("DPoP "+bound, fresh)); err == nil {
		t.Fatal("a replay on the same node with Redis down passed")
	} else if code, _ := repl.GetString("http.auth.jwt.error"); code != "dpop" {
		t.Fatalf("replay with Redis down: %q", code)
	}
}

// slowShared is a cluster whose replay check takes d, and finds every key
// new, as Redis does for a key whose entry expired meanwhile.
type slowShared struct{ d time.Duration }

func (s slowShared) SeenOnce(string, time.Time) (bool, error) { time.Sleep(s.d); return true, nil }
func (slowShared) SharedSecret(string, int) ([]byte, error)   { return nil, nil }

// TestAttackClusterReplayExpiredInRedis: a proof whose window ends while
// the cluster answers may have been spent on another node, its entry gone
// from Redis in the meantime: "first seen" then proves nothing, and the
// proof is refused as expired rather than let through as new.
func TestAttackClusterReplayExpiredInRedis(t *testing.T) {
	c := &clusterReplay{local: dpop.NewReplayCache(0, nil), shared: func() sharedOnce { return slowShared{30 * time.Millisecond} }, log: zap.NewNop()}
	now := time.Now()
	if first, err := c.SeenAt("ending", now.Add(10*time.Millisecond).UnixNano(), now.UnixNano()); err != dpop.ErrProofExpired {
		t.Fatalf("a proof whose window ended during the cluster's answer: first %v, %v; want ErrProofExpired", first, err)
	}
	now = time.Now()
	if first, err := c.SeenAt("in-time", now.Add(time.Minute).UnixNano(), now.UnixNano()); !first || err != nil {
		t.Fatalf("a proof well within its window: first %v, %v", first, err)
	}
}
