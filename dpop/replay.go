package dpop

import (
	"errors"
	"hash/maphash"
	"math"
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

// ReplayCacheAt is a ReplayCache that can also answer at an instant the
// caller gives (Unix nanoseconds): Verify passes the one it checked the
// proof's age at, which saves clock reads and, since the cache then judges
// expiry at that same instant, the second age check Seen needs.
type ReplayCacheAt interface {
	ReplayCache
	// SeenAt is Seen with until and now in Unix nanoseconds. An entry
	// whose until is now or later is live.
	SeenAt(jti string, until, now int64) (firstTime bool, err error)
}

// ErrReplayCacheFull is LocalReplayCache's answer when it has no room for
// a new jti before older ones expire.
var ErrReplayCacheFull = errors.New("dpop: replay cache full")

// ErrProofExpired is a ReplayCacheAt's answer when it cannot judge at the
// instant it was given: a shared cache that took long enough to answer
// that the proof's entry may have expired there meanwhile, and a replay
// look like a first sighting. Verify refuses the proof as too old.
var ErrProofExpired = errors.New("dpop: proof expired while the replay cache answered")

// maxClockLag bounds how far behind the latest instant a cache has judged
// at a caller's instant may be and still be read as that later one. More
// is taken for the wall clock set back (or a wrong time corrected), which
// must not refuse every proof until the clock catches up again.
const maxClockLag = int64(10 * time.Second)

// DefaultReplayEntries is the local cache's size when none is configured:
// about 2,000 proofs a second over the default 65-second window, in 4 MiB.
const DefaultReplayEntries = 1 << 17

// ReplayEntryBytes is what one remembered proof costs: a 16-byte slot,
// and the table keeps at least two slots an entry (the power of two at or
// above twice the entries, and at least minShardSlots), so 32 to 64
// bytes for any but the smallest caches.
const ReplayEntryBytes = 2 * int(unsafe.Sizeof(replaySlot{}))

// LocalReplayCache is a fixed-size replay cache in memory. It remembers
// the entries it was made for (a little more when they are spread over
// several shards), never evicts one before its time, and when it holds
// that many it refuses proofs rather than forget one that could be
// replayed. Size it as the peak rate of proofs times MaxAge + Leeway.
//
// A jti is kept as a 64-bit keyed hash (maphash, a random seed per cache)
// with its expiry: 16 bytes, four to a 64-byte bucket, so that looking at
// a bucket is one cache line. Each hash has two candidate buckets (cuckoo
// hashing): an insert goes to the first when it has room, else to the
// second, and when both are full, moves an entry to its other bucket to
// make room. A bit per bucket says whether any entry whose first bucket it
// is sits in its second: while it is clear, which it mostly is, a lookup
// reads one bucket, one cache line from memory rather than two. The table
// has twice the slots of the entries it is sized for, so it never gets
// crowded; a count of slots in use (live or expired, not yet cleared)
// bounds the entries, and reaching it clears the shard's expired slots
// (and the bits of entries gone) once before refusing.
// Two jtis with one hash make the second look like a replay: one refused
// request, never an accepted replay, and with 64 bits unheard of.
type LocalReplayCache struct {
	seed      maphash.Seed
	now       func() time.Time
	entries   int
	shardBits uint
	shards    []replayShard
}

const bucketSlots = 4

type replayShard struct {
	mu    sync.Mutex
	slots []replaySlot // buckets of bucketSlots
	mask  uint64       // bucket count - 1
	used  int          // slots with until != 0: live, or expired and not cleared
	limit int          // the most live entries this shard takes
	// now is the latest instant the shard has judged expiry at. Callers
	// pass instants read before a signature check, so they arrive out of
	// order: a slot freed at a later one must not be missed at an earlier
	// one, so every call judges at the latest.
	now int64
	// over has a bit per bucket, set when an entry whose first bucket
	// it is may sit in its second bucket; cleared by clearExpired.
	over []uint64
	_    [128 - 8 - 24 - 8 - 8 - 8 - 8 - 24]byte
}

type replaySlot struct {
	hash  uint64
	until int64 // Unix nanoseconds; 0 for a free slot
}

// NewReplayCache returns a cache that holds maxEntries live entries
// (DefaultReplayEntries when maxEntries <= 0); now is its clock, nil for
// time.Now.
func NewReplayCache(maxEntries int, now func() time.Time) *LocalReplayCache {
	return newReplayCache(maxEntries, now, maphash.MakeSeed())
}

func newReplayCache(maxEntries int, now func() time.Time, seed maphash.Seed) *LocalReplayCache {
	return newReplayTable(maxEntries, now, seed, minShardSlots)
}

// minShardSlots is the smallest table a shard gets. With only a few
// buckets, an entry's two often coincide and every cuckoo move lands in a
// full one, so a small cache would refuse before it holds its entries; 64
// buckets make that as unlikely as in a large table, for 4 KiB.
const minShardSlots = 64 * bucketSlots

// newReplayTable is newReplayCache with the smallest shard table given:
// tests crowd tiny tables to exercise the moves between buckets. minSlots
// must be a power of two of at least bucketSlots, as the mask assumes.
func newReplayTable(maxEntries int, now func() time.Time, seed maphash.Seed, minSlots int) *LocalReplayCache {
	if maxEntries <= 0 {
		maxEntries = DefaultReplayEntries
	}
	if now == nil {
		now = time.Now
	}
	// At least twice the slots of the entries, a power of two, in up to
	// 64 shards of at least 4096 slots.
	slots := 1 << bits.Len(uint(2*maxEntries-1))
	shardBits := uint(6)
	for shardBits > 0 && slots>>shardBits < 4096 {
		shardBits--
	}
	// Entries spread over shards unevenly: each shard takes its share
	// plus five standard deviations of it, so that no shard refuses
	// before the whole holds maxEntries. One shard takes exactly that.
	shards := 1 << shardBits
	limit := (maxEntries + shards - 1) / shards
	if shards > 1 {
		limit += int(math.Ceil(5 * math.Sqrt(float64(limit))))
	}
	c := &LocalReplayCache{seed: seed, now: now, entries: maxEntries, shardBits: shardBits, shards: make([]replayShard, shards)}
	perShard := max(slots>>shardBits, minSlots)
	for i := range c.shards {
		c.shards[i].slots = alignedSlots(perShard)
		c.shards[i].mask = uint64(perShard/bucketSlots - 1)
		c.shards[i].over = make([]uint64, (perShard/bucketSlots+63)/64)
		c.shards[i].limit = limit
	}
	return c
}

// Entries is the number of live entries the cache was made to hold.
func (c *LocalReplayCache) Entries() int { return c.entries }

// alignedSlots allocates n slots starting on a 64-byte boundary, so that
// each bucket is one cache line. Every page is written once here: the
// operating system hands memory over on first touch, a page fault each,
// which would otherwise fall on the first requests that land there (a
// thousand for the default size) rather than on the config load.
func alignedSlots(n int) []replaySlot {
	s := make([]replaySlot, n+bucketSlots)
	const perPage = 4096 / int(unsafe.Sizeof(replaySlot{}))
	for i := 0; i < len(s); i += perPage {
		s[i].until = 0
	}
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
	return c.SeenAt(jti, until.UnixNano(), c.now().UnixNano())
}

// SeenAt implements ReplayCacheAt.
func (c *LocalReplayCache) SeenAt(jti string, until, now int64) (bool, error) {
	return c.seenHash(maphash.String(c.seed, jti), until, now)
}

func (c *LocalReplayCache) shard(h uint64) *replayShard {
	return &c.shards[h>>(64-c.shardBits)&(1<<c.shardBits-1)]
}

// seenHash is SeenAt for a jti already hashed with the cache's seed.
func (c *LocalReplayCache) seenHash(h uint64, until, now int64) (bool, error) {
	e := replaySlot{hash: h, until: until}
	s := c.shard(h)
	b1, b2 := s.buckets(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if now < s.now && s.now-now <= maxClockLag {
		now = s.now
	} else {
		s.now = now // later, or the clock was set back
	}
	if until < now {
		// Expired at an instant this shard has judged at: its entry may
		// be gone already, and a replay would look like a first sighting.
		return false, ErrProofExpired
	}
	free1, live := s.scan(b1, h, now)
	if live < 0 {
		return false, nil
	}
	// The second bucket only when h may be there, or there is no room
	// in the first.
	slot, second := free1, false
	if b2 != b1 && (free1 < 0 || s.overflowed(b1)) {
		free2, live := s.scan(b2, h, now)
		if live < 0 {
			return false, nil
		}
		if free1 < 0 {
			slot, second = free2, free2 >= 0
		}
	}
	// A slot still holding an expired entry is reused without growing
	// the count; any other insert needs room under the limit.
	if (slot < 0 || s.slots[slot].until == 0) && s.used >= s.limit {
		if s.clearExpired(now); s.used >= s.limit {
			return false, ErrReplayCacheFull
		}
	}
	if slot < 0 && !s.makeRoom(b1, b2, now) {
		return false, ErrReplayCacheFull
	}
	if slot < 0 {
		// makeRoom freed a slot in b1 or b2.
		if slot = s.free(b1, now); slot < 0 {
			slot, second = s.free(b2, now), true
		}
	}
	s.put(slot, e)
	if second {
		s.markOverflow(b1)
	}
	return true, nil
}

// has reports whether the cache holds h unexpired at now.
func (c *LocalReplayCache) has(h uint64, now int64) bool {
	s := c.shard(h)
	b1, b2 := s.buckets(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, live := s.scan(b1, h, now); live < 0 {
		return true
	}
	if b2 == b1 || !s.overflowed(b1) {
		return false
	}
	_, live := s.scan(b2, h, now)
	return live < 0
}

// latest returns the largest until of the entries live at now, or now.
func (c *LocalReplayCache) latest(now int64) int64 {
	last := now
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, e := range s.slots {
			last = max(last, e.until)
		}
		s.mu.Unlock()
	}
	return last
}

// put writes slot i, keeping the count of slots in use.
func (s *replayShard) put(i int, e replaySlot) {
	switch was := s.slots[i].until; {
	case was == 0 && e.until != 0:
		s.used++
	case was != 0 && e.until == 0:
		s.used--
	}
	s.slots[i] = e
}

// clearExpired frees every expired slot of the shard. It runs only when
// the count reaches the limit: its cost, a pass over the shard, is paid
// once per many inserts unless the cache is nearly full of live entries,
// and then it is small beside the signature check each proof has passed.
func (s *replayShard) clearExpired(now int64) {
	clear(s.over)
	for i, e := range s.slots {
		switch {
		case e.until == 0:
		case e.until < now:
			s.slots[i].until = 0
			s.used--
		default:
			s.placed(e.hash, uint64(i/bucketSlots))
		}
	}
}

func (s *replayShard) overflowed(b uint64) bool { return s.over[b/64]&(1<<(b%64)) != 0 }

func (s *replayShard) markOverflow(b uint64) { s.over[b/64] |= 1 << (b % 64) }

// placed keeps the overflow bits true of an entry of hash h put in bucket
// b: when b is not its first bucket, the first is marked.
func (s *replayShard) placed(h, b uint64) {
	if first := h & s.mask; first != b {
		s.markOverflow(first)
	}
}

// buckets returns the two candidate buckets of a hash, from different
// bits of it.
func (s *replayShard) buckets(h uint64) (uint64, uint64) {
	return h & s.mask, (h * 0x9e3779b97f4a7c15 >> 32) & s.mask
}

// scan looks at one bucket: live is -1 when it holds h unexpired, else the
// count of unexpired slots; free is the index of a slot that can be
// reused (one holding an expired entry rather than an empty one, which
// keeps the count of slots in use down), or -1.
func (s *replayShard) scan(bucket, h uint64, now int64) (free, live int) {
	free = -1
	base := int(bucket) * bucketSlots
	for i, e := range s.slots[base : base+bucketSlots] {
		if e.until < now { // empty, or expired
			if free < 0 || e.until != 0 {
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
				s.put(f, s.slots[at])
				s.placed(s.slots[at].hash, alt)
				s.put(at, replaySlot{})
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
					s.put(f, s.slots[mid])
					s.placed(s.slots[mid].hash, alt2)
					s.put(mid, s.slots[at])
					s.placed(s.slots[at].hash, alt)
					s.put(at, replaySlot{})
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
