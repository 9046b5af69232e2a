package detect

import (
	"math/rand/v2"
	"testing"
)

// The table against a map and a list: random gets, sweeps and evictions,
// with keys that collide in the index's bits.
func TestTableAgainstReference(t *testing.T) {
	const max = 300
	rng := rand.New(rand.NewPCG(1, 2))
	tb := newTable(max, headerWords+1)
	s := &tb.shards[0]
	var order []uint64 // most recently used first
	touch := func(k uint64) {
		for i, o := range order {
			if o == k {
				order = append(order[:i], order[i+1:]...)
				break
			}
		}
		order = append([]uint64{k}, order...)
	}
	for step := range 50000 {
		// Few distinct low bits, so entries probe past each other.
		k := uint64(rng.IntN(1000))<<32 | uint64(rng.IntN(40))
		if rng.IntN(300) == 0 {
			// Sweep about half.
			drop := map[uint64]bool{}
			s.sweep(func(b []uint64) bool {
				if b[hKey]%2 == uint64(step%2) {
					drop[b[hKey]] = true
					return true
				}
				return false
			})
			kept := order[:0]
			for _, o := range order {
				if !drop[o] {
					kept = append(kept, o)
				}
			}
			order = kept
			continue
		}
		b, fresh := s.get(k)
		wasIn := false
		for _, o := range order {
			wasIn = wasIn || o == k
		}
		if fresh == wasIn {
			t.Fatalf("step %d: key %x fresh %v, in the reference %v", step, k, fresh, wasIn)
		}
		if !fresh && b[headerWords] != k {
			t.Fatalf("step %d: key %x has the block of %x", step, k, b[headerWords])
		}
		b[headerWords] = k
		touch(k)
		if len(order) > max {
			order = order[:max] // the least recently used goes
		}
		if s.live != len(order) || s.used != len(order) || int(tb.count.Load()) != len(order) {
			t.Fatalf("step %d: live %d, used %d, count %d, want %d", step, s.live, s.used, tb.count.Load(), len(order))
		}
	}
	// The list order is the reference's.
	i := 0
	for slot := s.head; slot != noSlot; slot = s.next(slot) {
		if got := s.block(slot)[hKey]; got != order[i] {
			t.Fatalf("position %d: %x, want %x", i, got, order[i])
		}
		i++
	}
}
