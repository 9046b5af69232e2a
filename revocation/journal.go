package revocation

import (
	"errors"
	"fmt"
	"slices"
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

// applyChunk bounds the changes ApplyBatch commits in one transaction,
// well inside Badger's transaction size with these small records.
const applyChunk = 200

// ApplyBatch is Apply for several changes in order, committed a chunk at a
// time with one disk sync each: a node catching up on a hundred thousand
// changes must not pay a sync for every one. extra's keys are written
// with the last chunk, so a crash in between makes the caller apply the
// earlier chunks again, which changes nothing; with no changes, alone.
func (s *Store) ApplyBatch(cs []Change, extra func(Writer) error) error {
	if len(cs) == 0 {
		return s.Update(extra)
	}
	for len(cs) > 0 {
		n := min(len(cs), applyChunk)
		var x func(Writer) error
		if n == len(cs) {
			x = extra
		}
		if err := s.applyChunk(cs[:n], x); err != nil {
			return err
		}
		cs = cs[n:]
	}
	return nil
}

// indexOp is a change the index makes once its transaction committed,
// with the record it concerns (for reconciling after a failed commit).
type indexOp struct {
	x                ref
	add              bool
	id               [idLen]byte
	created, expires int64
}

func opOf(ix *index, r *record, id *[idLen]byte, add bool) indexOp {
	return indexOp{x: ix.refOf(r), add: add, id: *id, created: r.created, expires: r.expires}
}

func (s *Store) applyChunk(cs []Change, extra func(Writer) error) error {
	s.wmu.RLock()
	defer s.wmu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	now := s.clock()
	dead := s.deadAt(now)
	cut := s.deadline(now)

	// Every stripe the chunk touches, locked in order: no Add or Delete
	// of those ids interleaves with it.
	var stripes []int
	for i := range cs {
		if id, ok := decodeID(cs[i].Entry.ID); ok {
			stripes = append(stripes, int(id[0])%len(s.stripes))
		}
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, i := range stripes {
		s.stripes[i].Lock()
		defer s.stripes[i].Unlock()
	}

	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	var ops []indexOp
	s.seqMu.Lock()
	last := s.lastCreated
	err := func() error {
		for i := range cs {
			c := &cs[i]
			id, ok := decodeID(c.Entry.ID)
			if !ok {
				continue // no entry could have it: nothing to apply
			}
			old, found, err := lookup(txn, &id)
			if err != nil {
				return fmt.Errorf("reading revocation %s: %w", c.Entry.ID, err)
			}
			live := found && !expiredAt(old.expires, cut)
			if c.Delete {
				if live {
					if err := deleteAll(txn, &old, &id, true); err != nil {
						return err
					}
					ops = append(ops, opOf(s.ix, &old, &id, false))
				}
				continue
			}
			e := c.Entry
			e.CreatedAt = time.Time{}
			e, err = normalize(e, now, dead)
			if err != nil {
				continue // expired meanwhile, or not an entry this node can store
			}
			created := max(now.UnixNano(), last+1)
			if live {
				if old.expires == 0 || (e.ExpiresAt != nil && e.ExpiresAt.Unix() <= old.expires) {
					continue // already stored as long or longer
				}
				if err := txn.Delete(expiryKey(old.expires, &id)); err != nil {
					return err
				}
				ops = append(ops, opOf(s.ix, &old, &id, false))
				created = old.created // the same entry, extended
				e.Reason = string(old.reason)
			} else if found {
				// Expired, not swept: replaced; its x/ key stays for the sweep.
				if err := deleteAll(txn, &old, &id, false); err != nil {
					return err
				}
			}
			e.CreatedAt = time.Unix(0, created).UTC()
			val := encodeValue(&e)
			rec, err := decodeValue(val)
			if err == nil {
				err = setAll(txn, &rec, val, &id)
			}
			if err != nil {
				return err
			}
			if created > last {
				last = created
			}
			ops = append(ops, opOf(s.ix, &rec, &id, true))
		}
		if extra != nil {
			return extra(txn)
		}
		return nil
	}()
	if err != nil {
		s.seqMu.Unlock()
		return fmt.Errorf("applying %d changes: %w", len(cs), err)
	}
	s.lastCreated = last
	done := make(chan error, 1)
	txn.CommitWith(func(err error) { done <- err })
	s.seqMu.Unlock()
	if err := <-done; err != nil {
		cause := fmt.Errorf("applying %d changes: %w", len(cs), err)
		// Badger may have applied the transaction all the same: make the
		// index agree with what it shows, op by op.
		for _, op := range ops {
			op := op
			_ = s.reconcile(&op.id, cause, func(r *record) {
				has := r != nil && r.created == op.created && r.expires == op.expires
				if op.add == has {
					if op.add {
						s.ix.add(op.x)
					} else {
						s.ix.remove(op.x)
					}
				}
			})
		}
		return cause
	}
	s.mu.Lock()
	for _, op := range ops {
		if op.add {
			s.ix.add(op.x)
		} else {
			s.ix.remove(op.x)
		}
	}
	s.mu.Unlock()
	return nil
}
