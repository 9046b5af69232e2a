package detect

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
)

// networks follows the client networks of one token: up to count network
// keys, then 16-bit slots with the tick each was last seen and, after them,
// a bitmask of the keys in use. A request from a network beyond the count is
// not remembered, so the networks that hold the window are the first count
// seen in it, and with reject a later network stays refused until one of
// them has been unused for a whole window.
type networks struct {
	cfg    NetworksRule
	ticks  ticks
	p4, p6 int
}

func (r *networks) name() string   { return "networks" }
func (r *networks) action() Action { return r.cfg.Action }
func (r *networks) quiet() int64   { return int64(r.cfg.Window) }
func (r *networks) words() int     { return r.cfg.Count + (r.cfg.Count+1+3)/4 }

func (r *networks) observe(st []uint64, o obs) bool {
	if !o.hasNet {
		return false
	}
	if o.remote && o.now-o.at >= int64(r.cfg.Window) {
		return false // shares no window with the uses the state holds
	}
	count := r.cfg.Count
	keys, w := st[:count], u16(st[count:])
	mask := w[count]
	if o.idle >= int64(r.cfg.Window) {
		mask = 0
	}
	now := r.ticks.at(o.now)
	n, seen := 0, false
	for m := mask; m != 0; m &= m - 1 {
		i := bits.TrailingZeros16(m)
		switch {
		case !within(now, w[i]):
			mask &^= 1 << i
		case keys[i] == o.net:
			w[i] = now
			seen = true
			n++
		default:
			n++
		}
	}
	w[count] = mask
	if seen {
		return false
	}
	if n >= count {
		return true
	}
	i := bits.TrailingZeros16(^mask)
	keys[i], w[i] = o.net, now
	w[count] = mask | 1<<i
	return false
}

func (r *networks) holds(st []uint64, o obs) bool {
	if !o.hasNet {
		return true
	}
	if o.idle >= int64(r.cfg.Window) {
		return false
	}
	count := r.cfg.Count
	keys, w := st[:count], u16(st[count:])
	now := r.ticks.at(o.now)
	for m := w[count]; m != 0; m &= m - 1 {
		if i := bits.TrailingZeros16(m); keys[i] == o.net && within(now, w[i]) {
			return true
		}
	}
	return false
}

func (r *networks) detail(st []uint64, o obs) string {
	count := r.cfg.Count
	keys, mask := st[:count], u16(st[count:])[count]
	var b strings.Builder
	fmt.Fprintf(&b, "%d networks in %v: ", bits.OnesCount16(mask)+1, r.cfg.Window)
	for m := mask; m != 0; m &= m - 1 {
		b.WriteString(networkString(keys[bits.TrailingZeros16(m)], r.p4, r.p6))
		b.WriteString(", ")
	}
	b.WriteString(networkString(o.net, r.p4, r.p6))
	return b.String()
}

// v4Tag marks an IPv4 network key. As the top 32 bits of an IPv6 network
// it would be in ff00::/8, multicast, never a client's address.
const v4Tag = 0xffffffff << 32

// networkKey is a's network: the address masked to its family's prefix,
// which fits 64 bits since the IPv6 prefix is at most 64. a is unmapped.
func networkKey(a netip.Addr, p4, p6 int) uint64 {
	if a.Is4() {
		b := a.As4()
		return v4Tag | uint64(binary.BigEndian.Uint32(b[:])&(^uint32(0)<<(32-p4)))
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]) & (^uint64(0) << (64 - p6))
}

func networkString(key uint64, p4, p6 int) string {
	if key>>32 == v4Tag>>32 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(key))
		return netip.PrefixFrom(netip.AddrFrom4(b), p4).String()
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], key)
	return netip.PrefixFrom(netip.AddrFrom16(b), p6).String()
}

func beUint64(b []byte) uint64       { return binary.BigEndian.Uint64(b) }
func bePutUint64(b []byte, v uint64) { binary.BigEndian.PutUint64(b, v) }
