package dpop

import (
	"crypto/sha256"
	"encoding/base64"
	"hash/maphash"
	"sync/atomic"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// proofHeader is what a proof's header says. A client signs every proof
// with one key, so its header is the same text on every request; what is
// read from it (the key's point or modulus above all, and the thumbprint)
// is kept in a headerCache once a proof with it has passed, and costs a
// table lookup the next time.
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
// bad proofs cannot push out good clients' entries. It is a fixed table
// of two-slot buckets, each slot one atomic pointer: every request reads
// it and a client's first proof writes it, and neither takes a lock or
// copies anything; a header finding its bucket full takes one slot's place.
type headerCache struct {
	seed  maphash.Seed
	slots [headerEntries]atomic.Pointer[headerEntry]
}

// headerEntries bounds the cache: a handful of kilobytes an entry, with
// the access token its ath memo holds.
const headerEntries = 2048

type headerEntry struct {
	segment string
	h       *proofHeader
}

func newHeaderCache() *headerCache {
	return &headerCache{seed: maphash.MakeSeed()}
}

// bucket returns segment's two slots, and which of them it takes when
// both hold other headers.
func (c *headerCache) bucket(segment string) (slots *[2]atomic.Pointer[headerEntry], evict int) {
	x := maphash.String(c.seed, segment)
	i := x % (headerEntries / 2) * 2
	return (*[2]atomic.Pointer[headerEntry])(c.slots[i : i+2]), int(x>>63) & 1
}

func (c *headerCache) get(segment string) *proofHeader {
	b, _ := c.bucket(segment)
	for i := range b {
		if e := b[i].Load(); e != nil && e.segment == segment {
			return e.h
		}
	}
	return nil
}

func (c *headerCache) put(segment string, h *proofHeader) {
	b, evict := c.bucket(segment)
	for i := range b {
		if e := b[i].Load(); e == nil || e.segment == segment {
			b[i].Store(&headerEntry{segment, h})
			return
		}
	}
	b[evict].Store(&headerEntry{segment, h})
}

// len counts the entries, for tests.
func (c *headerCache) len() int {
	n := 0
	for i := range c.slots {
		if c.slots[i].Load() != nil {
			n++
		}
	}
	return n
}
