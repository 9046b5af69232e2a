package audit

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// fakeClock is the injectable clock. It starts at the real time, so that
// Badger, whose TTLs count in real time, agrees with it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Now().Truncate(time.Second).Add(250 * time.Millisecond)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a revocation store in a directory, with an audit log on its
// database, both reopenable to test what survives a restart.
type env struct {
	t     testing.TB
	dir   string
	opts  Options
	store *revocation.Store
	log   *Log
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	e := &env{t: t, dir: t.TempDir(), opts: opts}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	s, err := revocation.Open(e.dir, revocation.Options{Logger: zap.NewNop()})
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := Open(s.DB(), e.opts)
	if err != nil {
		_ = s.Close()
		e.t.Fatal(err)
	}
	e.store, e.log = s, l
}

func (e *env) close() {
	e.t.Helper()
	if e.log == nil {
		return
	}
	if err := e.log.Close(); err != nil {
		e.t.Errorf("closing audit log: %v", err)
	}
	if err := e.store.Close(); err != nil {
		e.t.Errorf("closing store: %v", err)
	}
	e.log, e.store = nil, nil
}

func (e *env) restart() {
	e.t.Helper()
	e.close()
	e.open()
}

func (e *env) db() *badger.DB { return e.store.DB() }

// rawGet reads a key straight from Badger: found, and its ExpiresAt.
func rawGet(t testing.TB, db *badger.DB, key []byte) (bool, uint64) {
	t.Helper()
	var (
		found bool
		exp   uint64
	)
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found, exp = true, item.ExpiresAt()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found, exp
}

// rawKeys lists the keys under prefix with their ExpiresAt.
func rawKeys(t testing.TB, db *badger.DB, prefix string) map[string]uint64 {
	t.Helper()
	out := make(map[string]uint64)
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out[string(it.Item().KeyCopy(nil))] = it.Item().ExpiresAt()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
