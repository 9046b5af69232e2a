package dpop

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestReplayCache(t *testing.T) {
	clock := newClock(testNow)
	c := NewReplayCache(100, clock.Now)
	for _, step := range []struct {
		jti       string
		at, until time.Duration // from testNow
		first     bool
	}{
		{"a", 0, 10 * time.Second, true},
		{"a", 0, 10 * time.Second, false},
		{"b", 0, 10 * time.Second, true},
		{"a", 10 * time.Second, 20 * time.Second, false}, // until is inclusive
		{"a", 10*time.Second + 1, 20 * time.Second, true},
		{"a", 10*time.Second + 2, 20 * time.Second, false},
		{"b", 20 * time.Second, 30 * time.Second, true},
		{"a", 20 * time.Second, 30 * time.Second, false},
	} {
		clock.Set(testNow.Add(step.at))
		first, err := c.Seen(step.jti, testNow.Add(step.until))
		if err != nil || first != step.first {
			t.Fatalf("%s at +%v: first %v, %v; want %v", step.jti, step.at, first, err, step.first)
		}
	}
}

// TestReplayCacheFull: a full cache refuses new jtis, never forgets a live
// one, and has room again once entries expire.
func TestReplayCacheFull(t *testing.T) {
	clock := newClock(testNow)
	const entries = 1000
	c := NewReplayCache(entries, clock.Now)
	until := testNow.Add(time.Minute)
	var stored []string
	full := 0
	for i := 0; i < 4*entries; i++ {
		jti := "jti-" + strconv.Itoa(i)
		first, err := c.Seen(jti, until)
		switch {
		case errors.Is(err, ErrReplayCacheFull):
			full++
		case err != nil || !first:
			t.Fatalf("%s: %v, %v", jti, first, err)
		default:
			stored = append(stored, jti)
		}
	}
	if len(stored) < entries {
		t.Fatalf("only %d of at least %d entries fit", len(stored), entries)
	}
	if full == 0 {
		t.Fatal("never full")
	}
	for _, jti := range stored {
		if first, err := c.Seen(jti, until); first || err != nil {
			t.Fatalf("%s forgotten in a full cache: %v, %v", jti, first, err)
		}
	}
	clock.Set(until.Add(time.Nanosecond))
	if first, err := c.Seen("new", until.Add(time.Minute)); !first || err != nil {
		t.Fatalf("after expiry: %v, %v", first, err)
	}
}

// TestReplayCacheSizes: a cache holds at least the entries it was made for,
// at any size, whatever its hash seed.
func TestReplayCacheSizes(t *testing.T) {
	sizes := []int{1, 7, 100, 1000, 1024, 3000, 5000, 1 << 16, 100000}
	rounds := 30
	if testing.Short() {
		rounds = 3
	}
	for _, n := range sizes {
		for round := range rounds {
			if n > 5000 && round > 0 {
				break // slow, and a larger cache has less variance
			}
			c := NewReplayCache(n, fixedNow)
			for i := 0; i < n; i++ {
				if first, err := c.Seen(strconv.Itoa(i), testNow.Add(time.Minute)); !first || err != nil {
					t.Fatalf("size %d, round %d: entry %d: %v, %v", n, round, i, first, err)
				}
			}
		}
	}
}

// TestReplayCacheConcurrent: of goroutines racing with one jti, exactly one
// sees it first; run with -race.
func TestReplayCacheConcurrent(t *testing.T) {
	c := NewReplayCache(1<<12, fixedNow)
	until := testNow.Add(time.Minute)
	for round := 0; round < 200; round++ {
		jti := "r" + strconv.Itoa(round)
		var firsts atomic.Int32
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if first, err := c.Seen(jti, until); err != nil {
					t.Error(err)
				} else if first {
					firsts.Add(1)
				}
			}()
		}
		wg.Wait()
		if firsts.Load() != 1 {
			t.Fatalf("%s: %d first sightings", jti, firsts.Load())
		}
	}
}

