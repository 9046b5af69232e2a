package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Options configure NewRedis. Zero values take the defaults.
type Options struct {
	// URLs of the Redis server (one) or of Redis Cluster nodes (several):
	// redis:// or rediss:// (TLS), with user, password and, for one
	// server, the database number; unix:// for a socket. With a
	// master_name parameter, they are Sentinels' (see universalOptions).
	URLs []string
	// Prefix of every Redis key, used as a hash tag ({prefix}:log, ...).
	// Clusters with different prefixes share a Redis without seeing each
	// other's entries. Default "jwtguard".
	Prefix string
	// Node is this node's name in the log and in Status (DefaultNode).
	// Required.
	Node string
	// MaxLen is how many changes the log keeps; a node further behind
	// loads the snapshot of live entries instead. From 1000 on, trimming
	// is approximate (cheaper for Redis). Default 1,000,000.
	MaxLen int64
	// Logger receives the engine's log lines. Default: none.
	Logger *zap.Logger

	// Timeout bounds every call to Redis (dial, read, write). Default 1s.
	Timeout time.Duration
	// Block is how long a read of the log waits for new changes. Default 1s.
	Block time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries while Redis
	// fails. Defaults 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// CheckInterval is how often the tailer checks the epoch even when
	// nothing fails. Default 1s.
	CheckInterval time.Duration
}

// Defaults.
const (
	DefaultPrefix      = "jwtguard"
	DefaultMaxLen      = 1_000_000
	DefaultSyncTimeout = 5 * time.Second
)

const (
	readCount     = 1000      // changes read from the log per call
	publishBatch  = 100       // outbox records read per pass
	publishBytes  = 256 << 10 // and their JSON at most about this big: a pass writes each twice in one Badger transaction
	pruneAfter    = 3600      // seconds Redis keeps an expired entry in live and gone (longer than any leeway)
	exactTrimUpTo = 1000      // MaxLen below which trimming is exact
)

// ErrNotSynced is returned by Sync when the timeout passed before the node
// caught up.
var ErrNotSynced = errors.New("cluster: not caught up yet")

var errNotStarted = errors.New("cluster journal used before the engine was started on the store")

// Redis is the Redis Streams engine.
type Redis struct {
	opts   Options
	log    *zap.Logger
	client redis.UniversalClient
	keys   []string // the script's KEYS, in publishScript's order

	// Set by Start.
	store  Store
	db     *badger.DB
	origin string
	seq    atomic.Uint64 // last seq given out by Append
	ready  atomic.Bool   // seq loaded: Append may run

	pub       atomic.Uint64 // last publish number given out
	pubSeq    uint64        // highest seq published (publisher only)
	pending   atomic.Int64
	applied   atomic.Uint64
	snapshots atomic.Int64 // snapshots loaded (tests)
	connected atomic.Bool

	mu      sync.Mutex
	pos     position // tailer's position (tailer writes, Status reads)
	lagFrom int64    // unix ms of the oldest change read and not yet applied; 0 when caught up
	lastErr error    // the last failure, for Sync's error

	epoch   atomic.Pointer[string] // the epoch this node synced with; nil until the first check
	pubWake chan struct{}          // a change was committed
	pubKick chan struct{}          // the tailer synced the epoch or saw Redis back
	synced  chan struct{}
	syncOne sync.Once

	holdPublish atomic.Bool // tests: keep changes in the outbox
	pruneAfter  int64       // pruneAfter; tests change it

	ctx       context.Context // of the goroutines, cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	started   bool
}

var _ Engine = (*Redis)(nil)

// NewRedis checks the options and makes the client; it connects to nothing
// before Start.
func NewRedis(o Options) (*Redis, error) {
	if o.Node == "" {
		return nil, errors.New("cluster: no node name")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return nil, fmt.Errorf("cluster: prefix %q contains { or }, which would break its hash tag", o.Prefix)
	}
	if o.MaxLen <= 0 {
		o.MaxLen = DefaultMaxLen
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Timeout, time.Second)
	def(&o.Block, time.Second)
	def(&o.MinBackoff, 100*time.Millisecond)
	def(&o.MaxBackoff, 5*time.Second)
	def(&o.CheckInterval, time.Second)
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	uo, err := universalOptions(o.URLs)
	if err != nil {
		return nil, err
	}
	uo.DialTimeout, uo.ReadTimeout, uo.WriteTimeout = o.Timeout, o.Timeout, o.Timeout
	uo.ContextTimeoutEnabled = true
	uo.MaxRetries = -1 // the loops retry, with backoff and in order
	uo.Protocol = 2    // RESP2: Redis 5 has no HELLO
	uo.DisableIdentity = true
	uo.DialerRetries = 1 // the loops retry, with backoff
	uo.PoolSize = 8      // blocked readers (the log, two channels), publishers, checks
	r := &Redis{
		opts:       o,
		log:        o.Logger,
		client:     redis.NewUniversalClient(uo),
		pubWake:    make(chan struct{}, 1),
		pubKick:    make(chan struct{}, 1),
		synced:     make(chan struct{}),
		pruneAfter: pruneAfter,
	}
	for _, name := range keyNames {
		r.keys = append(r.keys, r.key(name))
	}
	return r, nil
}

