package audit

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// Use is one request with a valid token, as Use records it. Use does not
// retain it.
type Use struct {
	TokenID   string
	Issuer    string
	Subject   string
	ExpiresAt int64 // unix seconds
	ClientIP  netip.Addr
	UserAgent string
	// JTI, KeyID, SID, IssuedAt and HasIssuedAt are kept so the admin API can
	// ask the revocation list whether the token is revoked now.
	JTI         string
	KeyID       string
	SID         string
	IssuedAt    int64 // unix seconds
	HasIssuedAt bool
	// Country names the country of an address (ISO code, "" if unknown);
	// nil without geoip. It is called when usage is flushed, never by Use.
	Country func(netip.Addr) string
	// Time is when the request came, unix seconds; 0 reads the Log's
	// clock. A caller that has read the clock for the request already
	// saves Use a clock read, which can be half its cost.
	Time int64
}

// numShards splits the pending usage so that requests on different tokens
// rarely wait for one another.
const numShards = 64

type shard struct {
	mu sync.Mutex
	m  map[string]*pendingToken
	_  [128 - 16]byte // a cache line pair of its own: shards sit in one array
}

// pendingToken is a token's usage since the last flush.
type pendingToken struct {
	id, iss, sub, jti, kid, sid string
	iat                         int64
	hasIat                      bool
	exp                         int64
	first, last                 int64
	requests                    uint64
	country                     func(netip.Addr) string
	clients                     []pendingClient // in the order first seen, at most maxClients
	over                        map[uint64]*overflow
}

type pendingClient struct {
	ip          netip.Addr
	ua          string
	first, last int64
	requests    uint64
}

// overflow counts a pair seen after clients was full, known by pairHash:
// it may be a row of the stored record, whose counts go on, or else a
// pair to count as dropped.
type overflow struct {
	last     int64
	requests uint64
}

