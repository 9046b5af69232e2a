package dpop

import (
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReplayCacheLimit: a cache in one shard remembers exactly the entries
// it was made for: the next is refused while they live, and expired ones
// make room (cleared when the count reaches the limit).
func TestReplayCacheLimit(t *testing.T) {
	clock := newClock(testNow)
	c := NewReplayCache(64, clock.Now)
	until := testNow.Add(time.Minute)
	for i := range 64 {
		if first, err := c.Seen("a"+strconv.Itoa(i), until); !first || err != nil {
			t.Fatalf("entry %d: %v, %v", i, first, err)
		}
	}
	if _, err := c.Seen("a64", until); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("entry 65: %v, want full", err)
	}
	// A replay is still a replay, full or not.
	if first, err := c.Seen("a3", until); first || err != nil {
		t.Fatalf("replay into a full cache: %v, %v", first, err)
	}
	// Once they expire, 64 more fit, and again no more.
	clock.Set(until.Add(time.Nanosecond))
	until = until.Add(time.Minute)
	for i := range 64 {
		if first, err := c.Seen("b"+strconv.Itoa(i), until); !first || err != nil {
			t.Fatalf("after expiry, entry %d: %v, %v", i, first, err)
		}
	}
	if _, err := c.Seen("b64", until); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("after expiry, entry 65: %v, want full", err)
	}
	if used := c.shards[0].used; used != 64 {
		t.Fatalf("%d slots counted in use, want 64", used)
	}
}

// TestReplayCacheLimitShards: a cache over several shards holds at least
// its entries (TestReplayCacheSizes) and not much more.
func TestReplayCacheLimitShards(t *testing.T) {
	for _, n := range []int{3000, 1 << 16, DefaultReplayEntries} {
		c := NewReplayCache(n, fixedNow)
		if len(c.shards) < 2 {
			t.Fatalf("%d entries in one shard", n)
		}
		held := 0
		for i := 0; ; i++ {
			first, err := c.Seen(strconv.Itoa(i), testNow.Add(time.Minute))
			if errors.Is(err, ErrReplayCacheFull) {
				break
			}
			if !first || err != nil {
				t.Fatalf("%d: entry %d: %v, %v", n, i, first, err)
			}
			held++
		}
		if held < n || held > n+n/5 {
			t.Errorf("a cache for %d entries took %d before refusing one", n, held)
		}
	}
}

// TestGrowingReplayCache: after Grow, proofs the smaller table remembers
// stay refused, the larger table takes more, and the smaller one is let
// go once its entries have expired.
func TestGrowingReplayCache(t *testing.T) {
	clock := newClock(testNow)
	g := NewGrowingReplayCache(64, clock.Now)
	until := testNow.Add(time.Minute)
	for i := range 64 {
		if first, err := g.Seen("a"+strconv.Itoa(i), until); !first || err != nil {
			t.Fatalf("entry %d: %v, %v", i, first, err)
		}
	}
	if _, err := g.Seen("a64", until); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("entry 65: %v, want full", err)
	}
	if g.Grow(32) || g.Grow(64) || g.Entries() != 64 {
		t.Fatal("shrank, or grew to the size it had")
	}
	if !g.Grow(1000) || g.Entries() != 1000 {
		t.Fatal("did not grow")
	}
	clock.Add(30 * time.Second)
	for i := range 64 {
		if first, err := g.Seen("a"+strconv.Itoa(i), until); first || err != nil {
			t.Fatalf("replay of entry %d after growing: %v, %v", i, first, err)
		}
	}
	for i := 64; i < 1000; i++ {
		if first, err := g.Seen("a"+strconv.Itoa(i), until.Add(30*time.Second)); !first || err != nil {
			t.Fatalf("entry %d after growing: %v, %v", i, first, err)
		}
	}
	// Grown twice: both smaller tables are consulted.
	if !g.Grow(2000) {
		t.Fatal("did not grow again")
	}
	for _, jti := range []string{"a0", "a63", "a64", "a999"} {
		if first, err := g.Seen(jti, until); first || err != nil {
			t.Fatalf("replay of %s after growing twice: %v, %v", jti, first, err)
		}
	}
	if n := len(g.cur.Load().old); n != 2 {
		t.Fatalf("%d replaced tables consulted, want 2", n)
	}
	// The first table's entries expire at until, the second's 30s later;
	// each is let go after its own.
	clock.Set(until.Add(time.Nanosecond))
	if first, err := g.Seen("fresh-1", until.Add(time.Minute)); !first || err != nil {
		t.Fatal(first, err)
	}
	if first, err := g.Seen("a999", until.Add(time.Minute)); first || err != nil {
		t.Fatalf("an entry of the second table, live: %v, %v", first, err)
	}
	clock.Set(until.Add(30*time.Second + time.Nanosecond))
	if first, err := g.Seen("fresh-2", until.Add(time.Minute)); !first || err != nil {
		t.Fatal(first, err)
	}
	if n := len(g.cur.Load().old); n != 0 {
		t.Fatalf("%d replaced tables kept after their entries expired", n)
	}
	if first, err := g.Seen("a999", until.Add(time.Minute)); !first || err != nil {
		t.Fatalf("an expired jti: %v, %v", first, err)
	}
}

