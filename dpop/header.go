package dpop

import (
	"crypto/sha256"
	"encoding/base64"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// proofHeader is what a proof's header says. A client signs every proof
// with one key, so its header is the same text on every request; what is
// read from it (the key's point or modulus above all, and the thumbprint)
// is kept in a headerCache once a proof with it has passed, and costs a
// map lookup the next time.
type proofHeader struct {
	alg verifier.Algorithm
	jwk jwk
	// pub and thumbprint are filled in by Verify before the header is
	// shared through the cache, and never written after.
	pub        any
	thumbprint string
	// ath remembers the digest of the last access token seen with this
	// key: a client sends one token many times, and hashing it is a large
	// part of what is left once the header is known.
	ath atomic.Pointer[athMemo]
}

type athMemo struct {
	token string
	ath   string // base64url(SHA-256(token)), as a proof's ath claim writes it
}

// athMatches reports whether claim is base64url(SHA-256(token)). The
// encoding is canonical (no padding, the unused bits zero), so the claim
// is compared as text, without decoding it.
func (h *proofHeader) athMatches(token, claim string) bool {
	m := h.ath.Load()
	if m == nil || m.token != token {
		sum := sha256.Sum256(bytesOf(token))
		m = &athMemo{token: token, ath: base64.RawURLEncoding.EncodeToString(sum[:])}
		h.ath.Store(m)
	}
	return claim == m.ath
}

// headerCache maps the base64url text of proof headers to what they say.
// Only headers of proofs that passed every check go in, so a stream of
// bad proofs cannot push out good clients' entries; when a shard is full
// an arbitrary entry makes room.
type headerCache struct {
	seed   maphash.Seed
	shards [headerShards]headerShard
}

const (
	headerShards = 16
	// headerEntries bounds the cache: a handful of kilobytes an entry,
	// with the access token its ath memo holds.
	headerEntries = 2048
)

// A shard's map is never written once published: a put copies it. Every
// request reads the cache and only a client's first proof writes it, so
// readers take no lock, and clients on other cores do not contend for one.
type headerShard struct {
	mu sync.Mutex // serialises puts
	m  atomic.Pointer[map[string]*proofHeader]
}

func newHeaderCache() *headerCache {
	c := &headerCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		m := make(map[string]*proofHeader)
		c.shards[i].m.Store(&m)
	}
	return c
}

func (c *headerCache) shard(segment string) *headerShard {
	return &c.shards[maphash.String(c.seed, segment)%headerShards]
}

func (c *headerCache) get(segment string) *proofHeader {
	return (*c.shard(segment).m.Load())[segment]
}

func (c *headerCache) put(segment string, h *proofHeader) {
	s := c.shard(segment)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.m.Load()
	m := make(map[string]*proofHeader, len(old)+1)
	drop := len(old) >= headerEntries/headerShards
	for k, v := range old {
		if drop {
			drop = false // an arbitrary entry makes room
			continue
		}
		m[k] = v
	}
	m[segment] = h
	s.m.Store(&m)
}

// len counts the entries, for tests.
func (c *headerCache) len() int {
	n := 0
	for i := range c.shards {
		n += len(*c.shards[i].m.Load())
	}
	return n
}
