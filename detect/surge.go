package detect

import (
	"fmt"
	"math/bits"
)

// surge follows one subject across its tokens. Its state: the current
// bucket's number and count, and a ring of the counts of the subject's last
// 60 earlier buckets that had requests, with their running sum. A request
// that fires is not counted, so a flood does not raise the average it is
// judged against.
type surge struct {
	cfg    SurgeRule
	bucket int64 // ns
	min    uint32
	warmup int
	factor float64
}

// Words of the surge state.
const (
	sBucket    = iota // current bucket number: unix ns / bucket
	sCount            // count<<0 (32 bits) | ring head<<32 | ring length<<40
	sSum              // sum of the ring's counts as unpacked
	sRing             // MaxSurgeHistory 16-bit packed counts
	surgeWords = sRing + MaxSurgeHistory/4
)

func newSurge(cfg SurgeRule) *surge {
	return &surge{
		cfg:    cfg,
		bucket: int64(cfg.Bucket),
		min:    uint32(orDefault(cfg.Min, DefaultSurgeMin)),
		warmup: orDefault(cfg.Warmup, DefaultSurgeWarmup),
		factor: cfg.Factor,
	}
}

func (r *surge) name() string   { return "surge" }
func (r *surge) action() Action { return r.cfg.Action }
func (r *surge) quiet() int64   { return r.bucket }
func (r *surge) words() int     { return surgeWords }

func (r *surge) observe(st []uint64, o obs) bool {
	b := o.unixNS / r.bucket
	if int64(st[sBucket]) != b {
		if c := uint32(st[sCount]); c > 0 {
			r.push(st, c)
		}
		st[sBucket] = uint64(b)
		st[sCount] &^= 1<<32 - 1
	}
	n := uint32(st[sCount]) + 1
	if n >= r.min && r.history(st) >= r.warmup && float64(n) > r.factor*r.average(st) {
		return true
	}
	if n != 0 { // saturate rather than wrap
		st[sCount]++
	}
	return false
}

func (r *surge) history(st []uint64) int { return int(st[sCount] >> 40 & 0xff) }

func (r *surge) average(st []uint64) float64 {
	return float64(st[sSum]) / float64(r.history(st))
}

// push closes a bucket with c requests into the ring.
func (r *surge) push(st []uint64, c uint32) {
	ring := u16(st[sRing:])[:MaxSurgeHistory]
	head, n := int(st[sCount]>>32&0xff), r.history(st)
	p := packCount(c)
	if n == MaxSurgeHistory {
		st[sSum] -= uint64(unpackCount(ring[head]))
		ring[head] = p
		head = (head + 1) % MaxSurgeHistory
	} else {
		ring[(head+n)%MaxSurgeHistory] = p
		n++
	}
	st[sSum] += uint64(unpackCount(p))
	st[sCount] = uint64(uint32(st[sCount])) | uint64(head)<<32 | uint64(n)<<40
}

func (r *surge) detail(st []uint64, o obs) string {
	avg := r.average(st)
	n := uint32(st[sCount]) + 1
	return fmt.Sprintf("%d requests in %v, %.1fx the average of %.1f",
		n, r.cfg.Bucket, float64(n)/avg, avg)
}

// packCount keeps a bucket's count in 16 bits: exactly up to 4095, above
// that as 12 significant bits (the first implicit) and a shift, so within
// 1/4096. The shift field is 0 for an exact count, shift+1 otherwise.
func packCount(v uint32) uint16 {
	if v < 1<<11 {
		return uint16(v)
	}
	e := bits.Len32(v) - 12
	return uint16(e+1)<<11 | uint16(v>>e)&(1<<11-1)
}

func unpackCount(p uint16) uint32 {
	f, m := p>>11, uint32(p&(1<<11-1))
	if f == 0 {
		return m
	}
	e := f - 1
	v := (m | 1<<11) << e
	if e > 0 {
		v |= 1 << (e - 1) // the middle of what was dropped
	}
	return v
}
