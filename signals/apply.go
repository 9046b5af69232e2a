package signals

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// Badger keys of this package, beside the revocation list in its
// database (the list owns e/, i/, k/ and x/, the audit log ev/ es/ et/ ew/
// ei/ eo/ ec/ wh/ us/ ux/, the cluster c?/):
//
//	g/ <kind> <h16(len(iss) iss jti)> -> <until, unix seconds BE>, Badger TTL until
//
// one per applied signal, kind 's' for a SET and 'l' for a logout token,
// written in the transaction of the signal's last revocation entry.
const memoryPrefix = "g/"

const (
	memorySET    byte = 's'
	memoryLogout byte = 'l'
)

func memoryKey(kind byte, iss, jti string) []byte {
	// Length-prefixed, so that no (iss, jti) pair spells another's.
	h := sha256.New()
	h.Write(binary.AppendUvarint(nil, uint64(len(iss))))
	h.Write([]byte(iss))
	h.Write([]byte(jti))
	k := make([]byte, 0, len(memoryPrefix)+1+16)
	k = append(append(k, memoryPrefix...), kind)
	return append(k, h.Sum(nil)[:16]...)
}

// entrySetter is what a Badger transaction offers beyond
// revocation.Writer: an entry with a TTL.
type entrySetter interface {
	SetEntry(e *badger.Entry) error
}

func setMemory(w revocation.Writer, key []byte, until time.Time) error {
	val := binary.BigEndian.AppendUint64(nil, uint64(until.Unix()))
	if es, ok := w.(entrySetter); ok {
		if ttl := time.Until(until); ttl > 0 {
			return es.SetEntry(badger.NewEntry(key, val).WithTTL(ttl))
		}
	}
	return w.Set(key, val) // the value's own time still ends it
}

func remembered(db *badger.DB, key []byte, now time.Time) (bool, error) {
	var until int64
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) == 8 {
				until = int64(binary.BigEndian.Uint64(v))
			}
			return nil
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return until > now.Unix(), nil
}

// apply stores a valid signal's entries and remembers its jti, unless it
// was applied before. The jti is written with the last entry, after the
// others are durable: a crash in between leaves it unremembered, and the
// redelivery stores the same entries again (same IDs, nothing doubled).
func (r *Receiver) apply(o *outcome, kind byte, entries []revocation.Entry) *outcome {
	store, err := r.cfg.Store()
	if err != nil {
		return r.unapplied(o, err)
	}
	now := r.cfg.Now()
	key := memoryKey(kind, o.iss, o.jti)
	seen, err := remembered(store.DB(), key, now)
	if err != nil {
		return r.unapplied(o, err)
	}
	if seen {
		o.repeat, o.result = true, ResultIgnored
		return o
	}
	until := now.Add(r.cfg.Remember)
	remember := func(w revocation.Writer) error { return setMemory(w, key, until) }
	written := false
	for i, e := range entries {
		var stored revocation.Entry
		if i == len(entries)-1 {
			stored, _, err = store.AddWith(e, remember)
			written = err == nil
		} else {
			stored, _, err = store.Add(e)
		}
		var inv *revocation.InvalidError
		switch {
		case err == nil:
			o.entries = append(o.entries, stored)
		case errors.As(err, &inv) && inv.Field == "expires_at" && e.ExpiresAt != nil && !e.ExpiresAt.After(now):
			// Every token it could match has expired: nothing to store.
		case errors.As(err, &inv):
			// Checked before; should one slip through, the sender
			// must not retry it forever.
			f := refuse(ErrInvalidRequest, inv.Reason)
			f.labels, f.iss, f.jti, f.logout, f.entries = o.labels, o.iss, o.jti, o.logout, o.entries
			return f
		default:
			return r.unapplied(o, err)
		}
	}
	if !written {
		if err := store.Update(remember); err != nil {
			return r.unapplied(o, err)
		}
	}
	o.result = ResultApplied
	if len(o.entries) == 0 {
		o.result = ResultIgnored
	}
	return o
}

// unapplied is a valid signal the store could not take: 503, for the
// sender to deliver it again.
func (r *Receiver) unapplied(o *outcome, err error) *outcome {
	u := unavailable(ResultStoreUnavailable, "revocation list unavailable: "+err.Error())
	u.labels, u.iss, u.jti, u.logout = o.labels, o.iss, o.jti, o.logout
	return u
}
