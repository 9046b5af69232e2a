package audit

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// Usage is what is known about the use of one token (SPEC "Usage"). Times
// are whole seconds, UTC.
type Usage struct {
	TokenID   string    `json:"token_id"`
	Issuer    string    `json:"iss"`
	Subject   string    `json:"sub"`
	ExpiresAt time.Time `json:"expires_at"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Requests  uint64    `json:"requests"`
	// Revoked is the token's state when asked, which the caller fills in
	// (see RevocationToken); it is not stored.
	Revoked bool `json:"revoked"`
	// Clients has one row per (client IP, User-Agent) pair, the earliest
	// seen first, at most 32.
	Clients []Client `json:"clients"`
	// ClientsDropped counts the pairs seen after Clients was full. Each
	// pair is counted once; past 1024 dropped pairs it stops growing.
	ClientsDropped uint64 `json:"clients_dropped"`

	jti, kid, sid string
	iat           int64
	hasIat        bool
}

// Client is one (client IP, User-Agent) pair of a Usage.
type Client struct {
	IP        netip.Addr `json:"ip"`
	Country   string     `json:"country,omitempty"` // ISO code, with geoip only
	UserAgent string     `json:"user_agent"`
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  time.Time  `json:"last_seen"`
	Requests  uint64     `json:"requests"`
}

// RevocationToken is the token as the revocation list matches it, for
// filling in Revoked with (*revocation.Store).Revoked.
func (u *Usage) RevocationToken() revocation.Token {
	return revocation.Token{
		ID:          u.TokenID,
		Issuer:      u.Issuer,
		Subject:     u.Subject,
		JTI:         u.jti,
		KeyID:       u.kid,
		SID:         u.sid,
		IssuedAt:    u.iat,
		HasIssuedAt: u.hasIat,
	}
}

const (
	maxClients = 32
	// maxDropped bounds the pair hashes a record keeps to count each
	// dropped pair once: 8 KiB for a token seen from over a thousand
	// clients, which detection should have stopped long before.
	maxDropped = 1024
)

// record is a token's usage as stored. Times are unix seconds.
type record struct {
	tokenID, iss, sub, jti, kid string
	sid                         string
	iat                         int64
	hasIat                      bool
	exp, first, last            int64
	requests                    uint64
	clients                     []clientRow
	dropped                     []uint64 // sorted pairHash of each dropped pair
}

type clientRow struct {
	ip          netip.Addr
	ua, country string
	first, last int64
	requests    uint64
}

func (r *record) usage() Usage {
	u := Usage{
		TokenID:        r.tokenID,
		Issuer:         r.iss,
		Subject:        r.sub,
		FirstSeen:      unixTime(r.first),
		LastSeen:       unixTime(r.last),
		Requests:       r.requests,
		Clients:        make([]Client, len(r.clients)),
		ClientsDropped: uint64(len(r.dropped)),
		jti:            r.jti,
		kid:            r.kid,
		sid:            r.sid,
		iat:            r.iat,
		hasIat:         r.hasIat,
	}
	if r.exp != 0 {
		u.ExpiresAt = unixTime(r.exp)
	}
	for i, c := range r.clients {
		u.Clients[i] = Client{
			IP:        c.ip,
			Country:   c.country,
			UserAgent: c.ua,
			FirstSeen: unixTime(c.first),
			LastSeen:  unixTime(c.last),
			Requests:  c.requests,
		}
	}
	return u
}

func unixTime(s int64) time.Time { return time.Unix(s, 0).UTC() }

// merge adds what p counted to r. r may be empty (a token not stored).
func (r *record) merge(p *pendingToken) {
	if r.tokenID == "" {
		r.tokenID, r.first = p.id, p.first
	}
	r.iss, r.sub, r.jti, r.kid, r.sid = p.iss, p.sub, p.jti, p.kid, p.sid
	r.iat, r.hasIat, r.exp = p.iat, p.hasIat, p.exp
	r.first = min(r.first, p.first)
	r.last = max(r.last, p.last)
	r.requests += p.requests
	for i := range p.clients {
		c := &p.clients[i]
		if row := r.find(c.ip, c.ua); row != nil {
			row.first = min(row.first, c.first)
			row.last = max(row.last, c.last)
			row.requests += c.requests
			if row.country == "" && p.country != nil {
				row.country = p.country(c.ip)
			}
			continue
		}
		// Rows are never removed, so a pair once dropped is dropped again
		// here, and drop counts it once.
		if len(r.clients) < maxClients {
			row := clientRow{ip: c.ip, ua: c.ua, first: c.first, last: c.last, requests: c.requests}
			if p.country != nil {
				row.country = p.country(c.ip)
			}
			r.clients = append(r.clients, row)
			continue
		}
		r.drop(pairHash(c.ip, c.ua))
	}
	if len(p.over) == 0 {
		return
	}
	// Pairs p had no room for. None of them can need a row: p's 32 rows
	// either were r's already or filled r up. But one may be a row r had
	// before this period, whose counts go on.
	hashes := make([]uint64, len(r.clients))
	for i := range r.clients {
		hashes[i] = pairHash(r.clients[i].ip, r.clients[i].ua)
	}
	for h, o := range p.over {
		if i := slices.Index(hashes, h); i >= 0 {
			row := &r.clients[i]
			row.last = max(row.last, o.last)
			row.requests += o.requests
			continue
		}
		r.drop(h)
	}
}

func (r *record) find(ip netip.Addr, ua string) *clientRow {
	for i := range r.clients {
		if c := &r.clients[i]; c.ip == ip && c.ua == ua {
			return c
		}
	}
	return nil
}

func (r *record) drop(h uint64) {
	i, ok := slices.BinarySearch(r.dropped, h)
	if !ok && len(r.dropped) < maxDropped {
		r.dropped = slices.Insert(r.dropped, i, h)
	}
}

// pairHash identifies a (client IP, User-Agent) pair in the record's
// dropped set and in a pending token's overflow. FNV-1a: stable across
// restarts, and costless to run; only counting depends on it.
func pairHash(ip netip.Addr, ua string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	a := ip.As16()
	for _, b := range a {
		h = (h ^ uint64(b)) * prime
	}
	h = (h ^ uint64(ip.BitLen())) * prime
	for i := 0; i < len(ua); i++ {
		h = (h ^ uint64(ua[i])) * prime
	}
	return h
}

// Stored record: a version byte, then each field in the order of record,
// strings and lengths as uvarints, times as varints. Version 1 had no sid.
const recordVersion = 2

func (r *record) encode() []byte {
	b := make([]byte, 0, 128+len(r.clients)*(64+maxUserAgent/2)+8*len(r.dropped))
	b = append(b, recordVersion)
	for _, s := range [...]string{r.tokenID, r.iss, r.sub, r.jti, r.kid, r.sid} {
		b = appendString(b, s)
	}
	b = binary.AppendVarint(b, r.iat)
	if r.hasIat {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendVarint(b, r.exp)
	b = binary.AppendVarint(b, r.first)
	b = binary.AppendVarint(b, r.last)
	b = binary.AppendUvarint(b, r.requests)
	b = binary.AppendUvarint(b, uint64(len(r.clients)))
	for i := range r.clients {
		c := &r.clients[i]
		ip, _ := c.ip.MarshalBinary() // never fails
		b = appendString(b, string(ip))
		b = appendString(b, c.ua)
		b = appendString(b, c.country)
		b = binary.AppendVarint(b, c.first)
		b = binary.AppendVarint(b, c.last)
		b = binary.AppendUvarint(b, c.requests)
	}
	b = binary.AppendUvarint(b, uint64(len(r.dropped)))
	for _, h := range r.dropped {
		b = binary.BigEndian.AppendUint64(b, h)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func decodeRecord(v []byte) (record, error) {
	d := decoder{b: v}
	version := d.byte()
	if version != 1 && version != recordVersion {
		return record{}, errCorrupt
	}
	var r record
	for _, s := range [...]*string{&r.tokenID, &r.iss, &r.sub, &r.jti, &r.kid} {
		*s = d.string()
	}
	if version >= 2 {
		r.sid = d.string()
	}
	r.iat = d.varint()
	r.hasIat = d.byte() == 1
	r.exp, r.first, r.last = d.varint(), d.varint(), d.varint()
	r.requests = d.uvarint()
	if n := d.count(maxClients); n > 0 {
		r.clients = make([]clientRow, n)
		for i := range r.clients {
			c := &r.clients[i]
			if err := c.ip.UnmarshalBinary([]byte(d.string())); err != nil {
				d.bad = true
			}
			c.ua, c.country = d.string(), d.string()
			c.first, c.last, c.requests = d.varint(), d.varint(), d.uvarint()
		}
	}
	if n := d.count(maxDropped); n > 0 {
		r.dropped = make([]uint64, n)
		for i := range r.dropped {
			r.dropped[i] = binary.BigEndian.Uint64(d.take(8))
		}
	}
	if d.bad || len(d.b) != 0 {
		return record{}, errCorrupt
	}
	return r, nil
}

// decoder reads a record; a read past the end or a bad length sets bad
// and yields zeros.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) take(n int) []byte {
	if d.bad || n > len(d.b) {
		d.bad = true
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte { return d.take(1)[0] }

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) count(limit int) int {
	n := d.uvarint()
	if n > uint64(limit) {
		d.bad = true
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	return string(d.take(int(n)))
}
