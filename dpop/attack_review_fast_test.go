package dpop

import (
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// Since 4547868 Verify reads the clock once, before the signature check,
// and the replay cache (a ReplayCacheAt) judges expiry at that instant.
// A concurrent request that read the clock later may meanwhile have
// reused or cleared the slot of an entry that is expired at its instant
// but not at the stale one: the replay then finds nothing and is taken
// for a first sighting. The signature check (and any scheduling delay
// under load) is the window; an attacker replays a captured proof just
// before it ages out.

// staleNowVerifier returns a Verifier on cache whose signature check runs
// during, a hook standing for a concurrent request.
func staleNowVerifier(t *testing.T, cache ReplayCache, clock *fakeClock, during *func()) *Verifier {
	v := newVerifier(t, Config{Replay: cache, Now: clock.Now})
	check := v.checkSig
	v.checkSig = func(alg verifier.Algorithm, input string, sig []byte, pub any) bool {
		if f := *during; f != nil {
			*during = nil
			f()
		}
		return check(alg, input, sig, pub)
	}
	return v
}

// TestAttackReplayStaleNowSlotReused: the replay's entry is overwritten by
// a concurrent insert at a later instant while the replay's signature is
// checked.
func TestAttackReplayStaleNowSlotReused(t *testing.T) {
	k := keys()
	clock := newClock(testNow)
	g := NewGrowingReplayCache(8, clock.Now) // one shard of 4 buckets
	var during func()
	v := staleNowVerifier(t, g, clock, &during)
	req := testRequest(jkt(t, k.ec256))
	c := claims()
	proof := joseProof(t, jose.ES256, k.ec256, c)
	if _, err := v.Verify(proof, req); err != nil {
		t.Fatalf("first use: %v", err)
	}
	until := testNow.Add(DefaultMaxAge).UnixNano()

	// A jti whose first bucket is the captured proof's: an insert with it,
	// once that entry has expired, reuses its slot.
	tab := g.cur.Load().cache
	s := tab.shard(maphash.String(g.seed, c["jti"].(string)))
	eb, _ := s.buckets(maphash.String(g.seed, c["jti"].(string)))
	other := ""
	for i := 0; other == ""; i++ {
		j := "other-" + strconv.Itoa(i)
		h := maphash.String(g.seed, j)
		if b1, _ := s.buckets(h); tab.shard(h) == s && b1 == eb {
			other = j
		}
	}

	// The replay reads the clock 1ms before the proof ages out; while its
	// signature is checked, a request at 1ms after spends another jti.
	clock.Set(time.Unix(0, until-int64(time.Millisecond)))
	during = func() {
		later := until + int64(time.Millisecond)
		if first, err := g.SeenAt(other, later+int64(time.Minute), later); !first || err != nil {
			t.Fatalf("concurrent insert: %v, %v", first, err)
		}
	}
	if _, err := v.Verify(proof, req); err == nil {
		t.Fatal("replay accepted: its entry was reused by a request with a later clock")
	}
}

// TestAttackReplayStaleNowRetired: after a reload grew the cache, the
// table holding the captured proof's entry is retired by a request at a
// later instant while the replay (with an earlier one) is checked.
func TestAttackReplayStaleNowRetired(t *testing.T) {
	k := keys()
	clock := newClock(testNow)
	g := NewGrowingReplayCache(64, clock.Now)
	var during func()
	v := staleNowVerifier(t, g, clock, &during)
	req := testRequest(jkt(t, k.ec256))
	proof := joseProof(t, jose.ES256, k.ec256, claims())
	if _, err := v.Verify(proof, req); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if !g.Grow(1000) {
		t.Fatal("did not grow")
	}
	until := testNow.Add(DefaultMaxAge).UnixNano()
	clock.Set(time.Unix(0, until-int64(time.Millisecond)))
	during = func() {
		later := until + int64(time.Millisecond)
		if first, err := g.SeenAt("someone-else", later+int64(time.Minute), later); !first || err != nil {
			t.Fatalf("concurrent insert: %v, %v", first, err)
		}
		if len(g.cur.Load().old) != 0 {
			t.Fatal("the replaced table was not retired")
		}
	}
	if _, err := v.Verify(proof, req); err == nil {
		t.Fatal("replay accepted: the table holding it was retired by a request with a later clock")
	}
}

// TestAttackConcurrentIdenticalProofs: of many identical proofs at once,
// one passes, whether the header is cached yet or not; proofs of other
// keys at the same time never take each other's header (run with -race).
func TestAttackConcurrentIdenticalProofs(t *testing.T) {
	k := keys()
	v := newVerifier(t, Config{})
	reqA, reqB := testRequest(jkt(t, k.ec256)), testRequest(jkt(t, k.other))
	for round := range 3 {
		a := joseProof(t, jose.ES256, k.ec256, claims())
		b := joseProof(t, jose.ES256, k.other, claims())
		var wg sync.WaitGroup
		var passed, mixed atomic.Int32
		for i := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p, req, otherReq := a, reqA, reqB
				if i%2 == 1 {
					p, req, otherReq = b, reqB, reqA
				}
				if _, err := v.Verify(p, req); err == nil {
					passed.Add(1)
				}
				if _, err := v.Verify(p, otherReq); err == nil {
					mixed.Add(1)
				}
			}()
		}
		wg.Wait()
		if passed.Load() != 2 || mixed.Load() != 0 {
			t.Fatalf("round %d: %d passed (want 2, one a key), %d with the other key's token", round, passed.Load(), mixed.Load())
		}
	}
}

// TestReplayCacheClockSetBack: the latest instant a cache has judged at
// does not outlive a wall clock set back: proofs go on being accepted.
func TestReplayCacheClockSetBack(t *testing.T) {
	clock := newClock(testNow.Add(time.Hour))
	g := NewGrowingReplayCache(64, clock.Now)
	if first, err := g.Seen("ahead", clock.Now().Add(time.Minute)); !first || err != nil {
		t.Fatalf("at the wrong time: %v, %v", first, err)
	}
	g.Grow(1000)
	clock.Add(2 * time.Minute)
	if first, err := g.Seen("retires", clock.Now().Add(time.Minute)); !first || err != nil {
		t.Fatalf("retiring: %v, %v", first, err)
	}
	clock.Set(testNow) // corrected
	for _, c := range []ReplayCache{g, NewReplayCache(64, clock.Now)} {
		if _, err := c.Seen("x", testNow.Add(time.Hour+3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if first, err := c.Seen("fresh", testNow.Add(time.Minute)); !first || err != nil {
			t.Fatalf("%T after the clock was set back: %v, %v", c, first, err)
		}
	}
}
