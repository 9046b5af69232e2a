// Package revocation is jwtguard's revocation list: entries kept durably in
// Badger, and an in-memory index that answers "is this verified token
// revoked?" on the request path without touching Badger.
package revocation

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"
)

// Options configure Open.
type Options struct {
	// Logger receives the store's and Badger's log lines. Default: none.
	Logger *zap.Logger
	// InMemory keeps everything in memory (unit tests only); dir is ignored.
	InMemory bool
	// Now is the clock for created_at, expiry and the default before.
	// Default time.Now.
	Now func() time.Time
	// Grace is how long an entry keeps matching after its expires_at: the
	// largest leeway of the handlers using the store, so that a token
	// accepted up to leeway past its exp stays revoked as long. Rounded up
	// to the second. See SetGrace.
	Grace time.Duration
	// GCInterval is how often Badger's value-log GC runs. Default 10m.
	GCInterval time.Duration
	// Journal, if set, records every change Add and Delete make, in the
	// transaction that makes it (see Journal). Apply does not journal.
	Journal Journal
	// SweepInterval is how often expired entries are taken out of the
	// index and their bookkeeping deleted. An expired entry stops matching
	// at once either way; the sweep reclaims memory and updates Counts.
	// Default 1m.
	SweepInterval time.Duration
}

// ErrClosed is returned by every method of a closed Store.
var ErrClosed = errors.New("revocation store is closed")

// ErrLocked is wrapped by Open's error when another process (or another
// Store in this process) has the directory open.
var ErrLocked = errors.New("directory is in use by another process or store")

// Store is the revocation list. Its methods are safe for concurrent use.
type Store struct {
	db    *badger.DB
	dir   string
	log   *zap.Logger
	clock func() time.Time

	// mu guards the index, which every request reads.
	mu  sync.RWMutex
	ix  *index
	err error // set: Revoked cannot answer (closed, or the index lost step with Badger)

	// wmu is held shared by Add, Delete, Get and List, and exclusively by
	// the sweep and Close, so a sweep sees no write half done.
	wmu      sync.RWMutex
	closed   bool
	sweptExp int64 // unix seconds: entries whose expires_at is at or before it are gone

	grace atomic.Int64 // seconds an entry outlives its expires_at; only grows

	journal Journal

	// stripes serialize Add and Delete of one ID (by its first byte), so
	// the index follows Badger in the same order, while different IDs
	// commit concurrently.
	stripes [64]sync.Mutex

	// seqMu makes created_at strictly increasing in commit order, so a
	// list cursor never skips an entry whose commit was still in flight.
	seqMu       sync.Mutex
	lastCreated int64

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store in dir and loads the index.
// Badger locks dir: a second Open of the same dir fails with ErrLocked.
func Open(dir string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	clock := opts.Now
	if clock == nil {
		clock = time.Now
	}
	gcEvery, sweepEvery := opts.GCInterval, opts.SweepInterval
	if gcEvery <= 0 {
		gcEvery = 10 * time.Minute
	}
	if sweepEvery <= 0 {
		sweepEvery = time.Minute
	}

	if dir == "" && !opts.InMemory {
		return nil, errors.New("opening revocation store: no directory given")
	}
	if !opts.InMemory {
		if err := removeEmptyLogs(dir, log); err != nil {
			return nil, fmt.Errorf("opening revocation store %s: %w", dir, err)
		}
	}
	db, err := badger.Open(badgerOptions(dir, opts.InMemory, log))
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			// Badger does not wrap the errno, so its message is all there is.
			return nil, fmt.Errorf("opening revocation store %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("opening revocation store %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, log: log, clock: clock, ix: newIndex(), stop: make(chan struct{}), journal: opts.Journal}
	s.SetGrace(opts.Grace)
	start := time.Now()
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("loading revocation list from %s: %w", dir, err)
	}
	log.Info("revocation list loaded", zap.String("dir", dir), zap.Int("entries", s.total()), zap.Duration("took", time.Since(start)))

	s.wg.Add(1)
	go s.background(gcEvery, sweepEvery, !opts.InMemory)
	return s, nil
}

