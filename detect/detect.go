// Package detect notices a thief's use of a valid token: the rules of
// jwtguard's "Stolen-token detection" (rate, surge, networks, travel, agent,
// binding), each working on per-token or per-subject state kept in bounded
// memory. It imports nothing from Caddy; the handler feeds it requests that
// passed every other check, records the events it reports and applies their
// actions.
//
// The request path touches no disk and no network: state is in memory, and
// the geoip database is read into memory when opened. The package starts no
// goroutine; the caller runs Sweep on a ticker.
package detect

import (
	"hash/maphash"
	"math"
	"net/netip"
	"time"
)

// Request is what the rules look at. Observe does not retain it.
type Request struct {
	TokenID   string
	Issuer    string
	Subject   string
	ClientIP  netip.Addr
	UserAgent string
	// Expires is the token's exp; Sweep forgets a token once it has
	// passed, since it can no longer be used. Zero: unknown.
	Expires time.Time
}

// Finding is one rule firing on one request.
type Finding struct {
	Rule   string // rate, surge, networks, travel, agent or binding
	Action Action
	// Detail says what was seen, for the event and the revocation reason;
	// empty when NewEvent is false.
	Detail string
	// NewEvent is true for a rule's first firing for the token (the
	// subject, for surge) in its quiet period: record an event and apply
	// the action. False marks a repeat within the quiet period, reported
	// only when its action refuses the request: with reject, and with
	// revoke or revoke_subject for requests already past the revocation
	// check (or, for surge, the subject's other tokens) while the first
	// firing's revocation is being stored. A repeat records nothing and
	// revokes nothing again.
	NewEvent bool
}

// Verdict is the outcome of one request.
type Verdict struct {
	Findings []Finding // nil when nothing fired
	Reject   bool      // some finding's action refuses this request
	// NewNetwork is set, with Config.Sightings, when the request came from
	// a network the token's networks or travel state did not hold: the
	// other nodes of a cluster want to hear of it (ObserveRemote). A
	// network refused again within a rule's quiet period is not new.
	NewNetwork bool
}

// Strongest is the action to apply: the strongest of the findings' (Log
// when there are none).
func (v Verdict) Strongest() Action {
	var a Action
	for _, f := range v.Findings {
		a = max(a, f.Action)
	}
	return a
}

// Detector runs the configured rules. It is safe for concurrent use.
type Detector struct {
	rules   []rule // per token, in the SPEC's order; binding excluded
	offs    []int  // where each rule's words start in a token block: its quiet word, then its state
	ends    []int
	binding rule
	bindOff int
	surge   *surge

	tokens   *table // nil without token rules
	subjects *table // nil without surge

	// sighters[i] is d.rules[i] when it follows a token's networks
	// (networks, travel), else nil; sightings: Verdict.NewNetwork is wanted.
	sighters  []sighter
	sightings bool

	seed     maphash.Seed
	seed2    maphash.Seed // for subjects, with seed: iss and sub hashed apart
	clock    func() time.Time
	epoch    time.Time
	epochNS  int64 // epoch in unix ns, to align surge buckets
	trust    []netip.Prefix
	p4, p6   int
	needNet  bool
	needUA   bool
	keepIdle bool  // agent or travel: a token's state matters until it expires
	idleNS   int64 // otherwise, how long a token's state matters after its last use
}

