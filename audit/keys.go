package audit

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
)

// Badger key layout. The revocation list owns e/, i/, k/ and x/; this
// package's prefixes all start with two letters, so none of them begins
// with one of those.
//
// Events, each written in one transaction with the same TTL (its time plus
// History):
//
//	ev/ <pos BE>                -> event record (see encodeEvent)
//	es/ <h8(sub)> <pos BE>      -> empty: events of a subject
//	et/ <h8(token id)> <pos BE> -> empty: events of a token
//	ew/ <h8(url)> <pos BE>      -> empty: events for a webhook
//
// pos is the event's place in the log: strictly increasing in the order
// Record was called, and committed in that order, so a cursor holding the
// last pos read never skips an event committed later.
//
// With Options.Share (a cluster), written with the event, same TTL:
//
//	ei/ <h16(event id)> -> pos BE: an event with this id is stored (Import skips it)
//	eo/ <pos BE>        -> empty: an event recorded here, not imported, for ShareEvents
//
// Webhook delivery, and the cluster's:
//
//	wh/ <h16(url)> -> pos BE of the last event delivered (TTL History)
//	ec/            -> pos BE of the last event ShareEvents handed over (TTL History)
//
// Usage, rewritten on every flush that saw the token, TTL last use plus
// History:
//
//	us/ <h16(token id)>                -> usage record (see record.encode)
//	ux/ <h8(sub)> <h16(token id)>      -> empty: the tokens of a subject
//
// Hashes are SHA-256 prefixes, stable across restarts (unlike maphash);
// the record's own fields are compared on read, so a collision only costs
// a wasted read.
const (
	eventPrefix   = "ev/"
	evSubPrefix   = "es/"
	evTokenPrefix = "et/"
	evHookPrefix  = "ew/"
	cursorPrefix  = "wh/"
	evIDPrefix    = "ei/"
	evOwnPrefix   = "eo/"
	shareCursor   = "ec/"
	usagePrefix   = "us/"
	usageSubIndex = "ux/"
)

type h8 = [8]byte
type h16 = [16]byte

func hash16(s string) h16 {
	sum := sha256.Sum256([]byte(s))
	return h16(sum[:16])
}

func hash8(s string) h8 {
	sum := sha256.Sum256([]byte(s))
	return h8(sum[:8])
}

func eventKey(pos uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(eventPrefix), pos)
}

// indexKey is an event index key, or with pos 0 the start of one value's
// keys.
func indexKey(prefix string, h h8, pos uint64) []byte {
	k := make([]byte, 0, len(prefix)+8+8)
	k = append(k, prefix...)
	k = append(k, h[:]...)
	return binary.BigEndian.AppendUint64(k, pos)
}

func idKey(id string) []byte {
	h := hash16(id)
	return append([]byte(evIDPrefix), h[:]...)
}

func ownKey(pos uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(evOwnPrefix), pos)
}

func cursorKey(url string) []byte {
	h := hash16(url)
	return append([]byte(cursorPrefix), h[:]...)
}

func usageKey(h h16) []byte {
	return append([]byte(usagePrefix), h[:]...)
}

func usageSubKey(sub h8, tok h16) []byte {
	k := make([]byte, 0, len(usageSubIndex)+8+16)
	k = append(k, usageSubIndex...)
	k = append(k, sub[:]...)
	return append(k, tok[:]...)
}

// An events cursor is the pos of the last event returned.
func encodeCursor(pos uint64) string {
	return base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, pos))
}

func decodeCursor(c string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) != 8 {
		return 0, ErrInvalidCursor
	}
	return binary.BigEndian.Uint64(b), nil
}