// Use counts one request of u's token from u's client. It does no I/O,
// takes only the lock of the token's shard, and allocates only on the
// first sighting of a token, or of a (client IP, User-Agent) pair of it,
// since the last flush. When MaxPending pairs are waiting it wakes the
// flusher; at twice as many, a new token or pair is not recorded (the
// request still counts for a token already pending) and the drop is
// counted and logged at the next flush.
func (l *Log) Use(u *Use) {
	now := u.Time
	if now == 0 {
		now = l.clock().Unix()
	}
	ip := u.ClientIP.Unmap()
	ua := ClipUserAgent(u.UserAgent)
	sh := &l.shards[maphash.String(l.seed, u.TokenID)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// Checked under the shard lock: Close's final flush takes every shard
	// lock after setting it, so no use lands after that flush.
	if l.useClosed.Load() {
		return
	}
	p := sh.m[u.TokenID]
	if p == nil {
		if !l.reserve() {
			return
		}
		p = newPending(u, now)
		p.clients = append(p.clients, pendingClient{ip: ip, ua: strings.Clone(ua), first: now, last: now, requests: 1})
		p.requests = 1
		sh.m[p.id] = p
		return
	}
	p.requests++
	p.last = max(p.last, now)
	for i := range p.clients {
		if c := &p.clients[i]; c.ip == ip && c.ua == ua {
			c.requests++
			c.last = max(c.last, now)
			return
		}
	}
	if len(p.clients) < maxClients {
		if l.reserve() {
			p.clients = append(p.clients, pendingClient{ip: ip, ua: strings.Clone(ua), first: now, last: now, requests: 1})
		}
		return
	}
	h := pairHash(ip, ua)
	o := p.over[h]
	if o == nil {
		if !l.reserve() {
			return
		}
		if p.over == nil {
			p.over = make(map[uint64]*overflow)
		}
		o = &overflow{}
		p.over[h] = o
	}
	o.requests++
	o.last = max(o.last, now)
}

// reserve counts one more pending pair, or counts a drop and returns
// false past the hard cap.
func (l *Log) reserve() bool {
	n := l.pending.Add(1)
	if n > l.hardCap {
		l.pending.Add(-1)
		l.useDropped.Add(1)
		return false
	}
	if n >= l.softCap {
		select {
		case l.early <- struct{}{}:
		default:
		}
	}
	return true
}

// newPending copies u's strings into one allocation: the caller's may
// point into request buffers.
func newPending(u *Use, now int64) *pendingToken {
	var b strings.Builder
	b.Grow(len(u.TokenID) + len(u.Issuer) + len(u.Subject) + len(u.JTI) + len(u.KeyID) + len(u.SID))
	parts := [...]string{u.TokenID, u.Issuer, u.Subject, u.JTI, u.KeyID, u.SID}
	for _, s := range parts {
		b.WriteString(s)
	}
	all := b.String()
	var cut [len(parts)]string
	for i, s := range parts {
		cut[i], all = all[:len(s)], all[len(s):]
	}
	return &pendingToken{
		id: cut[0], iss: cut[1], sub: cut[2], jti: cut[3], kid: cut[4], sid: cut[5],
		iat: u.IssuedAt, hasIat: u.HasIssuedAt, exp: u.ExpiresAt,
		first: now, last: now,
		country: u.Country,
		clients: make([]pendingClient, 0, 2),
	}
}

// pairs is how many pending pairs p holds.
func (p *pendingToken) pairs() int64 { return int64(len(p.clients) + len(p.over)) }

// clone copies p for merging outside its shard's lock.
func (p *pendingToken) clone() *pendingToken {
	c := *p
	c.clients = slices.Clone(p.clients)
	if p.over != nil {
		c.over = make(map[uint64]*overflow, len(p.over))
		for h, o := range p.over {
			oc := *o
			c.over[h] = &oc
		}
	}
	return &c
}

// Flush writes the usage counted since the last flush. The flusher runs
// it every FlushInterval, and early when MaxPending is reached; Close runs
// it last. A failed write is kept and tried again by the next flush.
func (l *Log) Flush() error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	batch := l.retry
	l.retry = nil
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		var m map[string]*pendingToken
		if len(sh.m) > 0 {
			m = sh.m
			sh.m = make(map[string]*pendingToken, len(m))
		}
		sh.mu.Unlock()
		for _, p := range m {
			batch = append(batch, p)
		}
	}
	if d := l.useDropped.Swap(0); d > 0 {
		l.log.Warn("token usage not recorded: too many tokens and clients waiting to be written", zap.Uint64("dropped", d))
	}
	if len(batch) == 0 {
		return nil
	}
	written, err := l.writeUsage(batch)
	var freed int64
	for _, p := range batch[:written] {
		freed += p.pairs()
	}
	l.pending.Add(-freed)
	if err != nil {
		l.retry = batch[written:]
		return fmt.Errorf("writing token usage: %w", err)
	}
	return nil
}

// writeUsage merges each pending token into its stored record, in as few
// transactions as Badger allows, and returns how many tokens were
// committed (a prefix of batch).
func (l *Log) writeUsage(batch []*pendingToken) (int, error) {
	txn := l.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	committed := 0
	for i, p := range batch {
		r, _, err := getRecord(txn, p.id)
		if err != nil {
			return committed, err
		}
		r.merge(p)
		exp := l.expiry(r.last)
		h := hash16(p.id)
		rec := badger.NewEntry(usageKey(h), r.encode())
		rec.ExpiresAt = exp
		ix := badger.NewEntry(usageSubKey(hash8(r.sub), h), nil)
		ix.ExpiresAt = exp
		err = setBoth(txn, rec, ix)
		if errors.Is(err, badger.ErrTxnTooBig) {
			// Merged from what txn read, which the commit makes true: only
			// the flusher writes usage, and only under flushMu.
			if err = txn.Commit(); err != nil {
				return committed, err
			}
			committed = i
			txn = l.db.NewTransaction(true)
			err = setBoth(txn, rec, ix)
		}
		if err != nil {
			return committed, err
		}
	}
	if err := txn.Commit(); err != nil {
		return committed, err
	}
	return len(batch), nil
}

