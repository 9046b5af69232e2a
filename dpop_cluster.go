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

// clusterShared is appShared of the handler's own app.
func (h *Handler) clusterShared() sharedOnce { return appShared(h.app) }

// appShared is what app's cluster engine offers DPoP, nil without an app
// or a cluster.
func appShared(app *App) sharedOnce {
	if app == nil {
		return nil
	}
	s, _ := app.engine().(sharedOnce)
	return s
}

// clusterLink finds the cluster engine for a handler's DPoP checks. A
// handler with `revocation off` and no `detect` takes no app of its own
// (Provision asks for one only to check revocations or keep an audit), yet
// its node is as much part of the cluster as any: it uses the app of the
// running config, which holds the process's one store and engine.
type clusterLink struct {
	h     *Handler
	app   atomic.Pointer[App]
	calls atomic.Uint64
}

func (l *clusterLink) shared() sharedOnce {
	if l.h.app != nil {
		return l.h.clusterShared()
	}
	// currentApp takes a lock: asked on the 1st, 2nd, 4th... 512th call,
	// then every 1024th, so that the handler finds its config's app soon
	// after it starts (the first requests may come before it does, or see
	// the previous config's), and notices a later change, without a lock
	// or a clock reading on every request. While none has been found it
	// is asked on every call: a handler that served its first 512
	// requests before the app started would otherwise spend proofs on
	// this node alone, silently, until the 1024th.
	if n := l.calls.Add(1); n&(n-1) == 0 && n <= 512 || n%1024 == 0 || l.app.Load() == nil {
		l.app.Store(currentApp())
	}
	return appShared(l.app.Load())
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
