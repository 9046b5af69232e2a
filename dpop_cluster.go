package jwtguard

import (
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/dpop"
)

// sharedOnce is what a cluster engine offers DPoP: a replay cache and a
// nonce key common to every node (cluster.Redis has both).
type sharedOnce interface {
	SeenOnce(key string, until time.Time) (bool, error)
	SharedSecret(name string, n int) ([]byte, error)
}

// clusterShared finds the cluster engine for the handler's DPoP checks.
// A handler with `revocation off` and no `detect` takes no app of its own
// (Provision asks for one only to check revocations or keep an audit), yet
// its node is as much part of the cluster as any: it uses the app of the
// running config, which holds the process's one store and engine, and
// finds it even when that app starts after its first requests.
func (h *Handler) clusterShared() sharedOnce {
	app := h.app
	if app == nil {
		app = currentApp()
	}
	return appShared(app)
}

// appShared is what app's cluster engine offers DPoP, nil without an app
// or a cluster.
func appShared(app *App) sharedOnce {
	if app == nil {
		return nil
	}
	s, _ := app.engine().(sharedOnce)
	return s
}

// clusterReplay spends a proof's jti on this node, then, with a cluster,
// on every node: a proof replayed on another node is refused too. While
// Redis cannot answer, this node's cache alone decides (as requests go on
// from each node's own revocation list), and a warning says so.
type clusterReplay struct {
	local  dpop.ReplayCacheAt
	shared func() sharedOnce
	log    *zap.Logger
	warned atomic.Int64 // unix seconds of the last warning
}

func (c *clusterReplay) Seen(jti string, until time.Time) (bool, error) {
	return c.SeenAt(jti, until.UnixNano(), time.Now().UnixNano())
}

// SeenAt implements dpop.ReplayCacheAt: Verify's clock reading serves the
// local cache, and only a cluster's answer, which takes a round trip,
// needs the clock again.
func (c *clusterReplay) SeenAt(jti string, until, now int64) (bool, error) {
	first, err := c.local.SeenAt(jti, until, now)
	if err != nil || !first {
		return first, err
	}
	s := c.shared()
	if s == nil {
		return true, nil
	}
	first, err = s.SeenOnce("dpop:"+jti, time.Unix(0, until))
	if err != nil {
		if now := time.Now().Unix(); c.warned.Swap(now) < now-60 {
			c.log.Warn("DPoP replay cache: the cluster cannot answer; proofs are checked against this node's cache only", zap.Error(err))
		}
		return true, nil
	}
	if first && time.Now().UnixNano() > until {
		// Another node's entry may have expired in Redis while the
		// request went there.
		return false, dpop.ErrProofExpired
	}
	return first, nil
}

// clusterNonces issues and accepts nonces under a key shared by every node
// once the cluster has one, and under this process's key until then (and
// accepts both, so that nonces handed out meanwhile stay good).
type clusterNonces struct {
	local  *dpop.Nonces
	shared func() sharedOnce

	mu     sync.Mutex
	common atomic.Pointer[dpop.Nonces]
	tried  time.Time
}

func (n *clusterNonces) source() *dpop.Nonces {
	if c := n.common.Load(); c != nil {
		return c
	}
	s := n.shared()
	if s == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.common.Load(); c != nil {
		return c
	}
	if time.Since(n.tried) < 5*time.Second { // not a Redis call per request while it is away
		return nil
	}
	n.tried = time.Now()
	secret, err := s.SharedSecret("dpop-nonce", dpop.MinNonceSecretLength)
	if err != nil {
		return nil
	}
	c, err := dpop.NewNonces(secret, nil)
	if err != nil {
		return nil
	}
	n.common.Store(c)
	return c
}

func (n *clusterNonces) Nonce() string {
	if c := n.source(); c != nil {
		return c.Nonce()
	}
	return n.local.Nonce()
}

func (n *clusterNonces) Check(nonce string) bool {
	if c := n.source(); c != nil && c.Check(nonce) {
		return true
	}
	return n.local.Check(nonce)
}
