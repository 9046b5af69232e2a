package dpop

import (
	"errors"
	"hash/maphash"
	"math/bits"
	"sync"
	"time"
	"unsafe"
)

// ReplayCache remembers the jti of every accepted proof for as long as the
// proof could be accepted, so each proof is used once. A cluster supplies
// one shared by its nodes (SET NX with an expiry); LocalReplayCache is the
// one-node cache.
type ReplayCache interface {
	// Seen records jti until the given time and reports whether it is the
	// first sighting within that time. An error refuses the proof: a
	// cache that cannot answer must not let a replay through.
	Seen(jti string, until time.Time) (firstTime bool, err error)
}

// ErrReplayCacheFull is LocalReplayCache's answer when it has no room for
// a new jti before older ones expire.
var ErrReplayCacheFull = errors.New("dpop: replay cache full")

// DefaultReplayEntries is the local cache's size when none is configured:
// about 2,000 proofs a second over the default 65-second window, in 4 MiB.
const DefaultReplayEntries = 1 << 17

// LocalReplayCache is a fixed-size replay cache in memory. It never evicts
// an entry before its time, so when it is full it refuses proofs rather
// than forget one that could be replayed. Size it as the peak rate of
// proofs times MaxAge + Leeway.
//
// A jti is kept as a 64-bit keyed hash (maphash, a random seed per cache)
// with its expiry: 16 bytes, four to a 64-byte bucket, so that looking at
// a bucket is one cache line. Each hash has two candidate buckets (cuckoo
// hashing): an insert looks at both, and when both are full, moves an
// entry to its other bucket to make room. The table has twice the slots
// of the entries it is sized for. An expired slot is free; nothing sweeps.
// Two jtis with one hash make the second look like a replay: one refused
// request, never an accepted replay, and with 64 bits unheard of.
type LocalReplayCache struct {
	seed      maphash.Seed
	now       func() time.Time
	shardBits uint
	shards    []replayShard
}

const bucketSlots = 4

type replayShard struct {
	mu    sync.Mutex
	slots []replaySlot // buckets of bucketSlots
	mask  uint64       // bucket count - 1
	_     [64 - 8 - 24 - 8]byte
}

type replaySlot struct {
	hash  uint64
	until int64 // Unix nanoseconds; 0 for a slot never used
}

// NewReplayCache returns a cache that holds at least maxEntries live
// entries (DefaultReplayEntries when maxEntries <= 0); now is its clock,
// nil for time.Now.
func NewReplayCache(maxEntries int, now func() time.Time) *LocalReplayCache {
	if maxEntries <= 0 {
		maxEntries = DefaultReplayEntries
	}
	if now == nil {
		now = time.Now
	}
	// At least twice the slots of the entries, a power of two, in up to
	// 64 shards of at least 4096 slots: entries spread over shards
	// unevenly, and a shard must not fill much beyond half while the
	// whole is at half, or an insert could find no room before the cache
	// holds maxEntries.
	slots := 1 << bits.Len(uint(2*maxEntries-1))
	shardBits := uint(6)
	for shardBits > 0 && slots>>shardBits < 4096 {
		shardBits--
	}
	c := &LocalReplayCache{seed: maphash.MakeSeed(), now: now, shardBits: shardBits, shards: make([]replayShard, 1<<shardBits)}
	perShard := max(slots>>shardBits, 4*bucketSlots)
	for i := range c.shards {
		c.shards[i].slots = alignedSlots(perShard)
		c.shards[i].mask = uint64(perShard/bucketSlots - 1)
	}
	return c
}

// alignedSlots allocates n slots starting on a 64-byte boundary, so that
// each bucket is one cache line.
func alignedSlots(n int) []replaySlot {
	s := make([]replaySlot, n+bucketSlots)
	off := int(uintptr(unsafe.Pointer(&s[0]))%64) / int(unsafe.Sizeof(replaySlot{}))
	if off != 0 {
		off = bucketSlots - off
	}
	return s[off : off+n : off+n]
}

