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

func (h *Handler) clusterShared() sharedOnce {
	if h.app == nil {
		return nil
	}
	s, _ := h.app.engine().(sharedOnce)
	return s
}

// clusterLink finds the cluster engine for a handler's DPoP checks. A
// handler with `revocation off` and no `detect` takes no app of its own
// (Provision asks for one only to check revocations or keep an audit), yet
// its node is as much part of the cluster as any: it uses the app of the
// running config, which holds the process's one store and engine.
type clusterLink struct {
	h       *Handler
	app     atomic.Pointer[App]
	settled atomic.Bool  // the app found is kept from now on
	first   atomic.Int64 // unix nanoseconds of the first look
	looked  atomic.Int64 // and of the last
}

func (l *clusterLink) shared() sharedOnce {
	if l.h.app != nil {
		return l.h.clusterShared()
	}
	if !l.settled.Load() {
		l.look()
	}
	app := l.app.Load()
	if app == nil {
		return nil
	}
	s, _ := app.engine().(sharedOnce)
	return s
}

// look asks for the running config's app once a second during the
// handler's first minute of requests: its own config's app may start
// after the first requests arrive (the previous config's is current until
// then), and currentApp takes a lock, not to be taken on every request.
// After that minute the app found is kept.
func (l *clusterLink) look() {
	now := time.Now().UnixNano()
	l.first.CompareAndSwap(0, now)
	last := l.looked.Load()
	if now-last < int64(time.Second) || !l.looked.CompareAndSwap(last, now) {
		return
	}
	l.app.Store(currentApp())
	if now-l.first.Load() >= int64(time.Minute) {
		l.settled.Store(true)
	}
}

// clusterReplay spends a proof's jti on this node, then, with a cluster,
// on every node: a proof replayed on another node is refused too. While
// Redis cannot answer, this node's cache alone decides (as requests go on
// from each node's own revocation list), and a warning says so.
type clusterReplay struct {
	local  dpop.ReplayCache
	shared func() sharedOnce
	log    *zap.Logger
	warned atomic.Int64 // unix seconds of the last warning
}

func (c *clusterReplay) Seen(jti string, until time.Time) (bool, error) {
	first, err := c.local.Seen(jti, until)
	if err != nil || !first {
		return first, err
	}
	s := c.shared()
	if s == nil {
		return true, nil
	}
	first, err = s.SeenOnce("dpop:"+jti, until)
	if err != nil {
		if now := time.Now().Unix(); c.warned.Swap(now) < now-60 {
			c.log.Warn("DPoP replay cache: the cluster cannot answer; proofs are checked against this node's cache only", zap.Error(err))
		}
		return true, nil
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