// badgerOptions size Badger for a side role in a web server: entries are
// small and few writes happen, so small memtables, no block cache (values
// are not compressed, blocks are read straight from the mmapped tables), a
// bounded index cache, two compactors and a small value log.
func badgerOptions(dir string, inMemory bool, log *zap.Logger) badger.Options {
	o := badger.DefaultOptions(dir)
	if inMemory {
		o = badger.DefaultOptions("").WithInMemory(true)
	}
	return o.
		WithLogger(badgerLogger{log.Named("badger").Sugar()}).
		WithSyncWrites(true). // an acknowledged revocation survives kill -9 and power loss
		WithMetricsEnabled(false).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithValueThreshold(64 << 10). // records are < 4 KiB: they live in the LSM tree, loading never reads the value log
		WithValueLogFileSize(16 << 20).
		WithNumCompactors(2).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(16 << 20).
		WithNumGoroutines(2)
}

// load fills the index from Badger. Entries that expired while the store
// was closed are skipped, and their sweep bookkeeping is dropped.
func (s *Store) load() error {
	cut := s.cutoff(s.clock())
	ix := s.ix
	ix.bulk = true
	var last int64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(entryPrefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			err := item.Value(func(v []byte) error {
				r, err := decodeValue(v)
				if err != nil {
					return fmt.Errorf("key %x: %w", item.Key(), err)
				}
				last = max(last, r.created)
				if !expiredAt(r.expires, cut) {
					ix.add(ix.refOf(&r))
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	ix.endBulk()
	s.lastCreated = last
	// Nothing else runs yet, but the sweep expects wmu held.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// Entries that had expired when loading began were skipped: drop their
	// keys without touching the index.
	if err := s.sweepLocked(cut, false); err != nil {
		return err
	}
	// Entries expiring during the load were loaded: a normal sweep takes
	// them out (removing one that was not loaded changes nothing).
	return s.sweepLocked(s.cutoff(s.clock()), true)
}

// Add stores e and puts it in the index. It validates e (errors wrap
// ErrInvalid), derives its ID, sets CreatedAt, and returns once the entry
// is synced to disk. An entry with the same ID already stored is returned
// with created false, its expiry extended to e's if that is later (see
// extend). Add ignores e.CreatedAt; e.ID, if set, must be the derived one.
func (s *Store) Add(e Entry) (stored Entry, created bool, err error) {
	return s.put(e, s.journal, nil)
}

// AddWith is Add, also writing extra's keys (under a prefix of the
// caller's own) in the same durable transaction, whether or not the entry
// was new: a caller that must remember having applied something (a
// signal's jti) never remembers it without the entry.
func (s *Store) AddWith(e Entry, extra func(Writer) error) (stored Entry, created bool, err error) {
	return s.put(e, s.journal, extra)
}

// put is Add, recording the change in journal (nil: nowhere) and writing
// extra's keys in the same transaction.
func (s *Store) put(e Entry, journal Journal, extra func(Writer) error) (stored Entry, created bool, err error) {
	s.wmu.RLock()
	defer s.wmu.RUnlock()
	if s.closed {
		return Entry{}, false, ErrClosed
	}
	now := s.clock()
	dead := s.deadAt(now)
	e, err = normalize(e, now, dead)
	if err != nil {
		return Entry{}, false, err
	}
	id, _ := decodeID(e.ID)
	lk := &s.stripes[int(id[0])%len(s.stripes)]
	lk.Lock()
	defer lk.Unlock()

	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	old, found, err := lookup(txn, &id)
	if err != nil {
		return Entry{}, false, fmt.Errorf("reading revocation %s: %w", e.ID, err)
	}
	if found {
		if !expiredAt(old.expires, s.deadline(now)) {
			return s.extend(txn, &old, &id, e.ExpiresAt, journal, extra)
		}
		// Expired, but not swept yet: replace it. Its x/ key stays, and
		// the sweep takes its share out of the index.
		if err := deleteAll(txn, &old, &id, false); err != nil {
			return Entry{}, false, fmt.Errorf("storing revocation %s: %w", e.ID, err)
		}
	}

	done := make(chan error, 1)
	s.seqMu.Lock()
	c := max(now.UnixNano(), s.lastCreated+1)
	e.CreatedAt = time.Unix(0, c).UTC()
	val := encodeValue(&e)
	rec, err := decodeValue(val)
	if err == nil {
		err = setAll(txn, &rec, val, &id)
	}
	if err == nil {
		err = journalChange(txn, journal, extra, &Change{Entry: e})
	}
	if err != nil {
		s.seqMu.Unlock()
		return Entry{}, false, fmt.Errorf("storing revocation %s: %w", e.ID, err)
	}
	s.lastCreated = c
	// CommitWith takes the commit timestamp before returning, so commits
	// become visible in created order; the fsync is waited for outside
	// seqMu, letting concurrent Adds queue up behind it.
	txn.CommitWith(func(err error) { done <- err })
	s.seqMu.Unlock()

	x := s.ix.refOf(&rec)
	if err := <-done; err != nil {
		return Entry{}, false, s.reconcile(&id, fmt.Errorf("storing revocation %s: %w", e.ID, err), func(r *record) {
			if r != nil && r.created == c {
				s.ix.add(x)
			}
		})
	}
	s.mu.Lock()
	s.ix.add(x)
	s.mu.Unlock()
	committed(journal)
	return e, true, nil
}

// Get returns the entry with this ID, if it is stored and not expired.
func (s *Store) Get(id string) (Entry, bool, error) {
	raw, ok := decodeID(id)
	if !ok {
		return Entry{}, false, nil
	}
	s.wmu.RLock()
	defer s.wmu.RUnlock()
	if s.closed {
		return Entry{}, false, ErrClosed
	}
	var (
		e     Entry
		found bool
	)
	err := s.db.View(func(txn *badger.Txn) error {
		r, ok, err := lookup(txn, &raw)
		if ok && !expiredAt(r.expires, s.deadline(s.clock())) {
			e, found = r.entry(id), true
		}
		return err
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("reading revocation %s: %w", id, err)
	}
	return e, found, nil
}

// Delete removes the entry with this ID and returns it, synced to disk
// before it returns. An expired entry counts as already gone.
func (s *Store) Delete(id string) (Entry, bool, error) {
	return s.remove(id, s.journal, nil)
}

// remove is Delete, recording the change in journal (nil: nowhere) and
// writing extra's keys in the same transaction; with extra, the
// transaction commits even when there is nothing to delete.
func (s *Store) remove(id string, journal Journal, extra func(Writer) error) (Entry, bool, error) {
	raw, ok := decodeID(id)
	if !ok {
		return Entry{}, false, nil
	}
	s.wmu.RLock()
	defer s.wmu.RUnlock()
	if s.closed {
		return Entry{}, false, ErrClosed
	}
	lk := &s.stripes[int(raw[0])%len(s.stripes)]
	lk.Lock()
	defer lk.Unlock()

	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	r, found, err := lookup(txn, &raw)
	if err != nil {
		return Entry{}, false, fmt.Errorf("reading revocation %s: %w", id, err)
	}
	if !found || expiredAt(r.expires, s.deadline(s.clock())) {
		return Entry{}, false, commitExtra(txn, extra)
	}
	gone := r.entry(id)
	err = deleteAll(txn, &r, &raw, true)
	if err == nil {
		err = journalChange(txn, journal, extra, &Change{Delete: true, Entry: gone})
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("deleting revocation %s: %w", id, err)
	}
	x := s.ix.refOf(&r)
	if err := txn.Commit(); err != nil {
		return Entry{}, false, s.reconcile(&raw, fmt.Errorf("deleting revocation %s: %w", id, err), func(now *record) {
			if now == nil || now.created != r.created {
				s.ix.remove(x)
			}
		})
	}
	s.mu.Lock()
	s.ix.remove(x)
	s.mu.Unlock()
	committed(journal)
	return gone, true, nil
}

// List returns up to limit entries of kind ("" for all), oldest first,
// starting after cursor ("" for the beginning). next is the cursor for the
// following page, "" on the last one. Entries added while paging appear at
// the end; none is skipped or repeated. limit must be at least 1 (the
// caller caps it).
func (s *Store) List(kind Kind, cursor string, limit int) (entries []Entry, next string, err error) {
	if limit < 1 {
		return nil, "", invalid("limit", "limit must be at least 1")
	}
	var prefix []byte
	switch {
	case kind == "":
		prefix = []byte(entryPrefix)
	case kindCode(kind) != 0:
		prefix = append([]byte(kindPrefix), kindCode(kind))
	default:
		return nil, "", invalid("kind", "unknown kind %.32q: use jti, token, subject, key or session", kind)
	}
	start := prefix
	if cursor != "" {
		pos, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		start = append(bytes.Clone(prefix), pos...)
	}

	s.wmu.RLock()
	defer s.wmu.RUnlock()
	if s.closed {
		return nil, "", ErrClosed
	}
	now := s.deadline(s.clock())
	var lastPos []byte
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: kind == "", PrefetchSize: min(limit+1, 100)})
		defer it.Close()
		for it.Seek(start); it.Valid(); it.Next() {
			item := it.Item()
			key := item.Key()
			if cursor != "" && bytes.Equal(key, start) {
				continue // the last entry of the previous page
			}
			pos := key[len(prefix):]
			var id [idLen]byte
			copy(id[:], pos[8:])
			var val []byte
			var err error
			if kind == "" {
				val, err = item.ValueCopy(nil)
			} else {
				val, err = getValue(txn, entryKey(int64(binary.BigEndian.Uint64(pos)), &id))
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue // expired between the two reads
				}
			}
			if err != nil {
				return err
			}
			r, err := decodeValue(val)
			if err != nil {
				return fmt.Errorf("key %x: %w", key, err)
			}
			if expiredAt(r.expires, now) {
				continue
			}
			if len(entries) == limit {
				next = encodeCursor(lastPos)
				return nil
			}
			entries = append(entries, r.entry(idString(&id)))
			lastPos = append(lastPos[:0], pos...)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("listing revocations: %w", err)
	}
	return entries, next, nil
}

// Revoked reports whether the verified token t matches a live entry. It
// reads only the in-memory index and does not allocate. The error is
// non-nil only when the store cannot answer (it is closed, or the index
// lost step with Badger after a failed write): the caller must then refuse
// the request (fail closed).
func (s *Store) Revoked(t *Token) (bool, error) {
	now := lazyNow{clock: s.clock, back: s.grace.Load()}
	s.mu.RLock()
	if s.err != nil {
		err := s.err
		s.mu.RUnlock()
		return false, err
	}
	r := s.ix.revoked(t, &now)
	s.mu.RUnlock()
	return r, nil
}

// Counts returns the number of entries in the index per kind, every kind
// present. Expired entries count until the next sweep.
func (s *Store) Counts() map[Kind]int {
	m := make(map[Kind]int, len(Kinds))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, k := range Kinds {
		if s.ix != nil {
			m[k] = s.ix.counts[i+1]
		} else {
			m[k] = 0
		}
	}
	return m
}

func (s *Store) total() int {
	n := 0
	for _, c := range s.Counts() {
		n += c
	}
	return n
}

// DB is the store's Badger database, for other parts of jwtguard that keep
// their records beside the revocation list under prefixes of their own
// (the revocation list uses e/, i/, k/ and x/). They must stop using it
// before Close.
func (s *Store) DB() *badger.DB { return s.db }

// Close stops the background work and closes Badger. Later calls return
// the first call's result; every other method then returns ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.wmu.Lock()
		defer s.wmu.Unlock()
		s.closed = true
		s.mu.Lock()
		s.err = ErrClosed
		s.ix = nil // a million entries' worth of memory, no longer needed
		s.mu.Unlock()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("closing revocation store %s: %w", s.dir, err)
		}
	})
	return s.closeErr
}

