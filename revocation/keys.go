package revocation

import (
	"encoding/base64"
	"encoding/binary"
)

// Badger key layout. Every entry has:
//
//	e/ <created nanos BE> <id>        -> value record (so iteration is oldest first)
//	i/ <id>                           -> <created nanos BE>, for Get and Delete by ID
//	k/ <kind code> <created BE> <id>  -> empty, for listing one kind without a full scan
//
// and an entry that expires also has
//
//	x/ <expires secs BE> <id>         -> value record
//
// All four are written and deleted in one transaction. None carries a
// Badger TTL: an entry outlives its expiry by the store's grace period,
// which may grow after it was written. x/ is the sweep's to-do list: the
// sweep deletes the entry's keys and takes it out of the index (Delete
// removes all four), so an entry leaves the index exactly once, even when
// it is stored again after expiring and before the sweep came by.
const (
	entryPrefix  = "e/"
	idPrefix     = "i/"
	kindPrefix   = "k/"
	expiryPrefix = "x/"

	cursorLen = 8 + idLen
)

func entryKey(created int64, id *[idLen]byte) []byte {
	k := make([]byte, 0, len(entryPrefix)+cursorLen)
	k = append(k, entryPrefix...)
	k = binary.BigEndian.AppendUint64(k, uint64(created))
	return append(k, id[:]...)
}

func idKey(id *[idLen]byte) []byte {
	return append([]byte(idPrefix), id[:]...)
}

func kindKey(code byte, created int64, id *[idLen]byte) []byte {
	k := make([]byte, 0, len(kindPrefix)+1+cursorLen)
	k = append(k, kindPrefix...)
	k = append(k, code)
	k = binary.BigEndian.AppendUint64(k, uint64(created))
	return append(k, id[:]...)
}

func expiryKey(expires int64, id *[idLen]byte) []byte {
	k := make([]byte, 0, len(expiryPrefix)+8+idLen)
	k = append(k, expiryPrefix...)
	k = binary.BigEndian.AppendUint64(k, uint64(expires))
	return append(k, id[:]...)
}

// A list cursor is the (created, id) of the last entry returned: a
// position in the oldest-first order rather than an offset, so entries
// added or deleted meanwhile neither shift nor repeat a page.
func encodeCursor(pos []byte) string {
	return base64.RawURLEncoding.EncodeToString(pos)
}

func decodeCursor(c string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) != cursorLen {
		return nil, invalid("cursor", "cursor is not one this server handed out")
	}
	return b, nil
}