// key is the Redis key name under the cluster's hash tag: {prefix}:name,
// so that every key of a prefix is in one Redis Cluster slot.
func (r *Redis) key(name string) string { return "{" + r.opts.Prefix + "}:" + name }

// universalOptions turns one URL (a server) or several (Redis Cluster
// nodes, which must agree on credentials and TLS) into client options. URLs
// with a master_name parameter name Sentinels instead (go-redis's failover
// URL: the user and password in the URL are the Sentinels', the username
// and password parameters the master's).
func universalOptions(urls []string) (*redis.UniversalOptions, error) {
	if len(urls) == 0 {
		return nil, errors.New("cluster: no Redis URL")
	}
	if u, err := url.Parse(urls[0]); err == nil && u.Query().Has("master_name") {
		return sentinelOptions(urls)
	}
	var uo redis.UniversalOptions
	for i, u := range urls {
		o, err := redis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("cluster: Redis URL %d: %w", i+1, err)
		}
		if i == 0 {
			uo = redis.UniversalOptions{Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig}
		} else if o.Username != uo.Username || o.Password != uo.Password || (o.TLSConfig == nil) != (uo.TLSConfig == nil) {
			return nil, fmt.Errorf("cluster: Redis URL %d: every node of a Redis Cluster needs the same user, password and scheme", i+1)
		}
		uo.Addrs = append(uo.Addrs, o.Addr)
		if len(urls) > 1 && (o.DB != 0 || o.Network == "unix") {
			return nil, fmt.Errorf("cluster: Redis URL %d: Redis Cluster has no database number and no unix socket", i+1)
		}
	}
	if len(urls) > 1 {
		uo.IsClusterMode = true
		if uo.TLSConfig != nil {
			uo.TLSConfig.ServerName = "" // each node is checked against its own host name
		}
	}
	return &uo, nil
}

func sentinelOptions(urls []string) (*redis.UniversalOptions, error) {
	var uo redis.UniversalOptions
	for i, u := range urls {
		o, err := redis.ParseFailoverURL(u)
		if err != nil {
			return nil, fmt.Errorf("cluster: Redis URL %d: %w", i+1, err)
		}
		if i == 0 {
			uo = redis.UniversalOptions{
				MasterName: o.MasterName, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig,
				SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword,
			}
		} else if o.MasterName != uo.MasterName || o.Username != uo.Username || o.Password != uo.Password || o.DB != uo.DB ||
			o.SentinelUsername != uo.SentinelUsername || o.SentinelPassword != uo.SentinelPassword || (o.TLSConfig == nil) != (uo.TLSConfig == nil) {
			return nil, fmt.Errorf("cluster: Redis URL %d: every Sentinel URL needs the same master_name, database, credentials and scheme", i+1)
		}
		uo.Addrs = append(uo.Addrs, o.SentinelAddrs...)
	}
	if uo.MasterName == "" {
		return nil, errors.New("cluster: master_name is empty")
	}
	if len(uo.Addrs) > 1 && uo.TLSConfig != nil {
		uo.TLSConfig.ServerName = ""
	}
	return &uo, nil
}

// Start loads the engine's records from the store and starts the publisher
// and the tailer. The store must have been opened with this engine as its
// Journal.
func (r *Redis) Start(store Store) error {
	if r.started {
		return errors.New("cluster: engine already started")
	}
	r.started = true
	r.store, r.db = store, store.DB()
	if err := r.load(); err != nil {
		return fmt.Errorf("cluster: reading replication state: %w", err)
	}
	r.ready.Store(true)
	r.log.Info("cluster replication starting", zap.String("node", r.opts.Node), zap.String("prefix", r.opts.Prefix),
		zap.String("origin", r.origin), zap.Int64("pending", r.pending.Load()), zap.String("position", r.pos.ID))
	ctx, cancel := context.WithCancel(context.Background())
	r.ctx, r.cancel = ctx, cancel
	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.publishLoop(ctx) }()
	go func() { defer r.wg.Done(); r.tailLoop(ctx) }()
	return nil
}