// New validates cfg and builds a Detector.
func New(cfg Config) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Detector{
		seed:  maphash.MakeSeed(),
		seed2: maphash.MakeSeed(),
		clock: cfg.Now,
		p4:    orDefault(cfg.NetworkPrefix4, DefaultNetworkPrefix4),
		p6:    orDefault(cfg.NetworkPrefix6, DefaultNetworkPrefix6),
	}
	if d.clock == nil {
		d.clock = time.Now
	}
	d.epoch = d.clock()
	d.epochNS = d.epoch.UnixNano()
	for _, p := range cfg.Trust {
		// Clients are unmapped before matching, so ranges are too.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		d.trust = append(d.trust, p.Masked())
	}
	maxKeys := orDefault(cfg.MaxTracked, DefaultMaxTracked)

	if r := cfg.Rate; r != nil {
		d.rules = append(d.rules, newRate(*r))
	}
	if r := cfg.Networks; r != nil {
		d.rules = append(d.rules, &networks{cfg: *r, ticks: newTicks(r.Window), p4: d.p4, p6: d.p6})
		d.needNet = true
	}
	if r := cfg.Travel; r != nil {
		d.rules = append(d.rules, &travel{cfg: *r, geo: cfg.Geo})
		d.needNet = true
		d.keepIdle = true
	}
	if r := cfg.Agent; r != nil {
		d.rules = append(d.rules, &agent{act: r.Action})
		d.needUA = true
		d.keepIdle = true
	}
	d.sightings = cfg.Sightings
	for _, r := range d.rules {
		sg, _ := r.(sighter)
		d.sighters = append(d.sighters, sg)
	}
	stride := headerWords
	for _, r := range d.rules {
		d.offs = append(d.offs, stride)
		stride += 1 + r.words()
		d.ends = append(d.ends, stride)
		d.idleNS = max(d.idleNS, r.quiet())
	}
	if r := cfg.Binding; r != nil {
		d.binding = &binding{act: r.Action}
		d.bindOff = stride
		stride += 1 + d.binding.words()
		d.idleNS = max(d.idleNS, d.binding.quiet())
	}
	if len(d.rules) > 0 || d.binding != nil {
		d.tokens = newTable(maxKeys, stride)
	}
	if r := cfg.Surge; r != nil {
		d.surge = newSurge(*r)
		d.subjects = newTable(maxKeys, headerWords+1+d.surge.words())
	}
	return d, nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// now is the time since the epoch: monotonic with the real clock, so a
// step of the wall clock does not move any window.
// A clock set back before the epoch reads as the epoch.
func (d *Detector) now() int64 { return max(0, int64(d.clock().Sub(d.epoch))) }