// SetGrace raises how long entries keep matching after their expires_at
// (Options.Grace) to d, rounded up to the second; a smaller d changes
// nothing, since handlers of an older config may still accept tokens that
// much past their exp. Entries already swept stay gone.
func (s *Store) SetGrace(d time.Duration) {
	secs := int64((d + time.Second - 1) / time.Second)
	for {
		old := s.grace.Load()
		if secs <= old || s.grace.CompareAndSwap(old, secs) {
			return
		}
	}
}

// Grace returns the current grace period.
func (s *Store) Grace() time.Duration { return time.Duration(s.grace.Load()) * time.Second }

// cutoff is the latest expires_at that is dead at now: entries are kept
// for the grace period after it.
func (s *Store) cutoff(now time.Time) int64 {
	return now.Unix() - s.grace.Load()
}

// deadline is the cutoff for reads and writes: never earlier than the last
// sweep's, so a clock stepping back cannot revive an entry the sweep
// already took out of the index and off the disk.
func (s *Store) deadline(now time.Time) int64 {
	return max(s.cutoff(now), s.sweptExp)
}

// deadAt is deadline as an instant, for normalize: an expires_at at or
// before it is refused. Not rounded to the second as deadline is: with no
// grace period, an expires_at earlier in the current second has passed.
func (s *Store) deadAt(now time.Time) time.Time {
	dead := now.Add(-s.Grace())
	if swept := time.Unix(s.sweptExp, 0); swept.After(dead) {
		dead = swept
	}
	return dead
}