// TestGrowingReplayCacheRace: goroutines send the same jtis while the
// cache grows under them, again and again: no jti is first twice. Run
// with -race; without SeenAt's second insert it fails most runs.
func TestGrowingReplayCacheRace(t *testing.T) {
	until := testNow.Add(time.Minute).UnixNano()
	now := testNow.UnixNano()
	const jtis, senders = 4000, 4
	rounds := 40
	if testing.Short() {
		rounds = 5
	}
	for round := range rounds {
		g := NewGrowingReplayCache(jtis, fixedNow)
		var firsts [jtis]atomic.Int32
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jtis {
					// Each sender goes through the jtis from another
					// start, so that sends of one jti meet at different
					// moments of the growing.
					j := (i + s*jtis/senders) % jtis
					first, err := g.SeenAt("j"+strconv.Itoa(j), until, now)
					if err != nil && !errors.Is(err, ErrReplayCacheFull) { // full: grown four times under one call
						t.Error(err)
						return
					}
					if first {
						firsts[j].Add(1)
					}
				}
			}()
		}
		go func() {
			wg.Wait()
			close(stop)
		}()
		// At most 32 grows a round: every grow adds a table to consult.
		for size := jtis + 1; size <= jtis+32; size++ {
			select {
			case <-stop:
			default:
				g.Grow(size)
				runtime.Gosched()
				continue
			}
			break
		}
		<-stop
		for j := range firsts {
			if n := firsts[j].Load(); n > 1 {
				t.Fatalf("round %d: j%d first %d times", round, j, n)
			}
		}
	}
}

func TestGrowingReplayCacheAllocations(t *testing.T) {
	clock := newClock(testNow)
	g := NewGrowingReplayCache(1<<12, clock.Now)
	until := testNow.Add(time.Minute).UnixNano()
	now := testNow.UnixNano()
	jtis := make([]string, 200)
	for i := range jtis {
		jtis[i] = "0b9e4c6a-7d55-4f0e-9a3b-" + strconv.Itoa(100000+i)
	}
	i := 0
	if allocs := testing.AllocsPerRun(99, func() { g.SeenAt(jtis[i], until, now); i++ }); allocs != 0 {
		t.Fatalf("%v allocations per insert", allocs)
	}
	g.Grow(1 << 13) // now with a replaced table to consult
	if allocs := testing.AllocsPerRun(99, func() { g.SeenAt(jtis[i], until, now); i++ }); allocs != 0 {
		t.Fatalf("%v allocations per insert beside a replaced table", allocs)
	}
}

// TestReplayCacheModel drives small caches (one shard and several, so
// that buckets fill, entries move between their two buckets and expired
// slots are cleared) with random jtis, expiries and clock steps, and
// holds every answer to a plain map of what is live: a live jti is never
// taken for new, an expired or unknown one never for a replay, and the
// cache refuses only when it holds its entries' worth.
func TestReplayCacheModel(t *testing.T) {
	rounds := 20000
	if testing.Short() {
		rounds = 2000
	}
	for _, entries := range []int{8, 64, 3000, -8, -64, -512} {
		for seed := range int64(3) {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(entries)))
			crowded := entries < 0
			if crowded {
				entries = -entries
			}
			var c *LocalReplayCache
			if !crowded {
				c = NewReplayCache(entries, fixedNow)
			} else {
				c = newReplayTable(entries, fixedNow, maphash.MakeSeed(), 4*bucketSlots)
				// No limit but the table's slots: buckets fill, and
				// entries move one and two steps to make room.
				for i := range c.shards {
					c.shards[i].limit = len(c.shards[i].slots)
				}
			}
			live := map[string]int64{}
			now := testNow.UnixNano()
			full := 0
			for i := range rounds * entries / 64 {
				if rng.IntN(8) == 0 {
					now += rng.Int64N(int64(2 * time.Second))
				}
				jti := "j" + strconv.Itoa(rng.IntN(4*entries))
				until := now + rng.Int64N(int64(10*time.Second))
				first, err := c.SeenAt(jti, until, now)
				wasLive := live[jti] >= now
				switch {
				case errors.Is(err, ErrReplayCacheFull):
					n := 0
					for _, u := range live {
						if u >= now {
							n++
						}
					}
					if len(c.shards) == 1 && n < entries && !crowded {
						t.Fatalf("entries %d seed %d step %d: full with %d live", entries, seed, i, n)
					}
					full++
				case err != nil:
					t.Fatalf("entries %d seed %d step %d: %v", entries, seed, i, err)
				case first && wasLive:
					t.Fatalf("entries %d seed %d step %d: %s, live until %d, taken for new at %d", entries, seed, i, jti, live[jti], now)
				case !first && !wasLive:
					t.Fatalf("entries %d seed %d step %d: %s taken for a replay", entries, seed, i, jti)
				case first:
					live[jti] = until
				}
				if crowded {
					checkOverflowBits(t, c)
				}
			}
			if full == 0 && entries < 100 && !crowded {
				t.Errorf("entries %d seed %d: never full", entries, seed)
			}
			if crowded {
				entries = -entries
			}
		}
	}
}

// checkOverflowBits fails unless every entry away from its first bucket
// has that bucket's overflow bit set, which lookups rely on.
func checkOverflowBits(t *testing.T, c *LocalReplayCache) {
	t.Helper()
	for i := range c.shards {
		s := &c.shards[i]
		for j, e := range s.slots {
			if e.until == 0 {
				continue
			}
			if first := e.hash & s.mask; first != uint64(j/bucketSlots) && !s.overflowed(first) {
				t.Fatalf("an entry in bucket %d, its first %d unmarked", j/bucketSlots, first)
			}
		}
	}
}
