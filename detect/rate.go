package detect

import (
	"fmt"
	"math/bits"
	"time"
	"unsafe"
)

// rate follows one token's uses. Its state is 16-bit words, in one of two
// forms:
//
//   - count <= 15: the times of the uses in the window, each to 1/8192 of
//     the window, and a bitmask of the slots in use. Exact to that
//     precision: the count+1-th use within the window fires, and nothing
//     else does.
//   - count > 15: 15 counters of window/14 each, the current one included,
//     so they always cover the whole window and up to window/14 more. The
//     count+1-th use within the window always fires; uses spread over up
//     to window*15/14 may fire too, so a steady client at or below 14/15
//     of count per window never fires.
//
// Either way four words at most.
type rate struct {
	cfg      RateRule
	exact    bool
	t        ticks // exact form
	bucketNS int64 // counter form
}

const rateSlots = 15

func newRate(cfg RateRule) *rate {
	r := &rate{cfg: cfg, exact: cfg.Count <= rateSlots}
	if r.exact {
		r.t = newTicks(cfg.Window)
	} else {
		r.bucketNS = (int64(cfg.Window) + rateSlots - 2) / (rateSlots - 1)
	}
	return r
}

func (r *rate) name() string   { return "rate" }
func (r *rate) action() Action { return r.cfg.Action }
func (r *rate) quiet() int64   { return int64(r.cfg.Window) }

func (r *rate) words() int {
	if r.exact {
		return (r.cfg.Count + 1 + 3) / 4
	}
	return (rateSlots + 1 + 3) / 4
}

func (r *rate) observe(st []uint64, o obs) bool {
	w := u16(st)
	if r.exact {
		return r.observeExact(w, o)
	}
	return r.observeCounted(w, o)
}

// age drops the uses that have left the window at o.now (see ager).
func (r *rate) age(st []uint64, o obs) {
	w := u16(st)
	if r.exact {
		r.ageExact(w, o)
	} else {
		r.ageCounted(w, o)
	}
}

// observeExact keeps the slot mask after the count slots.
func (r *rate) observeExact(w []uint16, o obs) bool {
	count := r.cfg.Count
	mask := w[count]
	if o.idle >= int64(r.cfg.Window) {
		mask = 0 // also keeps a long-idle token's ticks from wrapping round
	}
	now := r.t.at(o.now)
	n := 0
	for m := mask; m != 0; m &= m - 1 {
		i := bits.TrailingZeros16(m)
		if within(now, w[i]) {
			n++
		} else {
			mask &^= 1 << i
		}
	}
	w[count] = mask
	if n >= count {
		return true
	}
	i := bits.TrailingZeros16(^mask)
	w[i] = now
	w[count] = mask | 1<<i
	return false
}

// ageExact is observeExact's first half, repeated there so that the
// request path makes no call for it.
func (r *rate) ageExact(w []uint16, o obs) {
	count := r.cfg.Count
	mask := w[count]
	if o.idle >= int64(r.cfg.Window) {
		mask = 0
	}
	now := r.t.at(o.now)
	for m := mask; m != 0; m &= m - 1 {
		if i := bits.TrailingZeros16(m); !within(now, w[i]) {
			mask &^= 1 << i
		}
	}
	w[count] = mask
}

// observeCounted keeps the low 16 bits of the current counter's number
// after the counters.
func (r *rate) observeCounted(w []uint16, o obs) bool {
	b := r.ageCounted(w, o)
	c := w[:rateSlots]
	sum := 0
	for _, v := range c {
		sum += int(v)
	}
	if sum >= r.cfg.Count {
		return true
	}
	c[b%rateSlots]++
	return false
}

// ageCounted zeroes the counters out of the window and makes the current
// one o.now's, whose number it returns.
func (r *rate) ageCounted(w []uint16, o obs) int64 {
	c := w[:rateSlots]
	b := o.now / r.bucketNS
	if gap := uint16(b) - w[rateSlots]; o.idle >= int64(r.cfg.Window) || gap >= rateSlots {
		clear(c)
	} else {
		for k := int64(gap) - 1; k >= 0; k-- {
			c[(b-k)%rateSlots] = 0
		}
	}
	w[rateSlots] = uint16(b)
	return b
}

func (r *rate) detail([]uint64, obs) string {
	return fmt.Sprintf("%d requests in %v", r.cfg.Count+1, r.cfg.Window)
}

// ticks measures time in 16 bits, at 1/8192 of a window. Rules compare
// times only within a window of each other and forget older ones at every
// use (and all of them after a window's idleness), so the ages they compare
// stay under two windows, far from the 8 windows where 16 bits wrap.
type ticks struct{ ns int64 }

const windowTicks = 8192

func newTicks(window time.Duration) ticks {
	return ticks{ns: (int64(window) + windowTicks - 1) / windowTicks}
}

func (t ticks) at(now int64) uint16 { return uint16(now / t.ns) }

func within(now, then uint16) bool { return now-then < windowTicks }

// u16 views a rule's words as 16-bit slots.
func u16(st []uint64) []uint16 {
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(st))), 4*len(st))
}
