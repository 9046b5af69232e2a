package revocation

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Kind says what a revocation entry matches on.
type Kind string

// The kinds of entry (SPEC "Revocation list").
const (
	KindJTI     Kind = "jti"
	KindToken   Kind = "token"
	KindSubject Kind = "subject"
	KindKey     Kind = "key"
	KindSession Kind = "session"
)

// Kinds lists every kind, in a stable order (for gauges and help texts).
var Kinds = []Kind{KindJTI, KindToken, KindSubject, KindKey, KindSession}

// kindCode is the kind's byte in keys and values; 0 is never a kind.
func kindCode(k Kind) byte {
	switch k {
	case KindJTI:
		return 1
	case KindToken:
		return 2
	case KindSubject:
		return 3
	case KindKey:
		return 4
	case KindSession:
		return 5
	}
	return 0
}

// kindsByCode inverts kindCode; a private copy, since Kinds is exported.
var kindsByCode = [...]Kind{1: KindJTI, 2: KindToken, 3: KindSubject, 4: KindKey, 5: KindSession}

func kindFromCode(c byte) Kind {
	if int(c) < len(kindsByCode) {
		return kindsByCode[c]
	}
	return ""
}

// Entry is one revocation, as the admin API stores and returns it.
type Entry struct {
	ID      string `json:"id"`
	Kind    Kind   `json:"kind"`
	JTI     string `json:"jti,omitempty"`
	Issuer  string `json:"iss,omitempty"`      // with jti or subject only
	TokenID string `json:"token_id,omitempty"` // kind token: the token id, computed by the caller from the JWT
	Subject string `json:"sub,omitempty"`
	// Before is for subject entries only: tokens issued before it (whole
	// seconds) match. Add defaults it to now and truncates it to the second.
	Before *time.Time `json:"before,omitempty"`
	KeyID  string     `json:"kid,omitempty"`
	// SID is the identity provider's session id (the sid claim), for
	// session entries; with Issuer, only that issuer's sessions match.
	SID       string    `json:"sid,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the entry stops matching and is dropped. Add rounds
	// it up to the second, since Badger's TTL counts in seconds.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Field length limits: generous for real claims, and a bound on what one
// entry costs on disk.
const (
	maxFieldLen   = 1024
	maxTokenIDLen = 2*maxFieldLen + 1 // "<iss>#<jti>"
	maxReasonLen  = 1024
)

// ErrInvalid is matched (errors.Is) by every error caused by bad input to
// Add or List, so the admin API can answer 400 to these and 500 to the rest.
var ErrInvalid = errors.New("invalid revocation request")

// InvalidError says what is wrong with an entry, a cursor, a kind or a limit.
type InvalidError struct {
	Field  string // JSON name of the offending field, or "" when several are involved
	Reason string // a sentence for the API's {"error": ...}
}

func (e *InvalidError) Error() string { return e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// normalize validates e against the SPEC's rules and returns the entry as
// it will be stored: kind set, before/expires_at at second precision and in
// UTC, ID derived. CreatedAt is left for the store to assign.
//
// An expires_at at or before dead (now less the store's grace period) is
// refused: an entry for a token that a handler's leeway still accepts
// must be storable, though its expires_at has passed.
func normalize(e Entry, now, dead time.Time) (Entry, error) {
	type field struct {
		name string
		val  string
		kind Kind
		max  int
	}
	present := ""
	var kind Kind
	for _, f := range []field{
		{"jti", e.JTI, KindJTI, maxFieldLen},
		{"token_id", e.TokenID, KindToken, maxTokenIDLen},
		{"sub", e.Subject, KindSubject, maxFieldLen},
		{"kid", e.KeyID, KindKey, maxFieldLen},
		{"sid", e.SID, KindSession, maxFieldLen},
	} {
		if f.val == "" {
			continue
		}
		if len(f.val) > f.max {
			return Entry{}, invalid(f.name, "%s is longer than %d bytes", f.name, f.max)
		}
		if present != "" {
			return Entry{}, invalid("", "%s and %s cannot be combined: an entry matches on one of jti, token, sub, kid or sid", present, f.name)
		}
		present, kind = f.name, f.kind
	}
	if present == "" {
		return Entry{}, invalid("", "nothing to match: give one of jti, token, sub, kid or sid")
	}
	if e.Kind != "" {
		if kindCode(e.Kind) == 0 {
			return Entry{}, invalid("kind", "unknown kind %.32q: use jti, token, subject, key or session", e.Kind)
		}
		if e.Kind != kind {
			return Entry{}, invalid("kind", "kind %q does not fit the field given (%s makes kind %q)", e.Kind, present, kind)
		}
	}
	e.Kind = kind

	if e.Issuer != "" {
		if kind != KindJTI && kind != KindSubject && kind != KindSession {
			return Entry{}, invalid("iss", "iss goes only with jti, sub or sid")
		}
		if len(e.Issuer) > maxFieldLen {
			return Entry{}, invalid("iss", "iss is longer than %d bytes", maxFieldLen)
		}
	}
	if len(e.Reason) > maxReasonLen {
		return Entry{}, invalid("reason", "reason is longer than %d bytes", maxReasonLen)
	}

	if e.Before != nil && kind != KindSubject {
		return Entry{}, invalid("before", "before goes only with sub")
	}
	if kind == KindSubject {
		b := now
		if e.Before != nil {
			b = *e.Before
			if err := checkRange("before", b); err != nil {
				return Entry{}, err
			}
		}
		// Subject revocations compare whole seconds (SPEC).
		b = time.Unix(b.Unix(), 0).UTC()
		e.Before = &b
	}

	if e.ExpiresAt != nil {
		x := *e.ExpiresAt
		if err := checkRange("expires_at", x); err != nil {
			return Entry{}, err
		}
		if !x.After(dead) {
			if dead.Equal(now) {
				return Entry{}, invalid("expires_at", "expires_at %s is not in the future", x.Format(time.RFC3339))
			}
			return Entry{}, invalid("expires_at", "expires_at %s has passed, and so has the grace period the handlers' leeway gives it (%s)", x.Format(time.RFC3339), now.Sub(dead).Round(time.Second))
		}
		// Round up: the entry must match at least as long as asked.
		secs := x.Unix()
		if x.Nanosecond() != 0 {
			secs++
		}
		x = time.Unix(secs, 0).UTC()
		e.ExpiresAt = &x
	}

	id := entryID(&e)
	if e.ID != "" && e.ID != id {
		return Entry{}, invalid("id", "id does not match the entry's fields (it would be %q); leave it out", id)
	}
	e.ID = id
	return e, nil
}

// checkRange keeps times within what JSON (RFC 3339, years 0-9999) and the
// unix-seconds encoding can carry.
func checkRange(name string, t time.Time) error {
	if t.IsZero() || t.Unix() <= 0 || t.UTC().Year() > 9999 {
		return invalid(name, "%s is out of range (1970 to 9999)", name)
	}
	return nil
}

// idLen is the raw length of an entry ID: 128 bits of SHA-256, plenty to
// make accidental collisions impossible.
const idLen = 16

// entryID derives the ID from the kind and the matched fields only, so the
// same revocation made twice, here or on another node, gets the same ID.
// Reason and expiry do not count.
func entryID(e *Entry) string {
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	str := func(s string) {
		h.Write(buf[:binary.PutUvarint(buf[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	h.Write([]byte("jwtguard revocation v1\x00"))
	h.Write([]byte{kindCode(e.Kind)})
	str(e.Issuer)
	str(matched(e))
	if e.Kind == KindSubject {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(e.Before.Unix()))
		h.Write(b[:])
	}
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.EncodeToString(h.Sum(sum[:0])[:idLen])
}

// matched is the value of the field the entry's kind matches on.
func matched(e *Entry) string {
	switch e.Kind {
	case KindJTI:
		return e.JTI
	case KindToken:
		return e.TokenID
	case KindSubject:
		return e.Subject
	case KindKey:
		return e.KeyID
	case KindSession:
		return e.SID
	}
	return ""
}

// decodeID turns an ID back into its raw bytes; ok is false for anything
// that no entry could have.
func decodeID(id string) (raw [idLen]byte, ok bool) {
	if len(id) != base64.RawURLEncoding.EncodedLen(idLen) {
		return raw, false
	}
	n, err := base64.RawURLEncoding.Decode(raw[:], []byte(id))
	if err != nil || n != idLen {
		return raw, false
	}
	// Reject non-canonical spellings (stray low bits in the last character)
	// so that one entry has exactly one ID.
	if base64.RawURLEncoding.EncodeToString(raw[:]) != id {
		return raw, false
	}
	return raw, true
}

// Stored values are a compact binary record, not JSON: loading a million of
// them at startup must take well under a second.
//
//	[0]      format version (1)
//	[1]      kind code
//	[2:10]   created_at, unix nanoseconds, big endian
//	[10:18]  expires_at, unix seconds, 0 = never
//	[18:26]  before, unix seconds (subject entries; 0 otherwise)
//	then issuer, matched field and reason, each as uvarint length + bytes
const (
	valueVersion = 1
	valueHeader  = 26
)

// record is a stored value decoded without copying: the byte slices alias
// the buffer it was parsed from.
type record struct {
	kind    Kind
	created int64
	expires int64
	before  int64
	issuer  []byte
	field   []byte
	reason  []byte
}

func encodeValue(e *Entry) []byte {
	iss, f := e.Issuer, matched(e)
	b := make([]byte, valueHeader, valueHeader+3*binary.MaxVarintLen16+len(iss)+len(f)+len(e.Reason))
	b[0] = valueVersion
	b[1] = kindCode(e.Kind)
	binary.BigEndian.PutUint64(b[2:], uint64(e.CreatedAt.UnixNano()))
	if e.ExpiresAt != nil {
		binary.BigEndian.PutUint64(b[10:], uint64(e.ExpiresAt.Unix()))
	}
	if e.Before != nil {
		binary.BigEndian.PutUint64(b[18:], uint64(e.Before.Unix()))
	}
	for _, s := range []string{iss, f, e.Reason} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var errCorrupt = errors.New("corrupt revocation record")

func decodeValue(b []byte) (record, error) {
	var r record
	if len(b) < valueHeader || b[0] != valueVersion {
		return r, errCorrupt
	}
	r.kind = kindFromCode(b[1])
	if r.kind == "" {
		return r, errCorrupt
	}
	r.created = int64(binary.BigEndian.Uint64(b[2:]))
	r.expires = int64(binary.BigEndian.Uint64(b[10:]))
	r.before = int64(binary.BigEndian.Uint64(b[18:]))
	rest := b[valueHeader:]
	for _, dst := range []*[]byte{&r.issuer, &r.field, &r.reason} {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return r, errCorrupt
		}
		*dst = rest[w : w+int(n) : w+int(n)]
		rest = rest[w+int(n):]
	}
	if len(rest) != 0 || len(r.field) == 0 {
		return r, errCorrupt
	}
	return r, nil
}

// entry rebuilds the public form of a record (this one allocates).
func (r *record) entry(id string) Entry {
	e := Entry{
		ID:        id,
		Kind:      r.kind,
		Issuer:    string(r.issuer),
		Reason:    string(r.reason),
		CreatedAt: time.Unix(0, r.created).UTC(),
	}
	f := string(r.field)
	switch r.kind {
	case KindJTI:
		e.JTI = f
	case KindToken:
		e.TokenID = f
	case KindSubject:
		e.Subject = f
		b := time.Unix(r.before, 0).UTC()
		e.Before = &b
	case KindKey:
		e.KeyID = f
	case KindSession:
		e.SID = f
	}
	if r.expires != 0 {
		x := time.Unix(r.expires, 0).UTC()
		e.ExpiresAt = &x
	}
	return e
}

// expiredAt reports whether a record with this expiry matches nothing at
// unix second now.
func expiredAt(expires, now int64) bool {
	return expires != 0 && expires <= now
}
