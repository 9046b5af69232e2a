package revocation

import (
	"bytes"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"
)

// Token is the part of a verified token that revocation matches on. The
// handler builds one per request, on the stack: Revoked does not retain it.
type Token struct {
	ID          string // token id: "<iss>#<jti>" or "sha256:..." (SPEC "The token id")
	Issuer      string
	Subject     string
	JTI         string
	KeyID       string
	SID         string // the sid claim
	IssuedAt    int64  // unix seconds, already floored
	HasIssuedAt bool
}

// hkey stands in for the strings an entry matches on. The index keeps no
// strings: 16 bytes per key instead of the strings and their headers keeps
// a million entries in well under 150 bytes each. Both halves come from
// hash/maphash with seeds drawn per store, so a false match takes a
// collision of at least 96 bits (see pair) that nobody outside the process
// can aim at, the seeds being unknown to them.
type hkey struct{ a, b uint64 }

type hasher struct{ s1, s2 maphash.Seed }

func newHasher() hasher { return hasher{maphash.MakeSeed(), maphash.MakeSeed()} }

// The request path computes the first half for the filter, and the second
// only when the filter lets a key through.
func (h *hasher) strA(s string) uint64 { return maphash.String(h.s1, s) }
func (h *hasher) strB(s string) uint64 { return maphash.String(h.s2, s) }

// bytes equals str(string(b)) (maphash guarantees it), so keys made while
// loading from disk find keys made from a request's token.
func (h *hasher) bytes(b []byte) hkey {
	return hkey{maphash.Bytes(h.s1, b), maphash.Bytes(h.s2, b)}
}

// pair combines the keys of an issuer and a value; order matters (iss=x,
// jti=y is not iss=y, jti=x).
//
// The low 32 bits of the first half are the value's own: they pick the
// filter word, so a token's probes for "this jti, any issuer" and "this
// jti from this issuer" land in one cache line. Two pairs with the same
// value still differ in the other 96 bits.
func pair(iss, v hkey) hkey {
	return hkey{pairA(iss.a, v.a), mix(iss.b, v.b)}
}

func pairA(iss, v uint64) uint64 {
	const low = 1<<32 - 1
	return mix(iss, v)&^low | v&low
}

// tokenKey is the key of a token id. An id with a '#' is keyed as the pair
// of what comes before and after its last '#', so "<iss>#<jti>" (the id of
// every token with a jti) gets the very key of the jti entry (iss, jti), in
// another map: the request path then hashes no extra string for the token
// id and probes no extra filter word. The split is only a way of hashing:
// it is the same on both sides for any string, '#' inside iss or jti
// included.
func (h *hasher) tokenKey(id []byte) hkey {
	if i := bytes.LastIndexByte(id, '#'); i >= 0 {
		return pair(h.bytes(id[:i]), h.bytes(id[i+1:]))
	}
	return h.bytes(id)
}

