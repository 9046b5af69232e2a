package revocation

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Change is one change to the list: an entry stored (new, or its expiry
// extended) or deleted. Journals record changes; Apply applies them.
type Change struct {
	Delete bool  `json:"delete,omitempty"`
	Entry  Entry `json:"entry"`
}

// Writer sets a key in the transaction that makes a change.
type Writer interface {
	Set(key, value []byte) error
}

// Journal records the changes Add and Delete make, for another part of
// jwtguard to carry elsewhere (replication to other nodes). Append runs
// inside the transaction that makes the change, so the change and its
// record commit together or not at all: a journal never misses a change,
// even across kill -9. Its keys must use a prefix of its own (the list
// uses e/, i/, k/ and x/). Committed runs after such a transaction is on
// disk, to wake whatever reads the journal.
type Journal interface {
	Append(w Writer, c *Change) error
	Committed()
}

func journalChange(w Writer, journal Journal, extra func(Writer) error, c *Change) error {
	if journal != nil {
		if err := journal.Append(w, c); err != nil {
			return err
		}
	}
	if extra != nil {
		return extra(w)
	}
	return nil
}

func committed(journal Journal) {
	if journal != nil {
		journal.Committed()
	}
}

// commitExtra commits a transaction that changes no entry, when extra has
// keys to write anyway.
func commitExtra(txn *badger.Txn, extra func(Writer) error) error {
	if extra == nil {
		return nil
	}
	if err := extra(txn); err != nil {
		return err
	}
	return txn.Commit()
}

// Apply applies a change made on another node, without journaling it, and
// writes extra's keys (such as how far the caller has applied) in the same
// transaction, whether or not the change changes anything: applying a
// change twice, or one that has expired meanwhile, changes nothing. A
// stored entry keeps its ID (derived from what it matches, the same on
// every node) and gets this store's created_at.
func (s *Store) Apply(c Change, extra func(Writer) error) error {
	if c.Delete {
		_, _, err := s.remove(c.Entry.ID, nil, extra)
		return err
	}
	e := c.Entry
	e.CreatedAt = time.Time{}
	_, _, err := s.put(e, nil, extra)
	var inv *InvalidError
	if errors.As(err, &inv) {
		// Expired since it was made, or from a node that knows more
		// fields than this one: nothing to store, but the caller's
		// position moves past it.
		if err := s.Update(extra); err != nil {
			return fmt.Errorf("applying a change that stores nothing (%s): %w", inv.Reason, err)
		}
		return nil
	}
	return err
}

// Update writes keys beside the list in one durable transaction.
func (s *Store) Update(fn func(Writer) error) error {
	if fn == nil {
		return nil
	}
	s.wmu.RLock()
	defer s.wmu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.Update(func(txn *badger.Txn) error { return fn(txn) })
}