// reconcile runs after a failed commit. Badger may still have applied the
// write (a failed sync after the memtable took it), and then it serves the
// entry: fix, called with the index locked and the record Badger now
// shows for id (nil: none), makes the index agree. If even that cannot be
// read, Revoked fails closed from now on.
func (s *Store) reconcile(id *[idLen]byte, cause error, fix func(stored *record)) error {
	var stored *record
	err := s.db.View(func(txn *badger.Txn) error {
		r, ok, err := lookup(txn, id)
		if ok {
			stored = &r
		}
		return err
	})
	if err != nil {
		s.mu.Lock()
		if s.err == nil {
			s.err = fmt.Errorf("revocation index out of step with storage: %w", cause)
		}
		s.mu.Unlock()
		s.log.Error("revocation store cannot answer until restarted", zap.Error(cause), zap.NamedError("reread", err))
		return cause
	}
	s.mu.Lock()
	fix(stored)
	s.mu.Unlock()
	return cause
}

// extend answers an Add of an entry that is already stored and live: its
// expiry becomes the later of the two, none being later than any, so
// posting a revocation again never shortens it and extending it leaves no
// gap. The other fields stay as stored. The caller holds the ID's stripe
// and wmu shared.
func (s *Store) extend(txn *badger.Txn, old *record, id *[idLen]byte, want *time.Time, journal Journal, extra func(Writer) error) (Entry, bool, error) {
	e := old.entry(idString(id))
	var exp int64
	if want != nil {
		exp = want.Unix()
	}
	if old.expires == 0 || (exp != 0 && exp <= old.expires) {
		return e, false, commitExtra(txn, extra)
	}
	e.ExpiresAt = nil
	if exp != 0 {
		t := time.Unix(exp, 0).UTC()
		e.ExpiresAt = &t
	}
	val := encodeValue(&e)
	rec, err := decodeValue(val)
	if err == nil {
		err = txn.Delete(expiryKey(old.expires, id))
	}
	if err == nil {
		err = setAll(txn, &rec, val, id)
	}
	if err == nil {
		err = journalChange(txn, journal, extra, &Change{Entry: e})
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("extending revocation %s: %w", e.ID, err)
	}
	from, to := s.ix.refOf(old), s.ix.refOf(&rec)
	if err := txn.Commit(); err != nil {
		return Entry{}, false, s.reconcile(id, fmt.Errorf("extending revocation %s: %w", e.ID, err), func(r *record) {
			if r != nil && r.created == rec.created && r.expires == rec.expires {
				s.ix.remove(from)
				s.ix.add(to)
			}
		})
	}
	s.mu.Lock()
	s.ix.remove(from)
	s.ix.add(to)
	s.mu.Unlock()
	committed(journal)
	return e, false, nil
}