// Seen implements ReplayCache. It takes one shard's lock and looks at two
// buckets (more only to make room in a nearly full table); it does not
// allocate.
func (c *LocalReplayCache) Seen(jti string, until time.Time) (bool, error) {
	return c.seenAt(jti, until.UnixNano(), c.now().UnixNano())
}

// seenAt is Seen at a given instant (Unix nanoseconds): Verify passes the
// one it checked the proof's age at, and saves a clock read.
func (c *LocalReplayCache) seenAt(jti string, until, now int64) (bool, error) {
	h := maphash.String(c.seed, jti)
	e := replaySlot{hash: h, until: until}
	s := &c.shards[h>>(64-c.shardBits)&(1<<c.shardBits-1)]
	b1, b2 := s.buckets(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	free1, live1 := s.scan(b1, h, now)
	if live1 < 0 {
		return false, nil
	}
	free2, live2 := free1, live1
	if b2 != b1 {
		if free2, live2 = s.scan(b2, h, now); live2 < 0 {
			return false, nil
		}
	}
	slot := free1
	if slot < 0 || free2 >= 0 && live2 < live1 {
		slot = free2
	}
	if slot < 0 && !s.makeRoom(b1, b2, now) {
		return false, ErrReplayCacheFull
	}
	if slot < 0 {
		// makeRoom freed a slot in b1 or b2.
		if slot = s.free(b1, now); slot < 0 {
			slot = s.free(b2, now)
		}
	}
	s.slots[slot] = e
	return true, nil
}

// buckets returns the two candidate buckets of a hash, from different
// bits of it.
func (s *replayShard) buckets(h uint64) (uint64, uint64) {
	return h & s.mask, (h * 0x9e3779b97f4a7c15 >> 32) & s.mask
}

// scan looks at one bucket: live is -1 when it holds h unexpired, else the
// count of unexpired slots; free is the index of a slot that can be
// reused, or -1.
func (s *replayShard) scan(bucket, h uint64, now int64) (free, live int) {
	free = -1
	base := int(bucket) * bucketSlots
	for i, e := range s.slots[base : base+bucketSlots] {
		if e.until < now { // never used, or expired
			if free < 0 {
				free = base + i
			}
			continue
		}
		if e.hash == h {
			return -1, -1
		}
		live++
	}
	return free, live
}

// free returns a reusable slot of a bucket, or -1.
func (s *replayShard) free(bucket uint64, now int64) int {
	base := int(bucket) * bucketSlots
	for i, e := range s.slots[base : base+bucketSlots] {
		if e.until < now {
			return base + i
		}
	}
	return -1
}

// makeRoom frees a slot in b1 or b2, both full of live entries, by moving
// an entry to its other bucket, or one of that bucket's entries to its
// other bucket first (a cuckoo path of length one or two). Entries move,
// never disappear: it fails rather than evict one.
func (s *replayShard) makeRoom(b1, b2 uint64, now int64) bool {
	for _, b := range [2]uint64{b1, b2} {
		for i := range bucketSlots {
			at := int(b)*bucketSlots + i
			alt := s.other(s.slots[at].hash, b)
			if alt == b {
				continue
			}
			if f := s.free(alt, now); f >= 0 {
				s.slots[f], s.slots[at].until = s.slots[at], 0
				return true
			}
		}
	}
	for _, b := range [2]uint64{b1, b2} {
		for i := range bucketSlots {
			at := int(b)*bucketSlots + i
			alt := s.other(s.slots[at].hash, b)
			if alt == b {
				continue
			}
			for j := range bucketSlots {
				mid := int(alt)*bucketSlots + j
				alt2 := s.other(s.slots[mid].hash, alt)
				if alt2 == alt {
					continue
				}
				if f := s.free(alt2, now); f >= 0 {
					s.slots[f] = s.slots[mid]
					s.slots[mid] = s.slots[at]
					s.slots[at].until = 0
					return true
				}
			}
		}
	}
	return false
}

// other returns the candidate bucket of h that is not b.
func (s *replayShard) other(h, b uint64) uint64 {
	b1, b2 := s.buckets(h)
	if b == b1 {
		return b2
	}
	return b1
}
