package dpop

import (
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// GrowingReplayCache is a LocalReplayCache that can be made larger while
// in use, for a cache that outlives configurations: a reload that asks for
// more room gets it, and the proofs the smaller table remembers stay
// refused. The larger table starts empty; the smaller one is consulted
// beside it until the last entry it held when it was replaced has
// expired, then let go. It never shrinks.
type GrowingReplayCache struct {
	seed maphash.Seed // every table's: a jti is hashed once
	now  func() time.Time
	mu   sync.Mutex // serialises Grow
	cur  atomic.Pointer[replayTables]
	// floor is the latest instant at which a replaced table was let go:
	// an entry it held expired before then, so a proof that expires
	// before floor is refused as expired rather than looked for in the
	// new table alone (SeenAt's instant may be older than floor).
	floor atomic.Int64
}

// raiseFloor makes floor at least now.
func (g *GrowingReplayCache) raiseFloor(now int64) {
	for f := g.floor.Load(); f < now && !g.floor.CompareAndSwap(f, now); f = g.floor.Load() {
	}
}

// replayTables is the table proofs go into and the replaced ones still
// consulted, newest first.
type replayTables struct {
	cache *LocalReplayCache
	old   []*retiredTable
}

type retiredTable struct {
	cache *LocalReplayCache
	until atomic.Int64 // consulted while now <= until
}

// NewGrowingReplayCache returns a cache that holds entries live entries
// (DefaultReplayEntries when entries <= 0); now is its clock, nil for
// time.Now.
func NewGrowingReplayCache(entries int, now func() time.Time) *GrowingReplayCache {
	if now == nil {
		now = time.Now
	}
	g := &GrowingReplayCache{seed: maphash.MakeSeed(), now: now}
	g.cur.Store(&replayTables{cache: newReplayCache(entries, now, g.seed)})
	return g
}

// Entries is the number of live entries the cache holds now.
func (g *GrowingReplayCache) Entries() int { return g.cur.Load().cache.entries }

// Grow makes the cache hold entries live entries, if it holds fewer, and
// reports whether it grew.
func (g *GrowingReplayCache) Grow(entries int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.cur.Load()
	if entries <= t.cache.entries {
		return false
	}
	now := g.now().UnixNano()
	r := &retiredTable{cache: t.cache}
	r.until.Store(math.MaxInt64)
	next := &replayTables{cache: newReplayCache(entries, g.now, g.seed), old: []*retiredTable{r}}
	for _, o := range t.old {
		if o.until.Load() >= now {
			next.old = append(next.old, o)
		} else {
			g.raiseFloor(now)
		}
	}
	g.cur.Store(next)
	// An insert that lands in the replaced table from now on is made
	// again in the new one (SeenAt), so only the entries the replaced
	// table holds at this point need it consulted: until the last of
	// them expires.
	r.until.Store(t.cache.latest(now))
	return true
}

// Seen implements ReplayCache.
func (g *GrowingReplayCache) Seen(jti string, until time.Time) (bool, error) {
	return g.SeenAt(jti, until.UnixNano(), g.now().UnixNano())
}

// SeenAt implements ReplayCacheAt. Without a replaced table still
// consulted, it is LocalReplayCache's insert and two atomic loads; it
// does not allocate.
func (g *GrowingReplayCache) SeenAt(jti string, until, now int64) (bool, error) {
	h := maphash.String(g.seed, jti)
	t := g.cur.Load()
	// The tables this call has put h into, which hold it because of this
	// call and must not refuse it.
	var mine [4]*LocalReplayCache
	n := 0
	for {
		for _, o := range t.old {
			if now <= o.until.Load() && !slices.Contains(mine[:n], o.cache) && o.cache.has(h, now) {
				return false, nil
			}
		}
		first, err := t.cache.seenHash(h, until, now)
		if err != nil || !first {
			return first, err
		}
		next := g.cur.Load()
		if next.cache == t.cache {
			if len(t.old) > 0 {
				g.retire(t, now)
			}
			if f := g.floor.Load(); until < f && f-now <= maxClockLag {
				return false, ErrProofExpired
			}
			return true, nil
		}
		// The cache grew while h went into t's table: a request that
		// looked at that table before h arrived has gone on to the new
		// one, so h must get in there too, and first, to pass.
		if n == len(mine) {
			return false, ErrReplayCacheFull // grown four times meanwhile; fail closed
		}
		mine[n] = t.cache
		n++
		t = next
	}
}

// retire drops the replaced tables once every entry they held has
// expired.
func (g *GrowingReplayCache) retire(t *replayTables, now int64) {
	for _, o := range t.old {
		if now <= o.until.Load() {
			return
		}
	}
	g.raiseFloor(now) // before the tables go
	g.cur.CompareAndSwap(t, &replayTables{cache: t.cache})
}