// load reads the origin id (making one the first time), the counters and
// the position.
func (r *Redis) load() error {
	return r.db.Update(func(txn *badger.Txn) error {
		get := func(k string) ([]byte, error) {
			it, err := txn.Get([]byte(k))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			return it.ValueCopy(nil)
		}
		v, err := get(originKey)
		if err != nil {
			return err
		}
		if v == nil {
			v = []byte(randomID())
			if err := txn.Set([]byte(originKey), v); err != nil {
				return err
			}
		}
		r.origin = string(v)
		for k, dst := range map[string]*atomic.Uint64{seqKey: &r.seq, pubKey: &r.pub} {
			v, err := get(k)
			if err != nil {
				return err
			}
			if len(v) == 8 {
				dst.Store(u64(v))
			}
		}
		r.pubSeq = r.seq.Load()
		if v, err = get(posKey); err != nil {
			return err
		}
		if v != nil {
			if err := json.Unmarshal(v, &r.pos); err != nil {
				return fmt.Errorf("%s: %w", posKey, err)
			}
		}
		// seq goes on after the last one still in the outbox, and p after
		// the last one given to a record.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(outboxPrefix)})
		defer it.Close()
		var n int64
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			r.seq.Store(max(r.seq.Load(), seqOfOutboxKey(it.Item().Key())))
		}
		r.pending.Store(n)
		return nil
	})
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Sync waits until the tailer has caught up once (see Engine).
func (r *Redis) Sync(ctx context.Context, timeout time.Duration) error {
	if !r.started {
		return errNotStarted
	}
	if timeout <= 0 {
		timeout = DefaultSyncTimeout
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		r.mu.Lock()
		err := r.lastErr
		r.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%w after %s: %w", ErrNotSynced, timeout, err)
		}
		return fmt.Errorf("%w after %s", ErrNotSynced, timeout)
	}
}

// Close stops the goroutines and closes the connections.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		if r.cancel != nil {
			r.cancel()
		}
		// Closing the connections ends a blocked read at once.
		r.closeErr = r.client.Close()
		r.wg.Wait()
	})
	return r.closeErr
}

// Status reports the replication state (see Status).
func (r *Redis) Status() Status {
	r.mu.Lock()
	pos, lagFrom := r.pos, r.lagFrom
	r.mu.Unlock()
	var lag int64
	if lagFrom > 0 {
		lag = max(0, time.Now().UnixMilli()-lagFrom)
	}
	return Status{
		Engine:    "redis",
		Node:      r.opts.Node,
		Connected: r.Connected(),
		Pending:   r.Pending(),
		Applied:   pos.ID,
		LagMS:     lag,
	}
}

// Connected reports whether Redis answered the last call (an error answer
// such as OOM counts: Redis is there; the log says what it refused).
func (r *Redis) Connected() bool { return r.connected.Load() }

// Pending is the number of changes made here and not yet in Redis.
func (r *Redis) Pending() int64 { return max(0, r.pending.Load()) }

// AppliedTotal counts the changes from other nodes applied here.
func (r *Redis) AppliedTotal() uint64 { return r.applied.Load() }

// call runs fn with the per-call deadline and records whether Redis
// answered.
func (r *Redis) call(ctx context.Context, fn func(ctx context.Context) error) error {
	return r.callFor(ctx, r.opts.Timeout, fn)
}

func (r *Redis) callFor(ctx context.Context, d time.Duration, fn func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := fn(cctx)
	r.observe(err)
	return err
}

// observe keeps Connected and the last error up to date. Script and
// protocol errors come from a Redis that answered.
func (r *Redis) observe(err error) {
	var rerr redis.Error
	answered := err == nil || errors.Is(err, redis.Nil) || (errors.As(err, &rerr) && !errors.Is(err, context.DeadlineExceeded))
	if r.connected.Load() != answered { // a store per DPoP request would contend across cores
		r.connected.Store(answered)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
	}
}

// backoff is a doubling wait between retries.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