// lookup reads an entry by ID inside txn.
func lookup(txn *badger.Txn, id *[idLen]byte) (record, bool, error) {
	c, err := getValue(txn, idKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	if len(c) != 8 {
		return record{}, false, errCorrupt
	}
	val, err := getValue(txn, entryKey(int64(binary.BigEndian.Uint64(c)), id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return record{}, false, nil // expired between the two reads
	}
	if err != nil {
		return record{}, false, err
	}
	r, err := decodeValue(val)
	return r, err == nil, err
}

func getValue(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// setAll writes every key of an entry. None carries a Badger TTL: how long
// an entry outlives its expiry depends on the grace period, which can grow
// after the entry was written, so the sweep deletes it.
func setAll(txn entrySetter, r *record, val []byte, id *[idLen]byte) error {
	var created [8]byte
	binary.BigEndian.PutUint64(created[:], uint64(r.created))
	for _, kv := range [][2][]byte{
		{entryKey(r.created, id), val},
		{idKey(id), created[:]},
		{kindKey(kindCode(r.kind), r.created, id), nil},
	} {
		if err := txn.SetEntry(badger.NewEntry(kv[0], kv[1])); err != nil {
			return err
		}
	}
	if r.expires != 0 {
		return txn.SetEntry(badger.NewEntry(expiryKey(r.expires, id), val))
	}
	return nil
}

// entrySetter is a transaction or, for bulk loads, a write batch.
type entrySetter interface {
	SetEntry(*badger.Entry) error
}

// deleteAll deletes an entry's keys; the x/ key only with withExpiry (see
// the key layout in keys.go for why a replaced entry keeps it).
func deleteAll(txn *badger.Txn, r *record, id *[idLen]byte, withExpiry bool) error {
	keys := [][]byte{entryKey(r.created, id), idKey(id), kindKey(kindCode(r.kind), r.created, id)}
	if withExpiry && r.expires != 0 {
		keys = append(keys, expiryKey(r.expires, id))
	}
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// idString is an ID's public form (see entryID).
func idString(id *[idLen]byte) string {
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// sweepBatch bounds one sweep transaction, well under Badger's batch limit.
const sweepBatch = 1000

// sweep takes entries that have expired, grace period included, out of
// the index and off the disk.
func (s *Store) sweep() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	return s.sweepLocked(s.cutoff(s.clock()), true)
}

// sweepLocked deletes the entries whose expires_at is at or before cut
// (their x/ key, and their other keys unless the ID was stored again
// since) and, with inIndex, takes them out of the index. Caller holds wmu.
func (s *Store) sweepLocked(cut int64, inIndex bool) error {
	cut = max(cut, s.sweptExp)
	end := expiryKey(cut+1, &[idLen]byte{})
	for {
		var (
			keys [][]byte
			recs []*record // recs[i] is keys[i]'s entry; nil if corrupt
			refs []ref
		)
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(expiryPrefix)})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < sweepBatch; it.Next() {
				item := it.Item()
				if bytes.Compare(item.Key(), end) >= 0 {
					break
				}
				v, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				keys = append(keys, item.KeyCopy(nil))
				r, err := decodeValue(v)
				if err != nil {
					// Drop the key anyway: the entry matches nothing by now.
					s.log.Error("skipping corrupt expiry record", zap.Binary("key", item.Key()), zap.Error(err))
					recs = append(recs, nil)
					continue
				}
				recs = append(recs, &r)
				if inIndex {
					refs = append(refs, s.ix.refOf(&r))
				}
			}
			return nil
		})
		if err == nil && len(keys) > 0 {
			err = s.db.Update(func(txn *badger.Txn) error {
				for i, k := range keys {
					if err := txn.Delete(k); err != nil {
						return err
					}
					if recs[i] != nil {
						if err := deleteSwept(txn, recs[i], k[len(expiryPrefix)+8:]); err != nil {
							return err
						}
					}
				}
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("sweeping expired revocations: %w", err)
		}
		if len(refs) > 0 {
			s.mu.Lock()
			for _, x := range refs {
				s.ix.remove(x)
			}
			s.mu.Unlock()
		}
		if len(keys) < sweepBatch {
			break
		}
	}
	s.sweptExp = cut
	return nil
}

// deleteSwept deletes the keys of an expired entry. Its e/ and k/ keys are
// its own (they carry its created time); the i/ key is shared by every copy
// of the ID, and goes only if it still points at this copy.
func deleteSwept(txn *badger.Txn, r *record, rawID []byte) error {
	var id [idLen]byte
	copy(id[:], rawID)
	for _, k := range [][]byte{entryKey(r.created, &id), kindKey(kindCode(r.kind), r.created, &id)} {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	c, err := getValue(txn, idKey(&id))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil
	case err != nil:
		return err
	case len(c) == 8 && int64(binary.BigEndian.Uint64(c)) == r.created:
		return txn.Delete(idKey(&id))
	}
	return nil
}

func (s *Store) background(gcEvery, sweepEvery time.Duration, gc bool) {
	defer s.wg.Done()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	var gcC <-chan time.Time
	if gc {
		t := time.NewTicker(gcEvery)
		defer t.Stop()
		gcC = t.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-sweep.C:
			if err := s.sweep(); err != nil {
				s.log.Error("revocation sweep failed", zap.Error(err))
			}
		case <-gcC:
			s.runGC()
		}
	}
}

// runGC rewrites value-log files while at least half of one is garbage,
// as Badger recommends, stopping early if the store is closing.
func (s *Store) runGC() {
	for range 16 {
		select {
		case <-s.stop:
			return
		default:
		}
		err := s.db.RunValueLogGC(0.5)
		if err == nil {
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			s.log.Warn("badger value log GC failed", zap.Error(err))
		}
		return
	}
}

// badgerLogger sends Badger's log lines to zap. Badger's info lines (table
// counts at open, level summaries at close) are routine in a web server's
// log, so they go out at debug level.
type badgerLogger struct{ l *zap.SugaredLogger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Errorf(strings.TrimRight(f, "\n"), a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warnf(strings.TrimRight(f, "\n"), a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debugf(strings.TrimRight(f, "\n"), a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Debugf(strings.TrimRight(f, "\n"), a...) }

// Interface guards
var _ badger.Logger = badgerLogger{}
