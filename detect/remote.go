package detect

import (
	"hash/maphash"
	"slices"
	"time"
)

// Sighting is a use of a token from a network new to it, seen by another
// node of a cluster, for ObserveRemote.
type Sighting struct {
	// Request is the use: the token, its client address, its expiry
	// (for Sweep). The User-Agent is not compared.
	Request
	// At is when the other node saw it.
	At time.Time
	// Place is where the other node's geoip put ClientIP; nil when it did
	// not, and travel then looks the address up here.
	Place *Place
	// Fired names the rules (networks, travel) that fired on this use
	// there with a new event: that node recorded the event and took the
	// action, so here the same rule firing on it only starts its quiet
	// period, and no second event is made of one use.
	Fired []string
}

// sighter is a rule that follows the networks a token comes from, and so
// takes other nodes' sightings: networks and travel.
type sighter interface {
	rule
	// holds reports whether the state already has o's network: a request
	// from one it lacks is news for the other nodes.
	holds(st []uint64, o obs) bool
}

// ager is a rule that drops what has left its window only when it
// observes a request, and reads the token's idle time to do so (rate): a
// sighting moves the token's last use without being counted by it, so the
// rule ages its state then too, or uses older than its 16-bit clock can
// tell apart could come back into the window.
type ager interface {
	age(st []uint64, o obs)
}

// Shares reports whether d runs a rule that takes sightings (networks or
// travel).
func (d *Detector) Shares() bool {
	for _, sg := range d.sighters {
		if sg != nil {
			return true
		}
	}
	return false
}

// ObserveRemote runs networks and travel on a use of a token another node
// saw, as a request at s.At would have run them here, without counting it
// for rate or surge or comparing its User-Agent: its network joins the
// token's networks within their window, and its place is compared with
// the token's reference place (in either order of time, for a sighting
// that arrives late). Findings are reported as by Observe. Reject is
// false, there being no request to refuse; with reject, the rule's state
// refuses the token's next request here from the far network, as after a
// local firing.
//
// The token's clock here never goes back: a sighting older than the
// token's latest use counts at that use for the networks window (and not
// at all when it is a whole window older), and does not replace a newer
// travel reference.
func (d *Detector) ObserveRemote(s *Sighting) Verdict {
	var v Verdict
	addr := s.ClientIP.Unmap()
	if !d.Shares() || !addr.IsValid() || d.trusted(addr) {
		return v
	}
	now := d.now()
	at := min(max(0, int64(s.At.Sub(d.epoch))), now)
	key := maphash.String(d.seed, s.TokenID)
	sh := d.tokens.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := getToken(sh, key, &s.Request)
	if b == nil {
		return v
	}
	eff := at
	if b[hLast] != never {
		eff = max(eff, int64(b[hLast]))
	}
	o := obs{
		now: eff, idle: idleSince(b, eff), addr: addr,
		net: networkKey(addr, d.p4, d.p6), hasNet: true,
		remote: true, at: at, place: s.Place,
	}
	for i, ru := range d.rules {
		if a, ok := ru.(ager); ok {
			a.age(b[d.offs[i]+1:d.ends[i]], o)
		}
	}
	// A use of the token all the same: its state stays while it is used
	// on other nodes.
	b[hLast] = uint64(eff)
	for i, sg := range d.sighters {
		if sg == nil {
			continue
		}
		off, st := d.offs[i], b[d.offs[i]+1:d.ends[i]]
		if !sg.observe(st, o) {
			continue
		}
		if slices.Contains(s.Fired, sg.name()) {
			if eff >= int64(b[off]) {
				b[off] = uint64(eff + sg.quiet())
			}
			continue
		}
		v.add(sg, &b[off], st, o)
	}
	v.Reject = false
	return v
}