func setBoth(txn *badger.Txn, a, b *badger.Entry) error {
	if err := txn.SetEntry(a); err != nil {
		return err
	}
	return txn.SetEntry(b)
}

// getRecord reads the stored usage of a token; an empty record if none.
func getRecord(txn *badger.Txn, tokenID string) (record, bool, error) {
	item, err := txn.Get(usageKey(hash16(tokenID)))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	var r record
	err = item.Value(func(v []byte) error {
		r, err = decodeRecord(v)
		return err
	})
	if err != nil {
		return record{}, false, fmt.Errorf("usage record %x: %w", item.Key(), err)
	}
	if r.tokenID != tokenID {
		return record{}, false, nil // another token with the same hash prefix
	}
	return r, true, nil
}

// Usage returns the usage of a token: what is stored, with what was
// counted since the last flush added.
func (l *Log) Usage(tokenID string) (Usage, bool, error) {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.useClosed.Load() {
		return Usage{}, false, ErrClosed
	}
	var (
		r     record
		found bool
	)
	err := l.db.View(func(txn *badger.Txn) error {
		var err error
		r, found, err = getRecord(txn, tokenID)
		return err
	})
	if err != nil {
		return Usage{}, false, fmt.Errorf("reading token usage: %w", err)
	}
	var pend []*pendingToken
	for _, p := range l.retry {
		if p.id == tokenID {
			pend = append(pend, p)
		}
	}
	sh := &l.shards[maphash.String(l.seed, tokenID)%numShards]
	sh.mu.Lock()
	if p := sh.m[tokenID]; p != nil {
		pend = append(pend, p.clone())
	}
	sh.mu.Unlock()
	for _, p := range pend {
		r.merge(p)
		found = true
	}
	if !found {
		return Usage{}, false, nil
	}
	return r.usage(), true, nil
}

// UsageBySubject returns the usage of every token of sub known within
// History, most recently used first; iss "" matches any issuer.
func (l *Log) UsageBySubject(iss, sub string) ([]Usage, error) {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.useClosed.Load() {
		return nil, ErrClosed
	}
	match := func(i, s string) bool { return s == sub && (iss == "" || i == iss) }
	recs := make(map[string]*record)
	prefix := usageSubKey(hash8(sub), h16{})[:len(usageSubIndex)+8]
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := usageKey(h16(it.Item().Key()[len(prefix):]))
			item, err := txn.Get(key)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // expired between the two reads
			}
			if err != nil {
				return err
			}
			var r record
			err = item.Value(func(v []byte) error {
				r, err = decodeRecord(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("usage record %x: %w", key, err)
			}
			if match(r.iss, r.sub) {
				recs[r.tokenID] = &r
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading token usage: %w", err)
	}
	var pend []*pendingToken
	for _, p := range l.retry {
		if match(p.iss, p.sub) {
			pend = append(pend, p)
		}
	}
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for _, p := range sh.m {
			if match(p.iss, p.sub) {
				pend = append(pend, p.clone())
			}
		}
		sh.mu.Unlock()
	}
	for _, p := range pend {
		r := recs[p.id]
		if r == nil {
			r = &record{}
			recs[p.id] = r
		}
		r.merge(p)
	}
	out := make([]Usage, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.usage())
	}
	slices.SortFunc(out, func(a, b Usage) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return cmp.Compare(a.TokenID, b.TokenID)
	})
	return out, nil
}

// flushUsage runs Flush every interval, and when MaxPending is reached.
func (l *Log) flushUsage(every time.Duration) {
	defer l.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		case <-l.early:
		}
		if err := l.Flush(); err != nil {
			l.log.Error("token usage flush failed; kept for the next one", zap.Error(err))
		}
	}
}
