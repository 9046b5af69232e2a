package jwtguard

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/jwtguard/caddy-jwtguard/audit"
	"github.com/jwtguard/caddy-jwtguard/cluster"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

func init() {
	caddy.RegisterModule(App{})
	httpcaddyfile.RegisterGlobalOption("jwtguard", parseGlobalOption)
}

// stores holds one open revocation store per directory, shared by every
// config that uses it: Caddy starts a new config before it stops the old
// one, and Badger allows one opener per directory.
var stores = caddy.NewUsagePool()

// running lists the apps started and not yet stopped, newest last: the
// admin API, which Caddy rebuilds on every load and never cleans up, uses
// the newest. During a reload the new app starts before the old one stops;
// when a reload fails after the new app started, Caddy stops the new one
// and the old config goes on serving, so the old app is current again.
var running struct {
	sync.Mutex
	apps   []*App
	newest atomic.Pointer[App] // the last of apps, read without the lock
}

// setRunning replaces the running apps; the caller holds running's lock.
func setRunning(apps []*App) {
	running.apps = apps
	var newest *App
	if n := len(apps); n > 0 {
		newest = apps[n-1]
	}
	running.newest.Store(newest)
}

// currentApp returns the app of the running config, or nil. DPoP
// handlers without an app of their own ask on every request.
func currentApp() *App { return running.newest.Load() }

// App owns jwtguard's revocation store: one Badger database per
// directory, opened when the app starts (not in Provision, so that `caddy
// validate` works beside a running server) and kept open across config
// reloads.
type App struct {
	// Where the revocation list is stored. Default: the jwtguard folder
	// in Caddy's data directory.
	StorageDir string `json:"storage_dir,omitempty"`

	// How long usage records and detection events are kept: events from
	// when they happened, usage from the token's last use. Default: 168h.
	History caddy.Duration `json:"history,omitempty"`

	// Replicate the revocation list to the other nodes of a cluster.
	// Default: none, this node alone.
	Cluster *Cluster `json:"cluster,omitempty"`

	dir     string
	logger  *zap.Logger
	hold    *hold
	started chan struct{} // closed by markRunning; under running's lock
}

// hold is this config's claim on a store in the pool.
type hold struct {
	mu       sync.Mutex
	acquired bool
	cleaned  bool
	store    atomic.Pointer[revocation.Store]
	audit    atomic.Pointer[audit.Log] // set before store
	opened   atomic.Pointer[openStore] // set before store
	webhooks []string                  // URLs of this config's detect webhooks, under mu
	releases []func()                  // of the deliverers Start took, under mu
	grace    atomic.Int64              // the largest leeway of this config's handlers, in nanoseconds
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "jwtguard",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision resolves the storage directory; it opens nothing.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	dir := a.StorageDir
	if dir == "" {
		dir = filepath.Join(caddy.AppDataDir(), "jwtguard")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("storage_dir %s: %v", dir, err)
	}
	a.dir = abs
	a.hold = new(hold)
	return register(ctx.GetMetricsRegistry(), revocationsCollector{a})
}

// Start opens the store, or takes the one a previous config left open.
func (a *App) Start() error {
	if _, err := a.Store(); err != nil {
		return err
	}
	// Webhook deliverers run from the database, one per URL: taken here
	// before the previous config lets go in its Stop, so delivery goes on
	// across a reload.
	a.hold.mu.Lock()
	hooks := slices.Clone(a.hold.webhooks)
	a.hold.mu.Unlock()
	if len(hooks) > 0 {
		log, err := a.Audit()
		if err != nil {
			return err
		}
		a.hold.mu.Lock()
		for _, u := range hooks {
			a.hold.releases = append(a.hold.releases, log.Webhook(u, audit.WebhookOptions{}))
		}
		a.hold.mu.Unlock()
	}
	a.markRunning()
	return nil
}

// markRunning makes a the current app and wakes what waits for it to start.
func (a *App) markRunning() {
	running.Lock()
	defer running.Unlock()
	setRunning(append(running.apps, a))
	if a.started == nil {
		a.started = make(chan struct{})
	}
	select {
	case <-a.started: // started before: Caddy does not, but a test may
	default:
		close(a.started)
	}
}

