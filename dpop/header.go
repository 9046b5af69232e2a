package dpop

import (
	"crypto/sha256"
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
	sum   [sha256.Size]byte
}

// athMatches reports whether claim is base64url(SHA-256(token)).
func (h *proofHeader) athMatches(token, claim string) bool {
	var want [sha256.Size]byte
	if !decodeExact(want[:], claim) {
		return false
	}
	if m := h.ath.Load(); m != nil && m.token == token {
		return m.sum == want
	}
	m := &athMemo{token: token, sum: sha256.Sum256(bytesOf(token))}
	h.ath.Store(m)
	return m.sum == want
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

type headerShard struct {
	mu sync.RWMutex
	m  map[string]*proofHeader
}

func newHeaderCache() *headerCache {
	c := &headerCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*proofHeader)
	}
	return c
}

func (c *headerCache) shard(segment string) *headerShard {
	return &c.shards[maphash.String(c.seed, segment)%headerShards]
}

func (c *headerCache) get(segment string) *proofHeader {
	s := c.shard(segment)
	s.mu.RLock()
	h := s.m[segment]
	s.mu.RUnlock()
	return h
}

func (c *headerCache) put(segment string, h *proofHeader) {
	s := c.shard(segment)
	s.mu.Lock()
	if len(s.m) >= headerEntries/headerShards {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[segment] = h
	s.mu.Unlock()
}

// len counts the entries, for tests.
func (c *headerCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
