package verifier

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Cache bounds. A cached token costs about twice its length plus its
// claim list, so the byte bound is what holds for large tokens.
const (
	DefaultCacheEntries = 10000
	DefaultCacheBytes   = 16 << 20
	cacheShards         = 16
)

// entryOverhead is what a cached token costs besides its text: the map
// slot and the parsed struct that holds the Token and its first claims.
const entryOverhead = 64 + int(unsafe.Sizeof(parsed{}))

// cache holds verified tokens by their exact text. Only tokens that passed
// every check are put in; a lookup still re-checks the time-based claims.
//
// A token is admitted on its second verification, not its first: the
// doorkeeper remembers the hashes of recently verified tokens, so a stream
// of tokens each sent once (scanners, one-shot clients, a flood) costs no
// cache memory or evictions, while a client that reuses its token pays one
// extra verification. When a shard is full it drops an arbitrary entry
// (Go's map iteration order is random), preferring one that has expired.
type cache struct {
	seed maphash.Seed
	door []atomic.Uint64
	// gen counts flushes. A verification that began before a flush (with
	// keys that may since have been removed) must not insert its token
	// after it: put compares the generation Verify read first.
	gen    atomic.Uint64
	shards [cacheShards]cacheShard
}

// doorSlots is the doorkeeper's size: a token sent again within about this
// many other first sights is admitted. 512 KiB.
const doorSlots = 1 << 16

type cacheShard struct {
	mu         sync.RWMutex
	m          map[string]*Token
	bytes      int
	maxEntries int
	maxBytes   int
}

func newCache(entries, bytes int) *cache {
	if entries == 0 {
		entries = DefaultCacheEntries
	}
	if bytes <= 0 {
		bytes = DefaultCacheBytes
	}
	c := &cache{seed: maphash.MakeSeed(), door: make([]atomic.Uint64, doorSlots)}
	for i := range c.shards {
		s := &c.shards[i]
		s.m = make(map[string]*Token)
		s.maxEntries = max(1, entries/cacheShards)
		s.maxBytes = max(1, bytes/cacheShards)
	}
	return c
}

// hash is computed once per verification and shared by the lookup, the
// doorkeeper and the insert: a token is a few hundred bytes.
func (c *cache) hash(token string) uint64 { return maphash.String(c.seed, token) }

func (c *cache) shard(h uint64) *cacheShard { return &c.shards[h%cacheShards] }

// seenBefore reports whether the token was verified recently, and
// remembers it. Collisions only make a token wait one more sight.
func (c *cache) seenBefore(h uint64) bool {
	h |= 1                            // 0 marks an empty slot
	slot := &c.door[(h>>4)%doorSlots] // the low bits pick the shard
	if slot.Load() == h {
		return true
	}
	slot.Store(h)
	return false
}

func (c *cache) get(token string, h uint64) *Token {
	s := c.shard(h)
	s.mu.RLock()
	t := s.m[token]
	s.mu.RUnlock()
	return t
}

func entrySize(token string, t *Token) int {
	// the token text is the key; its decoded form backs the claims
	extra := max(0, len(t.claims)-len(parsed{}.memberSpace))
	return 2*len(token) + entryOverhead + extra*int(unsafe.Sizeof(member{}))
}

func (c *cache) put(token string, h, gen uint64, t *Token, now float64) {
	if !c.seenBefore(h) {
		return
	}
	size := entrySize(token, t)
	s := c.shard(h)
	if size > s.maxBytes {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gen.Load() != gen { // clear runs under every shard's lock
		return
	}
	if _, ok := s.m[token]; ok {
		return
	}
	for len(s.m) > 0 && (len(s.m) >= s.maxEntries || s.bytes+size > s.maxBytes) {
		s.evictOne(now)
	}
	// A clone, so that the key does not pin the whole header or cookie
	// line the token was cut from.
	s.m[strings.Clone(token)] = t
	s.bytes += size
}

// evictOne drops an expired entry among the first few the map yields, or
// else the first one.
func (s *cacheShard) evictOne(now float64) {
	var victim string
	n := 0
	for k, t := range s.m {
		if n == 0 || t.exp <= now {
			victim = k
			if t.exp <= now {
				break
			}
		}
		if n++; n == 4 {
			break
		}
	}
	s.deleteLocked(victim)
}

func (s *cacheShard) deleteLocked(token string) {
	if t, ok := s.m[token]; ok {
		s.bytes -= entrySize(token, t)
		delete(s.m, token)
	}
}

func (c *cache) remove(token string) {
	s := c.shard(c.hash(token))
	s.mu.Lock()
	s.deleteLocked(token)
	s.mu.Unlock()
}

// sweep drops every entry whose exp is at or before cutoff.
func (c *cache) sweep(cutoff float64) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, t := range s.m {
			if t.exp <= cutoff {
				s.deleteLocked(k)
			}
		}
		s.mu.Unlock()
	}
}

func (c *cache) clear() {
	for i := range c.shards {
		c.shards[i].mu.Lock()
	}
	c.gen.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		clear(s.m)
		s.bytes = 0
		s.mu.Unlock()
	}
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