// leaveRunning undoes markRunning.
func (a *App) leaveRunning() {
	running.Lock()
	defer running.Unlock()
	setRunning(slices.DeleteFunc(running.apps, func(x *App) bool { return x == a }))
}

// whenStarted is closed once a has started; `caddy validate` provisions
// apps it never starts.
func (a *App) whenStarted() <-chan struct{} {
	running.Lock()
	defer running.Unlock()
	if a.started == nil {
		a.started = make(chan struct{})
	}
	return a.started
}

// Stop hands the admin API over to the config that is running now (the
// next one, or after a failed reload the previous one); the store stays
// held until Cleanup, since requests already in this config's handlers may
// still be checking it.
func (a *App) Stop() error {
	a.leaveRunning()
	a.hold.mu.Lock()
	for _, release := range a.hold.releases {
		release()
	}
	a.hold.releases = nil
	a.hold.mu.Unlock()
	return nil
}

// useWebhook tells the app that one of its handlers posts detection events
// to u.
func (a *App) useWebhook(u string) {
	a.hold.mu.Lock()
	defer a.hold.mu.Unlock()
	if !slices.Contains(a.hold.webhooks, u) {
		a.hold.webhooks = append(a.hold.webhooks, u)
	}
}

// useLeeway tells the app that one of its handlers accepts tokens up to d
// past their exp: revocations must hold that long past it too.
func (a *App) useLeeway(d time.Duration) {
	for {
		old := a.hold.grace.Load()
		if int64(d) <= old || a.hold.grace.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// Cleanup releases this config's hold on the store; the last holder closes
// it. It also runs after a failed Provision or Start. The pointer stays:
// requests still running in this config's handlers keep using the store
// the next config holds open, and a closed store answers with an error,
// which fails them closed.
func (a *App) Cleanup() error {
	h := a.hold
	if h == nil { // Provision failed early
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleaned = true
	if !h.acquired {
		return nil
	}
	h.acquired = false
	_, err := stores.Delete(a.dir)
	return err
}

// Store returns the open store, acquiring it on first use. Handlers of a
// config that is starting may see requests before this app's Start has
// run (Caddy starts apps in no fixed order), and must not fail those
// requests during a reload.
func (a *App) Store() (*revocation.Store, error) {
	h := a.hold
	if s := h.store.Load(); s != nil {
		return s, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.store.Load(); s != nil {
		return s, nil
	}
	if h.cleaned {
		return nil, errNoStore
	}
	grace := time.Duration(a.hold.grace.Load())
	val, _, err := stores.LoadOrNew(a.dir, func() (caddy.Destructor, error) { return a.open(grace) })
	if err != nil {
		return nil, fmt.Errorf("opening revocation store in %s: %w", a.dir, err)
	}
	open := val.(*openStore)
	if !reflect.DeepEqual(open.cluster, a.Cluster) {
		// The store stays open across reloads, and with it its cluster
		// engine: running on with other settings than the config says
		// would be a node quietly out of its cluster.
		_, _ = stores.Delete(a.dir)
		return nil, errors.New("the cluster settings differ from those the revocation store was opened with; changing them needs a restart of Caddy")
	}
	open.SetGrace(grace) // a store a previous config opened: raise it to this config's leeway
	h.acquired = true
	h.audit.Store(open.log)
	h.opened.Store(open)
	h.store.Store(open.Store)
	return open.Store, nil
}

// open opens the store, its replication engine (with a cluster) and its
// audit log, and with a cluster waits (at most sync_timeout) until the
// node has caught up, so that its first request already refuses what was
// revoked while it was down.
func (a *App) open(grace time.Duration) (*openStore, error) {
	o := &openStore{cluster: a.Cluster}
	opts := revocation.Options{Logger: a.logger.Named("store"), Grace: grace}
	if c := a.Cluster; c != nil {
		node := c.Node
		if node == "" {
			node = cluster.DefaultNode(a.dir)
		}
		eng, err := cluster.NewRedis(cluster.Options{URLs: c.URLs, Prefix: c.Prefix, Node: node, Logger: a.logger.Named("cluster")})
		if err != nil {
			return nil, fmt.Errorf("cluster: %v", err)
		}
		o.engine, opts.Journal = eng, eng
	}
	s, err := revocation.Open(a.dir, opts)
	if err != nil {
		if o.engine != nil {
			_ = o.engine.Close()
		}
		return nil, err
	}
	o.Store = s
	if o.engine != nil {
		if err := o.engine.Start(s); err != nil {
			_ = o.engine.Close()
			_ = s.Close()
			return nil, fmt.Errorf("cluster: %v", err)
		}
		// Sync takes a zero timeout as cluster.DefaultSyncTimeout, and
		// its error says how long it waited.
		if err := o.engine.Sync(context.Background(), time.Duration(a.Cluster.SyncTimeout)); err != nil {
			a.logger.Warn("serving before catching up with the cluster; catching up goes on", zap.Error(err))
		}
	}
	log, err := audit.Open(s.DB(), audit.Options{History: time.Duration(a.History), Logger: a.logger.Named("audit"), Share: o.engine != nil})
	if err != nil {
		_ = o.Destruct()
		return nil, err
	}
	o.log = log
	if o.engine != nil {
		// Detection events and sightings, beside the list (share.go).
		if o.share, err = startShare(a.dir, o.engine, log, a.logger.Named("cluster")); err != nil {
			_ = o.Destruct()
			return nil, fmt.Errorf("cluster: %v", err)
		}
	}
	a.logger.Info("revocation store opened", zap.String("dir", a.dir), zap.Bool("cluster", o.engine != nil))
	return o, nil
}

// Audit returns the usage and events log kept beside the revocation list,
// opening both on first use.
func (a *App) Audit() (*audit.Log, error) {
	if log := a.hold.audit.Load(); log != nil {
		return log, nil
	}
	if _, err := a.Store(); err != nil {
		return nil, err
	}
	if log := a.hold.audit.Load(); log != nil {
		return log, nil
	}
	return nil, errNoAudit
}

// openStore lets the usage pool close the store, and the audit log kept in
// it, when its last user goes.
type openStore struct {
	*revocation.Store
	log     *audit.Log     // nil until open
	engine  cluster.Engine // nil without a cluster
	share   *share         // nil without a cluster
	cluster *Cluster       // the settings it was opened with
}

func (s *openStore) Destruct() error {
	var errs []error
	if s.log != nil {
		errs = append(errs, s.log.Close())
	}
	if s.engine != nil { // before the store: it reads and writes it
		errs = append(errs, s.engine.Close())
	}
	return errors.Join(append(errs, s.Close())...)
}

// engine returns the replication engine of the open store, or nil when
// there is none (no cluster, or nothing open yet).
func (a *App) engine() cluster.Engine {
	if o := a.hold.opened.Load(); o != nil {
		return o.engine
	}
	return nil
}

// revocationsCollector reports caddy_jwtguard_revocations{kind}, the live
// entries of the store, read when Prometheus scrapes.
type revocationsCollector struct{ app *App }

var revocationsDesc = prometheus.NewDesc("caddy_jwtguard_revocations",
	"Live entries in the revocation list, by kind.", []string{"kind"}, nil)

func (c revocationsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- revocationsDesc }

func (c revocationsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.app.hold.store.Load()
	if s == nil {
		return
	}
	counts := s.Counts()
	for _, k := range revocation.Kinds {
		ch <- prometheus.MustNewConstMetric(revocationsDesc, prometheus.GaugeValue, float64(counts[k]), string(k))
	}
}

// Cluster is how the revocation list reaches the other nodes.
type Cluster struct {
	// The engine; "redis" (Redis 5 or newer, Streams).
	Engine string `json:"engine"`
	// One Redis URL (redis://, rediss:// or unix://), or several for
	// Redis Cluster.
	URLs []string `json:"urls"`
	// The key prefix in Redis, so that clusters can share one Redis.
	// Default: jwtguard.
	Prefix string `json:"prefix,omitempty"`
	// How long start-up waits to catch up before handlers answer.
	// Default: 5s.
	SyncTimeout caddy.Duration `json:"sync_timeout,omitempty"`
	// This node's name in status and events. Default: the host name and
	// the storage directory.
	Node string `json:"node,omitempty"`
}

// parseGlobalOption sets up the app from the global options block:
//
//	jwtguard {
//		storage_dir <path>
//		history <duration>
//		cluster redis <url...> {
//			prefix <name>
//			sync_timeout <duration>
//			node <name>
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	var app App
	d.Next() // the option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "storage_dir":
			if app.StorageDir != "" {
				return nil, d.Err("storage_dir: repeated")
			}
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			app.StorageDir = d.Val()
			if d.NextArg() {
				return nil, d.ArgErr()
			}
		case "history":
			if app.History != 0 {
				return nil, d.Err("history: repeated")
			}
			args := d.RemainingArgs()
			if len(args) != 1 {
				return nil, d.Errf("history: want one duration, got %d values", len(args))
			}
			dur, err := caddy.ParseDuration(args[0])
			if err != nil || dur <= 0 {
				return nil, d.Errf("history: %q is not a duration of more than zero (e.g. 168h)", args[0])
			}
			app.History = caddy.Duration(dur)
		case "cluster":
			if app.Cluster != nil {
				return nil, d.Err("cluster: repeated")
			}
			c, err := parseCluster(d)
			if err != nil {
				return nil, err
			}
			app.Cluster = c
		default:
			return nil, d.Errf("unrecognized subdirective %s", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "jwtguard", Value: caddyconfig.JSON(app, nil)}, nil
}

// parseCluster reads `cluster redis <url...> { ... }`.
func parseCluster(d *caddyfile.Dispenser) (*Cluster, error) {
	args := d.RemainingArgs()
	if len(args) == 0 || args[0] != "redis" {
		return nil, d.Err("cluster: want cluster redis <url...>: redis is the one engine")
	}
	if len(args) < 2 {
		return nil, d.Err("cluster redis: at least one Redis URL, e.g. redis://10.0.0.5:6379/0")
	}
	c := &Cluster{Engine: args[0], URLs: args[1:]}
	for _, u := range c.URLs {
		if err := checkRedisURL(u); err != nil {
			return nil, d.Errf("cluster redis: %v", err)
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		args := d.RemainingArgs()
		if len(args) != 1 {
			return nil, d.Errf("cluster: %s: want one value, got %d", sub, len(args))
		}
		switch sub {
		case "prefix":
			if c.Prefix != "" {
				return nil, d.Err("cluster: prefix: repeated")
			}
			if strings.ContainsAny(args[0], "{}: \t") {
				return nil, d.Errf("cluster: prefix %q: no braces, colons or spaces (it becomes a Redis hash tag)", args[0])
			}
			c.Prefix = args[0]
		case "sync_timeout":
			if c.SyncTimeout != 0 {
				return nil, d.Err("cluster: sync_timeout: repeated")
			}
			dur, err := caddy.ParseDuration(args[0])
			if err != nil || dur <= 0 {
				return nil, d.Errf("cluster: sync_timeout %q: want a duration of more than zero (e.g. 5s)", args[0])
			}
			c.SyncTimeout = caddy.Duration(dur)
		case "node":
			if c.Node != "" {
				return nil, d.Err("cluster: node: repeated")
			}
			c.Node = args[0]
		default:
			return nil, d.Errf("cluster: unrecognized subdirective %s", sub)
		}
	}
	return c, nil
}

// checkRedisURL says what is wrong with a Redis URL before Caddy starts.
func checkRedisURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", s, err)
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return fmt.Errorf("%q has no host", s)
		}
	case "unix":
		if u.Path == "" {
			return fmt.Errorf("%q has no socket path", s)
		}
	default:
		return fmt.Errorf("%q: want a redis://, rediss:// or unix:// URL", s)
	}
	return nil
}

var (
	errNoStore = errors.New("the revocation list is closed: this config has been unloaded")
	errNoAudit = errors.New("no usage and events log is open")
)

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
