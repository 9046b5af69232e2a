// Package audit keeps what jwtguard's stolen-token detection saw: the events
// its rules fired (SPEC "Events"), a usage record per token (SPEC "Usage"),
// and the delivery of events to webhooks. Everything lives in the revocation
// store's Badger database under prefixes of its own (see keys.go) and leaves
// it by Badger TTL once History has passed. It imports nothing from Caddy.
//
// The request path (Use, and Record without durable) does no I/O: usage is
// counted in memory and flushed by a background goroutine, events are
// queued for a background writer.
package audit

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// Defaults for Options.
const (
	DefaultHistory       = 168 * time.Hour
	DefaultFlushInterval = 10 * time.Second
	DefaultMaxPending    = 100_000
	DefaultMaxQueue      = 10_000
)

// Options configure Open.
type Options struct {
	// History is how long events (from their time) and usage records (from
	// the token's last use) are kept. Rounded up to the second. Default
	// DefaultHistory.
	History time.Duration
	// Logger receives the log's own errors and warnings. Default: none.
	Logger *zap.Logger
	// Now is the clock for event times and usage. Default time.Now.
	Now func() time.Time
	// FlushInterval is the longest usage stays in memory only. Default
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// MaxPending bounds the (token, client IP, User-Agent) pairs counted in
	// memory and not flushed yet. Reaching it starts a flush at once; at
	// twice as many, new tokens and pairs are dropped (counted, and logged
	// by the flusher) until the flush has made room. Default
	// DefaultMaxPending.
	MaxPending int
	// MaxQueue bounds the events waiting for the disk that were recorded
	// without durable. Past it Record drops the event and returns
	// ErrQueueFull. Default DefaultMaxQueue.
	MaxQueue int

	// Share keeps what a cluster needs to share events between nodes:
	// an index of event ids, for Import, and of the events recorded here,
	// for ShareEvents.
	Share bool

	// beforeCommit, for tests, runs in the event writer before each
	// commit.
	beforeCommit func()
}

var (
	// ErrClosed is returned by a closed Log.
	ErrClosed = errors.New("audit log is closed")
	// ErrInUse is returned by Open when the database already has an open
	// Log: two would race on the usage records and on event positions.
	ErrInUse = errors.New("the database already has an open audit log")
	// ErrInvalidCursor is returned by Events for a cursor it did not hand
	// out; the admin API answers 400.
	ErrInvalidCursor = errors.New("cursor is not one this server handed out")
	// ErrQueueFull is returned by Record when an event recorded without
	// durable found the queue full and was dropped.
	ErrQueueFull = errors.New("event queue is full: event dropped")
)

// Log is the audit log of one database. Its methods are safe for
// concurrent use.
type Log struct {
	db      *badger.DB
	log     *zap.Logger
	clock   func() time.Time
	history int64 // seconds

	events       eventQueue
	beforeCommit func()
	share        bool
	shareWake    chan struct{} // an event recorded here was committed
	shareStarted atomic.Bool
	importMu     sync.Mutex // one Import at a time: each reads the ids before it writes

	seed    maphash.Seed
	shards  [numShards]shard
	pending atomic.Int64 // pairs in shards and retry
	softCap int64
	hardCap int64
	// useDropped counts uses that found no room (see MaxPending).
	useDropped atomic.Uint64
	useClosed  atomic.Bool
	// flushMu is held by a flush from the swap of the shards until the
	// write is done, and by readers, so that disk plus memory counts every
	// use exactly once.
	flushMu sync.Mutex
	retry   []*pendingToken // written by no flush yet because one failed; under flushMu
	early   chan struct{}

	hooks hookSet

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// openDBs holds the databases with an open Log (see ErrInUse).
var openDBs struct {
	sync.Mutex
	m map[*badger.DB]bool
}

// Open starts the audit log on db: its event writer and usage flusher run
// until Close, which must be called before db is closed. One Log per
// database at a time: it is meant to live as long as the store, across
// config reloads.
func Open(db *badger.DB, opts Options) (*Log, error) {
	if db == nil {
		return nil, errors.New("opening audit log: no database")
	}
	l := &Log{
		db:      db,
		log:     opts.Logger,
		clock:   opts.Now,
		history: int64((orDefault(opts.History, DefaultHistory) + time.Second - 1) / time.Second),
		seed:    maphash.MakeSeed(),
		softCap: int64(orDefault(opts.MaxPending, DefaultMaxPending)),
		early:   make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	l.hardCap = 2 * l.softCap
	if l.log == nil {
		l.log = zap.NewNop()
	}
	if l.clock == nil {
		l.clock = time.Now
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]*pendingToken)
	}
	l.events.init(orDefault(opts.MaxQueue, DefaultMaxQueue))
	l.beforeCommit = opts.beforeCommit
	l.share = opts.Share
	l.shareWake = make(chan struct{}, 1)
	l.hooks.init()

	openDBs.Lock()
	defer openDBs.Unlock()
	if openDBs.m[db] {
		return nil, ErrInUse
	}
	last, err := lastEventPos(db)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	l.events.lastPos = last
	if openDBs.m == nil {
		openDBs.m = make(map[*badger.DB]bool)
	}
	openDBs.m[db] = true

	l.wg.Add(2)
	go l.writeEvents()
	go l.flushUsage(orDefault(opts.FlushInterval, DefaultFlushInterval))
	return l, nil
}

// Close stops webhook delivery, writes the queued events and the pending
// usage, and stops the background goroutines. Later calls return the
// first call's result.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		// Deliverers first: they read the log. An event they were posting
		// stays undelivered and is posted again after a restart.
		l.hooks.closeAll()
		l.events.close()
		l.useClosed.Store(true)
		close(l.stop)
		l.wg.Wait()
		if err := l.Flush(); err != nil {
			l.closeErr = fmt.Errorf("closing audit log: %w", err)
		}
		openDBs.Lock()
		delete(openDBs.m, l.db)
		openDBs.Unlock()
	})
	return l.closeErr
}

// expiry is the Badger ExpiresAt of a record whose clock starts at unix.
func (l *Log) expiry(unix int64) uint64 {
	return uint64(max(unix+l.history, 1))
}

func orDefault[T time.Duration | int](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// commitAll writes entries in as few transactions as Badger allows. Each
// commit is synced; entries are committed in order.
func commitAll(db *badger.DB, entries []*badger.Entry) error {
	txn := db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, e := range entries {
		err := txn.SetEntry(e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err = txn.Commit(); err != nil {
				return err
			}
			txn = db.NewTransaction(true)
			err = txn.SetEntry(e)
		}
		if err != nil {
			return err
		}
	}
	return txn.Commit()
}