func TestReplayCacheAllocations(t *testing.T) {
	c := NewReplayCache(1<<12, fixedNow)
	until := testNow.Add(time.Minute)
	jtis := make([]string, 100)
	for i := range jtis {
		jtis[i] = "0b9e4c6a-7d55-4f0e-9a3b-" + strconv.Itoa(100000+i)
	}
	i := 0
	if allocs := testing.AllocsPerRun(99, func() { c.Seen(jtis[i], until); i++ }); allocs != 0 {
		t.Fatalf("%v allocations per insert", allocs)
	}
}

// BenchmarkReplayCacheInsert inserts distinct UUID-sized jtis as Verify
// does (SeenAt, with the clock reading Verify already has), at a steady
// state: time moves 1ms per insert and entries live 65s, so 65,000 are
// live in a cache sized for 100,000 (4 MiB), slots reused as they expire.
// In parallel, each goroutine keeps its own time, a millisecond per
// insert of its own, so that no shared clock is the bottleneck measured.
// local is a LocalReplayCache; growing the GrowingReplayCache the handler
// uses; grown the same after a Grow, while the replaced table is still
// consulted.
func BenchmarkReplayCacheInsert(b *testing.B) {
	const n = 1 << 18
	jtis := make([]string, n)
	for i := range jtis {
		jtis[i] = "0b9e4c6a-7d55-4f0e-9a3b-" + strconv.Itoa(1000000000000+i)
	}
	const live = int64(65 * time.Second)
	caches := []struct {
		name string
		new  func() ReplayCacheAt
	}{
		{"local", func() ReplayCacheAt { return NewReplayCache(100000, nil) }},
		{"growing", func() ReplayCacheAt { return NewGrowingReplayCache(100000, nil) }},
		{"grown", func() ReplayCacheAt {
			g := NewGrowingReplayCache(50000, fixedNow)
			// An entry that keeps the replaced table consulted throughout.
			g.SeenAt("long-lived", testNow.Add(1000*time.Hour).UnixNano(), testNow.UnixNano())
			g.Grow(100000)
			return g
		}},
	}
	for _, cache := range caches {
		b.Run(cache.name+"/serial", func(b *testing.B) {
			c := cache.new()
			now := testNow.UnixNano()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				now += int64(time.Millisecond)
				if first, err := c.SeenAt(jtis[i%n], now+live, now); err != nil || !first {
					b.Fatalf("insert %d: %v, %v", i, first, err)
				}
				i++
			}
		})
		b.Run(cache.name+"/parallel", func(b *testing.B) {
			c := cache.new()
			// Inserts taken so far, by blocks: jti i is inserted at
			// testNow + i ms, so live entries stay at 65,000 and a jti
			// comes back only after 262s, long expired. A goroutine takes
			// a block of 64 at a time, so the shared counter is touched
			// once per 64 inserts, and no goroutine's clock runs far
			// ahead of the others' entries.
			var taken atomic.Int64
			const block = 64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var i, end int64
				for pb.Next() {
					if i == end {
						end = taken.Add(block)
						i = end - block
					}
					now := testNow.UnixNano() + i*int64(time.Millisecond)
					if first, err := c.SeenAt(jtis[i%n], now+live, now); err != nil || !first {
						b.Errorf("insert %d: %v, %v", i, first, err)
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkReplayCacheInsertRealClock is Seen as a caller other than
// Verify makes it, reading time.Now itself, into a cache of the default
// size filled from empty to the entries it is sized for (then a new one,
// outside the timing).
func BenchmarkReplayCacheInsertRealClock(b *testing.B) {
	const n = DefaultReplayEntries
	jtis := make([]string, n)
	for i := range jtis {
		jtis[i] = "0b9e4c6a-7d55-4f0e-9a3b-" + strconv.Itoa(1000000000000+i)
	}
	c := NewReplayCache(n, nil)
	until := time.Now().Add(time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n {
			b.StopTimer()
			c, i = NewReplayCache(n, nil), 0
			b.StartTimer()
		}
		if first, err := c.Seen(jtis[i], until); err != nil || !first {
			b.Fatalf("insert %d: %v, %v", i, first, err)
		}
		i++
	}
}