func mix(x, y uint64) uint64 {
	h := x*0x9e3779b97f4a7c15 + bits.RotateLeft64(y, 31)*0xc2b2ae3d27d4eb4f
	// MurmurHash3's finalizer: a bijection that spreads every input bit.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Expiry in the index is 32-bit seconds after 2020 (until 2156; later is
// clamped), to keep map slots at 24 bytes. 0 means never.
const expEpoch = 1577836800 // 2020-01-01T00:00:00Z

func relExp(unix int64) uint32 {
	switch d := unix - expEpoch; {
	case unix == 0:
		return 0
	case d < 1:
		return 1 // long past: matches nothing
	case d > math.MaxUint32:
		return math.MaxUint32
	default:
		return uint32(d)
	}
}

func alive(exp uint32, now int64) bool {
	return exp == 0 || int64(exp)+expEpoch > now
}

// slots holds the entries of a kind that matches by equality. Entries
// sharing a key (the same ID stored again after its first copy expired,
// until the sweep drops the old copy; or a 96-bit collision) keep their
// expiries in extra, so removing one leaves exactly the others.
type slots struct {
	m     map[hkey]slot
	extra map[hkey][]uint32 // keys with n > 1: every entry's exp
}

// slot: with n == 1, exp is the entry's; with n > 1, the latest of them
// (0, never, beats any), which is all a match needs to know.
type slot struct {
	n   uint32
	exp uint32
}

func newSlots() slots {
	return slots{m: make(map[hkey]slot), extra: make(map[hkey][]uint32)}
}

func laterExp(a, b uint32) uint32 {
	if a == 0 || b == 0 {
		return 0
	}
	return max(a, b)
}

func (s *slots) add(k hkey, exp uint32) {
	v, ok := s.m[k]
	switch {
	case !ok:
		v = slot{n: 1, exp: exp}
	case v.n == 1:
		s.extra[k] = []uint32{v.exp, exp}
		v = slot{n: 2, exp: laterExp(v.exp, exp)}
	default:
		s.extra[k] = append(s.extra[k], exp)
		v.n++
		v.exp = laterExp(v.exp, exp)
	}
	s.m[k] = v
}

func (s *slots) remove(k hkey, exp uint32) bool {
	v, ok := s.m[k]
	if !ok || (v.n == 1 && v.exp != exp) {
		return false
	}
	if v.n == 1 {
		delete(s.m, k)
		return true
	}
	exps := s.extra[k]
	at := slices.Index(exps, exp)
	if at < 0 {
		return false
	}
	exps = slices.Delete(exps, at, at+1)
	if len(exps) == 1 {
		delete(s.extra, k)
		s.m[k] = slot{n: 1, exp: exps[0]}
		return true
	}
	s.extra[k] = exps
	v.n--
	v.exp = exps[0]
	for _, e := range exps[1:] {
		v.exp = laterExp(v.exp, e)
	}
	s.m[k] = v
	return true
}

// subjects holds subject entries. Several entries for one (iss, sub) differ
// in before; the common case of one lives inline, more spill into multi.
type subjects struct {
	m     map[hkey]subjSlot
	multi map[hkey][]subjItem
}

// subjSlot: with n == 1, before and exp are the entry's; with n > 1 the
// entries are in multi and before is their latest (a quick reject).
type subjSlot struct {
	before int64
	exp    uint32
	n      uint32
}

type subjItem struct {
	before int64
	exp    uint32
}

func (s *subjects) add(k hkey, before int64, exp uint32) {
	v, ok := s.m[k]
	switch {
	case !ok:
		v = subjSlot{before: before, exp: exp, n: 1}
	case v.n == 1:
		s.multi[k] = []subjItem{{v.before, v.exp}, {before, exp}}
		v = subjSlot{before: max(v.before, before), n: 2}
	default:
		s.multi[k] = append(s.multi[k], subjItem{before, exp})
		v.before = max(v.before, before)
		v.n++
	}
	s.m[k] = v
}

func (s *subjects) remove(k hkey, before int64, exp uint32) bool {
	v, ok := s.m[k]
	if !ok {
		return false
	}
	if v.n == 1 {
		if v.before != before || v.exp != exp {
			return false
		}
		delete(s.m, k)
		return true
	}
	items := s.multi[k]
	at := slices.Index(items, subjItem{before, exp})
	if at < 0 {
		return false
	}
	items = slices.Delete(items, at, at+1)
	if len(items) == 1 {
		delete(s.multi, k)
		s.m[k] = subjSlot{before: items[0].before, exp: items[0].exp, n: 1}
		return true
	}
	s.multi[k] = items
	v.n--
	v.before = items[0].before
	for _, it := range items[1:] {
		v.before = max(v.before, it.before)
	}
	s.m[k] = v
	return true
}

func (s *subjects) match(k hkey, t *Token, now *lazyNow) bool {
	v, ok := s.m[k]
	if !ok || (t.HasIssuedAt && t.IssuedAt >= v.before) {
		return false
	}
	if v.n == 1 {
		return alive(v.exp, now.get())
	}
	for _, it := range s.multi[k] {
		if (!t.HasIssuedAt || t.IssuedAt < it.before) && alive(it.exp, now.get()) {
			return true
		}
	}
	return false
}

// lazyNow reads the clock at most once, and only when something matched:
// most tokens match nothing and never pay for it. It runs back seconds
// behind the clock: an entry matches for the store's grace period past its
// expiry.
type lazyNow struct {
	clock func() time.Time
	back  int64
	v     int64
	ok    bool
}

func (n *lazyNow) get() int64 {
	if !n.ok {
		n.v, n.ok = n.clock().Unix()-n.back, true
	}
	return n.v
}

// index answers Revoked from memory. It is not safe for concurrent use on
// its own: the Store guards it.
type index struct {
	h      hasher
	jtiIss slots    // pair(iss, jti)
	jtiAny slots    // jti, entries without iss
	token  slots    // tokenKey(token id)
	key    slots    // kid
	subIss subjects // pair(iss, sub)
	subAny subjects // sub, entries without iss
	sidIss slots    // pair(iss, sid)
	sidAny slots    // sid, entries without iss
	counts [6]int   // entries by kind code

	// Filters (see filter.go), one per group of maps: a group with few
	// entries, such as key, keeps a filter small enough to stay in cache.
	filt  [groups]filter
	stale [groups]int // keys deleted since that filter was built
	bulk  bool        // loading: the filters are built once at the end
}

// Filter groups. jti and token entries share one, since a token's probes
// for both fall into one word of it (see pair and tokenKey).
const (
	groupJTIToken = iota
	groupSubject
	groupKey
	groupSession
	groups
)

func groupOf(code byte) int {
	switch kindFromCode(code) {
	case KindSubject:
		return groupSubject
	case KindKey:
		return groupKey
	case KindSession:
		return groupSession
	}
	return groupJTIToken
}

func newIndex() *index {
	ix := &index{
		h:      newHasher(),
		jtiIss: newSlots(),
		jtiAny: newSlots(),
		token:  newSlots(),
		key:    newSlots(),
		sidIss: newSlots(),
		sidAny: newSlots(),
		subIss: subjects{m: make(map[hkey]subjSlot), multi: make(map[hkey][]subjItem)},
		subAny: subjects{m: make(map[hkey]subjSlot), multi: make(map[hkey][]subjItem)},
	}
	for g := range ix.filt {
		ix.filt[g] = newFilter(0)
	}
	return ix
}

// keys is the number of distinct keys in a group, what its filter holds.
func (ix *index) keys(group int) int {
	switch group {
	case groupJTIToken:
		return len(ix.jtiIss.m) + len(ix.jtiAny.m) + len(ix.token.m)
	case groupSubject:
		return len(ix.subIss.m) + len(ix.subAny.m)
	case groupSession:
		return len(ix.sidIss.m) + len(ix.sidAny.m)
	default:
		return len(ix.key.m)
	}
}

// rebuildFilter makes a group's filter anew, sized for the keys there are
// now and without the stale ones. For a million keys it takes some tens of
// milliseconds, during which the caller holds the index lock; growth
// doubles the size, so it happens rarely.
func (ix *index) rebuildFilter(group int) {
	f := newFilter(ix.keys(group))
	fill := func(m map[hkey]slot) {
		for k := range m {
			f.add(k.a)
		}
	}
	fillSubjects := func(m map[hkey]subjSlot) {
		for k := range m {
			f.add(k.a)
		}
	}
	switch group {
	case groupJTIToken:
		fill(ix.jtiIss.m)
		fill(ix.jtiAny.m)
		fill(ix.token.m)
	case groupSubject:
		fillSubjects(ix.subIss.m)
		fillSubjects(ix.subAny.m)
	case groupSession:
		fill(ix.sidIss.m)
		fill(ix.sidAny.m)
	default:
		fill(ix.key.m)
	}
	ix.filt[group], ix.stale[group] = f, 0
}

// endBulk builds the filters after loading.
func (ix *index) endBulk() {
	ix.bulk = false
	for g := range ix.filt {
		ix.rebuildFilter(g)
	}
}

// ref is where a stored entry lives in the index.
type ref struct {
	code   byte // kind code
	anyIss bool
	k      hkey
	before int64
	exp    uint32
}

func (ix *index) refOf(r *record) ref {
	x := ref{code: kindCode(r.kind), anyIss: len(r.issuer) == 0, exp: relExp(r.expires)}
	switch {
	case r.kind == KindToken:
		x.k = ix.h.tokenKey(r.field)
	case (r.kind == KindJTI || r.kind == KindSubject || r.kind == KindSession) && !x.anyIss:
		x.k = pair(ix.h.bytes(r.issuer), ix.h.bytes(r.field))
	default:
		x.k = ix.h.bytes(r.field)
	}
	if r.kind == KindSubject {
		x.before = r.before
	}
	return x
}

func (ix *index) slotsOf(x *ref) *slots {
	switch kindFromCode(x.code) {
	case KindJTI:
		if x.anyIss {
			return &ix.jtiAny
		}
		return &ix.jtiIss
	case KindToken:
		return &ix.token
	case KindSession:
		if x.anyIss {
			return &ix.sidAny
		}
		return &ix.sidIss
	}
	return &ix.key
}

func (ix *index) subjectsOf(x *ref) *subjects {
	if x.anyIss {
		return &ix.subAny
	}
	return &ix.subIss
}

func (ix *index) add(x ref) {
	if x.code == kindCode(KindSubject) {
		ix.subjectsOf(&x).add(x.k, x.before, x.exp)
	} else {
		ix.slotsOf(&x).add(x.k, x.exp)
	}
	ix.counts[x.code]++
	if ix.bulk {
		return
	}
	g := groupOf(x.code)
	if f := &ix.filt[g]; f.crowded(ix.keys(g)) {
		ix.rebuildFilter(g)
	} else {
		f.add(x.k.a)
	}
}

// remove drops one entry; it reports false, changing nothing, when the
// entry is not there (an entry that expired while the index was loading).
func (ix *index) remove(x ref) bool {
	g := groupOf(x.code)
	n := ix.keys(g)
	var ok bool
	if x.code == kindCode(KindSubject) {
		ok = ix.subjectsOf(&x).remove(x.k, x.before, x.exp)
	} else {
		ok = ix.slotsOf(&x).remove(x.k, x.exp)
	}
	if !ok {
		return false
	}
	ix.counts[x.code]--
	if left := ix.keys(g); left < n {
		ix.stale[g]++
		if !ix.bulk && ix.stale[g] > max(filterMinKeys, left/2) {
			ix.rebuildFilter(g)
		}
	}
	return true
}

// The keys a token is checked against, in the order revoked probes them,
// and the filter each goes to.
const (
	probeJTIAny = iota
	probeJTIIss
	probeToken
	probeKey
	probeSubAny
	probeSubIss
	probeSIDAny
	probeSIDIss
	probes
)

var probeGroup = [probes]int{groupJTIToken, groupJTIToken, groupJTIToken, groupKey, groupSubject, groupSubject, groupSession, groupSession}

// How the token id of a request was keyed.
const (
	idNone   = iota
	idIssJTI // "<Issuer>#<JTI>": the jtiIss key, from hashes already made
	idSplit  // another id with a '#'
	idWhole  // no '#', a sha256: id
)

// probe holds a token's keys while revoked works on it.
type probe struct {
	a      [probes]uint64
	issA   uint64 // first half of the issuer (or of "" when the id says so)
	idMode int
	idCut  int // idSplit: where the last '#' is
}

// revoked is the request path. It computes the first half of every key the
// token could match and fetches the filter word for each as soon as it is
// known (the fetches do not depend on each other, so the CPU overlaps their
// cache misses with each other and with the hashing). Only for keys a
// filter lets through does it compute the second halves and ask the maps.
// It does not allocate.
func (ix *index) revoked(t *Token, now *lazyNow) bool {
	h := &ix.h
	var (
		p    probe
		w    [probes]uint64 // each key's filter word, loaded as soon as its hash is known
		want uint           // bit i: probe i applies to this token and its map is not empty
	)
	// load starts fetching a key's filter word at once, so that a cache
	// miss on it overlaps with hashing the token's other strings.
	load := func(i int, a uint64) {
		p.a[i] = a
		f := &ix.filt[probeGroup[i]]
		w[i] = f.words[a&f.mask]
		want |= 1 << i
	}
	needIss := len(ix.jtiIss.m) > 0 || len(ix.subIss.m) > 0 || len(ix.token.m) > 0 || len(ix.sidIss.m) > 0
	if needIss {
		p.issA = h.strA(t.Issuer)
	}
	if t.JTI != "" && (len(ix.jtiIss.m) > 0 || len(ix.jtiAny.m) > 0 || len(ix.token.m) > 0) {
		ja := h.strA(t.JTI)
		p.a[probeJTIAny] = ja
		p.a[probeJTIIss] = pairA(p.issA, ja)
		if len(ix.jtiAny.m) > 0 {
			load(probeJTIAny, ja)
		}
		if t.Issuer != "" && len(ix.jtiIss.m) > 0 {
			load(probeJTIIss, p.a[probeJTIIss])
		}
	}
	if t.ID != "" && len(ix.token.m) > 0 {
		switch {
		case t.JTI != "" && isIssJTI(t):
			p.idMode = idIssJTI
			load(probeToken, p.a[probeJTIIss])
		case strings.LastIndexByte(t.ID, '#') >= 0:
			p.idMode, p.idCut = idSplit, strings.LastIndexByte(t.ID, '#')
			load(probeToken, pairA(h.strA(t.ID[:p.idCut]), h.strA(t.ID[p.idCut+1:])))
		default:
			p.idMode = idWhole
			load(probeToken, h.strA(t.ID))
		}
	}
	if t.Subject != "" && (len(ix.subIss.m) > 0 || len(ix.subAny.m) > 0) {
		sa := h.strA(t.Subject)
		p.a[probeSubAny] = sa
		load(probeSubAny, sa)
		if t.Issuer != "" && len(ix.subIss.m) > 0 {
			load(probeSubIss, pairA(p.issA, sa))
		}
	}
	if t.KeyID != "" && len(ix.key.m) > 0 {
		load(probeKey, h.strA(t.KeyID))
	}
	if t.SID != "" && (len(ix.sidIss.m) > 0 || len(ix.sidAny.m) > 0) {
		sa := h.strA(t.SID)
		p.a[probeSIDAny] = sa
		if len(ix.sidAny.m) > 0 {
			load(probeSIDAny, sa)
		}
		if t.Issuer != "" && len(ix.sidIss.m) > 0 {
			load(probeSIDIss, pairA(p.issA, sa))
		}
	}
	var hits uint
	for i := range w {
		_, m := ix.filt[probeGroup[i]].bits(p.a[i])
		if w[i]&m == m {
			hits |= 1 << i
		}
	}
	hits &= want
	if hits == 0 {
		return false
	}
	return ix.confirm(t, hits, &p, now)
}

// isIssJTI reports whether the token id is "<Issuer>#<JTI>" with no '#' in
// the jti, so that tokenKey would split it into exactly those two.
func isIssJTI(t *Token) bool {
	n := len(t.Issuer)
	return len(t.ID) == n+1+len(t.JTI) && t.ID[n] == '#' &&
		t.ID[:n] == t.Issuer && t.ID[n+1:] == t.JTI && strings.IndexByte(t.JTI, '#') < 0
}

// confirm asks the maps about the keys the filters let through: the rare
// path, for revoked tokens and the filters' false positives.
func (ix *index) confirm(t *Token, hits uint, p *probe, now *lazyNow) bool {
	h := &ix.h
	var issB, jb, sb, db uint64
	if hits&(1<<probeJTIIss|1<<probeSubIss|1<<probeSIDIss) != 0 || (hits&(1<<probeToken) != 0 && p.idMode == idIssJTI) {
		issB = h.strB(t.Issuer)
	}
	if hits&(1<<probeJTIAny|1<<probeJTIIss) != 0 || (hits&(1<<probeToken) != 0 && p.idMode == idIssJTI) {
		jb = h.strB(t.JTI)
	}
	if hits&(1<<probeSubAny|1<<probeSubIss) != 0 {
		sb = h.strB(t.Subject)
	}
	if hits&(1<<probeSIDAny|1<<probeSIDIss) != 0 {
		db = h.strB(t.SID)
	}
	iss, jti, sub := hkey{p.issA, issB}, hkey{p.a[probeJTIAny], jb}, hkey{p.a[probeSubAny], sb}
	sid := hkey{p.a[probeSIDAny], db}
	found := func(s *slots, k hkey) bool {
		v, ok := s.m[k]
		return ok && alive(v.exp, now.get())
	}
	tokenKey := func() hkey {
		switch p.idMode {
		case idIssJTI:
			return pair(iss, jti)
		case idSplit:
			pre, post := t.ID[:p.idCut], t.ID[p.idCut+1:]
			return pair(hkey{h.strA(pre), h.strB(pre)}, hkey{h.strA(post), h.strB(post)})
		}
		return hkey{p.a[probeToken], h.strB(t.ID)}
	}
	switch {
	case hits&(1<<probeJTIAny) != 0 && found(&ix.jtiAny, jti):
	case hits&(1<<probeJTIIss) != 0 && found(&ix.jtiIss, pair(iss, jti)):
	case hits&(1<<probeToken) != 0 && found(&ix.token, tokenKey()):
	case hits&(1<<probeKey) != 0 && found(&ix.key, hkey{p.a[probeKey], h.strB(t.KeyID)}):
	case hits&(1<<probeSubAny) != 0 && ix.subAny.match(sub, t, now):
	case hits&(1<<probeSubIss) != 0 && ix.subIss.match(pair(iss, sub), t, now):
	case hits&(1<<probeSIDAny) != 0 && found(&ix.sidAny, sid):
	case hits&(1<<probeSIDIss) != 0 && found(&ix.sidIss, pair(iss, sid)):
	default:
		return false
	}
	return true
}