func (d *Detector) trusted(a netip.Addr) bool {
	if len(d.trust) == 0 {
		return false
	}
	a = a.Unmap()
	for _, p := range d.trust {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Observe runs every rule but binding on a request with a valid token.
func (d *Detector) Observe(r *Request) Verdict {
	var v Verdict
	if len(d.rules) == 0 && d.surge == nil || d.trusted(r.ClientIP) {
		return v
	}
	o := obs{now: d.now(), addr: r.ClientIP.Unmap()}
	if d.needNet && o.addr.IsValid() {
		o.net, o.hasNet = networkKey(o.addr, d.p4, d.p6), true
	}
	if d.needUA {
		o.ua = maphash.String(d.seed, r.UserAgent) | 1
	}
	if len(d.rules) > 0 {
		key := maphash.String(d.seed, r.TokenID)
		s := d.tokens.shard(key)
		s.mu.Lock()
		b := getToken(s, key, r)
		if b == nil {
			s.mu.Unlock()
			return v
		}
		o.idle = idleSince(b, o.now)
		b[hLast] = uint64(o.now)
		if d.sightings {
			d.observeSighting(b, o, &v)
		} else {
			for i, ru := range d.rules {
				off, st := d.offs[i], b[d.offs[i]+1:d.ends[i]]
				if ru.observe(st, o) {
					v.add(ru, &b[off], st, o)
				}
			}
		}
		s.mu.Unlock()
	}
	if d.surge != nil && r.Subject != "" {
		d.observeSubject(r, o, &v)
	}
	return v
}

// observeSighting is Observe's loop over the token's rules that also
// tells whether the request's network is new to them (Verdict.NewNetwork).
func (d *Detector) observeSighting(b []uint64, o obs, v *Verdict) {
	for i, ru := range d.rules {
		off, st := d.offs[i], b[d.offs[i]+1:d.ends[i]]
		fresh := d.sighters[i] != nil && !d.sighters[i].holds(st, o)
		if ru.observe(st, o) && !v.add(ru, &b[off], st, o) {
			fresh = false // a repeat: told already, when it was new
		}
		v.NewNetwork = v.NewNetwork || fresh
	}
}

// ObserveBinding runs the binding rule on a valid bound token presented
// without its proof.
func (d *Detector) ObserveBinding(r *Request) Verdict {
	var v Verdict
	if d.binding == nil || d.trusted(r.ClientIP) {
		return v
	}
	o := obs{now: d.now(), addr: r.ClientIP.Unmap()}
	key := maphash.String(d.seed, r.TokenID)
	s := d.tokens.shard(key)
	s.mu.Lock()
	b := getToken(s, key, r)
	if b == nil {
		s.mu.Unlock()
		return v
	}
	st := b[d.bindOff+1 : d.bindOff+1+d.binding.words()]
	if d.binding.observe(st, o) {
		v.add(d.binding, &b[d.bindOff], st, o)
	}
	s.mu.Unlock()
	return v
}

func getToken(s *shard, key uint64, r *Request) []uint64 {
	b, fresh := s.get(key)
	if fresh && !r.Expires.IsZero() {
		b[hExp] = uint64(max(r.Expires.Unix(), 1))
	}
	return b
}

func (d *Detector) observeSubject(r *Request, o obs, v *Verdict) {
	// Two independent keyed hashes: no pair of strings is ambiguous, as
	// concatenating them would be, and nobody without the seeds can aim
	// at a collision.
	key := maphash.String(d.seed, r.Issuer) ^ maphash.String(d.seed2, r.Subject)
	s := d.subjects.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := s.get(key)
	if b == nil {
		return
	}
	o.idle = idleSince(b, o.now)
	b[hLast] = uint64(o.now)
	o.unixNS = d.epochNS + o.now
	st := b[headerWords+1:]
	if d.surge.observe(st, o) {
		v.add(d.surge, &b[headerWords], st, o)
	}
}

func idleSince(b []uint64, now int64) int64 {
	if b[hLast] == never {
		return math.MaxInt64
	}
	return now - int64(b[hLast])
}

// add reports a firing, and whether it is a new event. quiet holds the end
// of the rule's quiet period for this key.
func (v *Verdict) add(r rule, quiet *uint64, st []uint64, o obs) bool {
	act := r.action()
	f := Finding{Rule: r.name(), Action: act}
	if o.now >= int64(*quiet) {
		*quiet = uint64(o.now + r.quiet())
		f.NewEvent = true
		f.Detail = r.detail(st, o)
	} else if !act.Refuses() {
		return false // a logged repeat: nothing to record, nothing to refuse
	}
	v.Findings = append(v.Findings, f)
	v.Reject = v.Reject || act.Refuses()
	return f.NewEvent
}

// Tracked is the number of tokens followed in memory.
func (d *Detector) Tracked() int {
	if d.tokens == nil {
		return 0
	}
	return int(d.tokens.count.Load())
}

// Sweep forgets what no longer matters: tokens past their expiry, tokens
// whose windows and quiet periods have all passed since their last use
// (unless agent or travel, which remember a token's first User-Agent and
// last place for as long as it lives), and subjects idle for longer than
// their surge history or a day, whichever is longer.
func (d *Detector) Sweep() {
	now := d.now()
	nowUnix := (d.epochNS + now) / 1e9
	if d.tokens != nil {
		quiet := append([]int(nil), d.offs...)
		if d.binding != nil {
			quiet = append(quiet, d.bindOff)
		}
		for i := range d.tokens.shards {
			d.tokens.shards[i].sweep(func(b []uint64) bool {
				if exp := int64(b[hExp]); exp != 0 && nowUnix >= exp {
					return true
				}
				if d.keepIdle {
					return false
				}
				if idleSince(b, now) < d.idleNS {
					return false
				}
				for _, q := range quiet {
					if int64(b[q]) > now {
						return false
					}
				}
				return true
			})
		}
	}
	if d.subjects != nil {
		idle := max(MaxSurgeHistory*d.surge.bucket, int64(24*time.Hour))
		for i := range d.subjects.shards {
			d.subjects.shards[i].sweep(func(b []uint64) bool {
				return idleSince(b, now) >= idle
			})
		}
	}
}

// obs is one request as the rules see it. It is passed by value: through
// the rule interface a pointer would make it escape to the heap.
type obs struct {
	now    int64 // ns since the epoch
	idle   int64 // ns since this key was last observed; MaxInt64 if never
	unixNS int64 // now in unix ns (surge only)
	addr   netip.Addr
	net    uint64 // the client network, when hasNet
	hasNet bool
	ua     uint64 // hash of the User-Agent, never 0

	// A use another node saw (ObserveRemote): at is when, which may be
	// before now (the token's latest use here); place is where that
	// node's geoip put addr, nil to look it up here.
	remote bool
	at     int64
	place  *Place
}

// rule is one detector. Its state is words uint64 words of its key's block,
// which only it reads and writes, under the shard's lock; a zero block is
// the state of a key never seen.
type rule interface {
	name() string
	action() Action
	// quiet is how long a firing stays quiet, in ns.
	quiet() int64
	words() int
	// observe reports whether the request breaks the rule. A request that
	// breaks it leaves the state as it was, so the window keeps holding the
	// uses it allowed and a refused request does not move the reference.
	observe(st []uint64, o obs) bool
	// detail describes a break that observe just reported.
	detail(st []uint64, o obs) string
}
