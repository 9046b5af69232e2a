// Package jwks keeps the keys of a remote JWK Set, found directly or through
// OpenID discovery, up to date, and serves them to the verifier as a
// verifier.KeySet.
//
// Refresh policy:
//   - In the background every Options.Refresh (default 10 minutes), shortened
//     to the JWK Set response's Cache-Control max-age when that is shorter,
//     but never below one minute on the server's say-so. no-cache and
//     no-store are about HTTP caches, not key rotation, and are ignored.
//   - Until the first success, and after a failure, retries back off from
//     1 s, doubling up to 1 minute (never longer than the regular interval).
//   - A token whose kid no loaded key has triggers one fetch at once, at
//     most one per Set per 30 s (UnknownKIDInterval). Requests that arrive
//     while it runs wait for it, at most the fetch timeout; later ones do
//     not wait at all.
//
// Discovery (OpenID, or the Shared Signals Framework's for a transmitter:
// Options.WellKnown) is fetched again on every background refresh, so a
// provider may move its jwks_uri; the unknown-kid fetch reuses the last
// jwks_uri that produced keys, which halves what a flood of kids costs.
//
// A fetch that fails, or brings a document that is hostile or useless, never
// replaces the keys in use: the last good keys stay until a good document
// comes. Fetches have a timeout (the client's) and a body limit; the default
// client follows at most three redirects and none from https to http. An
// https issuer's jwks_uri must be https too.
//
// A kid in a token selects the keys with that kid; a token without one is
// tried against every key. A JWK without a kid is thus used only for
// tokens without one.
package jwks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/internal/wait"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// Defaults and limits.
const (
	DefaultRefresh  = 10 * time.Minute
	DefaultMaxBytes = 1 << 20
	DefaultTimeout  = 10 * time.Second
	// MaxRedirects is how many redirects the default client follows.
	MaxRedirects = 3
	// UnknownKIDInterval is the least time between two fetches caused by
	// tokens with an unknown kid.
	UnknownKIDInterval = 30 * time.Second
	// MinRefresh is the shortest interval a server's max-age can ask for.
	MinRefresh = time.Minute

	firstBackoff = time.Second
	maxBackoff   = time.Minute
)

// Fetch results passed to Options.OnFetch: a fixed, small set, fit for a
// metric label.
const (
	ResultOK        = "ok"        // keys loaded or changed
	ResultUnchanged = "unchanged" // a good document with the keys already in use
	ResultHTTP      = "error_http"
	ResultRedirect  = "error_redirect"
	ResultTimeout   = "error_timeout"
	ResultBody      = "error_body"
	ResultJSON      = "error_json"
	ResultNoKeys    = "error_no_keys"
	ResultIssuer    = "error_issuer"
	ResultDiscovery = "error_discovery"
)

// Discovery documents, for Options.WellKnown.
const (
	// WellKnownOpenID is OpenID Connect Discovery 1.0 §4: the issuer,
	// less a trailing slash, + "/.well-known/openid-configuration".
	WellKnownOpenID = "openid-configuration"
	// WellKnownSSF is a Shared Signals transmitter's configuration (SSF
	// 1.0, Transmitter Configuration Request):
	// "/.well-known/ssf-configuration" goes between the issuer's host and
	// its path, the path's trailing slash removed.
	WellKnownSSF = "ssf-configuration"
)

// Results lists every fetch result, for pre-creating metric series.
var Results = []string{ResultOK, ResultUnchanged, ResultHTTP, ResultRedirect, ResultTimeout,
	ResultBody, ResultJSON, ResultNoKeys, ResultIssuer, ResultDiscovery}

// Options configure a Set.
type Options struct {
	// URL is a JWK Set URL (jwks). Exactly one of URL and Issuer is set.
	URL string
	// Issuer is an OpenID issuer (oidc): its discovery document must name
	// exactly this issuer, and the keys found through it verify only
	// tokens whose iss equals it.
	Issuer string
	// KeyIssuer, for a URL source, binds its keys to this iss; empty
	// means no binding.
	KeyIssuer string
	// WellKnown, for an Issuer source, names its discovery document:
	// WellKnownOpenID (the default, "") or WellKnownSSF. Either document
	// must name exactly Issuer and give a jwks_uri.
	WellKnown string
	// Refresh is the background refresh interval; 0 means DefaultRefresh.
	Refresh time.Duration
	// Client makes the requests. nil means one with DefaultTimeout, at
	// most MaxRedirects redirects, no downgrade from https to http, and
	// no cookies. A client's Timeout, when set, is also the fetch timeout.
	Client *http.Client
	// MaxBytes is the largest response body accepted; 0 means
	// DefaultMaxBytes.
	MaxBytes int64
	// Logger gets the key changes and failed fetches; nil means none.
	Logger *zap.Logger
	// OnFetch is called after every fetch attempt with one of Results;
	// attempts cut short by the Start context ending are not reported.
	OnFetch func(result string)
	// OnChange is called after a fetch replaced loaded keys with different
	// ones (not after the first load, which replaces nothing).
	//
	// OnFetch and OnChange run on the fetching goroutine, one fetch at a
	// time; they must be quick and must not call Refresh.
	OnChange func()
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Set is a verifier.KeySet backed by a remote JWK Set. It is safe for
// concurrent use.
type Set struct {
	url          string // a jwks source's URL
	issuer       string // an oidc source's issuer
	discoveryURL string
	keyIssuer    string // the iss the keys are bound to, if any
	source       string // names the source in logs
	refresh      time.Duration
	timeout      time.Duration
	maxBytes     int64
	client       *http.Client
	log          *zap.Logger
	onFetch      func(string)
	onChange     func()
	now          func() time.Time
	// sleep waits d or until ctx ends (false); tests replace it to drive
	// the background loop without real time passing.
	sleep func(ctx context.Context, d time.Duration) bool

	// snap is what Keys reads: immutable once published.
	snap atomic.Pointer[snapshot]

	// Unknown-kid fetches: flight is the one in progress; none starts
	// before nextMiss (Unix nanoseconds of the Set's clock).
	flight   atomic.Pointer[flight]
	nextMiss atomic.Int64
	missMu   sync.Mutex      // serialises starting a flight
	ctx      context.Context // from Start, under missMu; ends unknown-kid fetches too

	// fetchMu serialises fetches and guards the fields after it.
	fetchMu  sync.Mutex
	jwksURI  string        // the last discovered jwks_uri that produced keys
	lastBody [32]byte      // SHA-256 of the last good document
	maxAge   time.Duration // the last good response's max-age; <0: none

	started  atomic.Bool
	loopDone chan struct{}
}

// snapshot is one loaded key set, indexed by kid when it is built so that
// a lookup neither locks nor allocates.
type snapshot struct {
	all    []*verifier.Key
	byKID  map[string][]*verifier.Key
	prints []string // sorted fingerprints, to tell a change from a re-send
	kids   []string // kid of each print, same order
}

type flight struct{ done chan struct{} }

// New checks opts and returns a Set. It does not fetch: Start or Refresh
// do.
func New(opts Options) (*Set, error) {
	s := &Set{
		refresh:  opts.Refresh,
		maxBytes: opts.MaxBytes,
		client:   opts.Client,
		log:      opts.Logger,
		onFetch:  opts.OnFetch,
		onChange: opts.OnChange,
		now:      opts.Now,
		sleep:    wait.Sleep,
		maxAge:   -1,
		loopDone: make(chan struct{}),
	}
	switch {
	case opts.URL != "" && opts.Issuer != "":
		return nil, errors.New("jwks: set either a JWK Set URL or an OpenID issuer, not both")
	case opts.URL != "" && opts.WellKnown != "":
		return nil, errors.New("jwks: a discovery document goes with an issuer, not a JWK Set URL")
	case opts.URL != "":
		u, err := CheckURL(opts.URL)
		if err != nil {
			return nil, fmt.Errorf("jwks %s: %v", opts.URL, err)
		}
		s.url, s.keyIssuer, s.source = opts.URL, opts.KeyIssuer, u.Redacted()
	case opts.Issuer != "":
		what := "oidc"
		if opts.WellKnown == WellKnownSSF {
			what = "transmitter"
		}
		u, err := CheckURL(opts.Issuer)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %v", what, opts.Issuer, err)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%s %s: an issuer has no query or fragment", what, opts.Issuer)
		}
		if opts.KeyIssuer != "" && opts.KeyIssuer != opts.Issuer {
			return nil, fmt.Errorf("%s %s: keys are bound to the issuer, not to %q", what, opts.Issuer, opts.KeyIssuer)
		}
		s.issuer, s.keyIssuer, s.source = opts.Issuer, opts.Issuer, u.Redacted()
		switch opts.WellKnown {
		case "", WellKnownOpenID:
			// OpenID Connect Discovery 1.0 §4: a trailing slash is
			// removed before the well-known path is appended.
			s.discoveryURL = strings.TrimSuffix(opts.Issuer, "/") + "/.well-known/openid-configuration"
		case WellKnownSSF:
			s.discoveryURL = ssfDiscoveryURL(u)
		default:
			return nil, fmt.Errorf("%s %s: unknown discovery document %q", what, opts.Issuer, opts.WellKnown)
		}
	default:
		return nil, errors.New("jwks: a JWK Set URL or an OpenID issuer is required")
	}
	switch {
	case s.refresh < 0:
		return nil, errors.New("jwks: refresh interval must be positive")
	case s.refresh == 0:
		s.refresh = DefaultRefresh
	case s.refresh < time.Second:
		return nil, fmt.Errorf("jwks: refresh interval %v is under a second", s.refresh)
	}
	switch {
	case s.maxBytes < 0:
		return nil, errors.New("jwks: MaxBytes must be positive")
	case s.maxBytes == 0:
		s.maxBytes = DefaultMaxBytes
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: DefaultTimeout, CheckRedirect: checkRedirect}
	}
	s.timeout = s.client.Timeout
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.With(zap.String("source", s.source))
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// ssfDiscoveryURL is where a transmitter with this issuer publishes its
// configuration (SSF 1.0, Transmitter Configuration Request):
// https://tr.example.com/issuer1 has it at
// https://tr.example.com/.well-known/ssf-configuration/issuer1.
func ssfDiscoveryURL(issuer *url.URL) string {
	u := *issuer
	const wellKnown = "/.well-known/ssf-configuration"
	u.Path = wellKnown + strings.TrimSuffix(issuer.Path, "/")
	if issuer.RawPath != "" {
		u.RawPath = wellKnown + strings.TrimSuffix(issuer.RawPath, "/")
	}
	return u.String()
}

// CheckURL accepts absolute http and https URLs only (jwtguard_signals
// checks its issuer and poll URLs with it too).
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("not an absolute http or https URL")
	}
	return u, nil
}

// Keys implements verifier.KeySet: the keys whose kid equals kid, or every
// key when kid is empty. A JWK without a kid is therefore used only for
// tokens without one. The slice is shared and must not be modified.
func (s *Set) Keys(kid, iss string) ([]*verifier.Key, bool) {
	// A set bound to an issuer has nothing for another issuer's tokens,
	// loaded or not, and does not refetch for their kids: with two
	// providers on one route, each one's kids would otherwise be unknown
	// kids to the other's set.
	if s.keyIssuer != "" && iss != s.keyIssuer {
		return nil, true
	}
	sn := s.snap.Load()
	if sn == nil {
		// Never block a request on the first load: the background loop
		// is retrying, and the verifier answers keys_unavailable.
		return nil, false
	}
	if kid == "" {
		return sn.all, true
	}
	if keys, ok := sn.byKID[kid]; ok {
		return keys, true
	}
	return s.unknownKID(kid)
}

// unknownKID fetches once for a kid no key has, within the rate limit, and
// looks again.
func (s *Set) unknownKID(kid string) ([]*verifier.Key, bool) {
	f := s.flight.Load()
	if f == nil {
		now := s.now().UnixNano()
		if now < s.nextMiss.Load() {
			return nil, true
		}
		s.missMu.Lock()
		if f = s.flight.Load(); f == nil {
			ctx := s.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			if now < s.nextMiss.Load() || ctx.Err() != nil {
				s.missMu.Unlock()
				return nil, true
			}
			s.nextMiss.Store(now + int64(UnknownKIDInterval))
			f = &flight{done: make(chan struct{})}
			s.flight.Store(f)
			// The fetch runs on its own so that it is not tied to the
			// request that happened to start it.
			go func() {
				s.fetch(ctx, false)
				s.flight.Store(nil)
				close(f.done)
			}()
		}
		s.missMu.Unlock()
	}
	t := time.NewTimer(s.timeout)
	select {
	case <-f.done:
	case <-t.C:
	}
	t.Stop()
	return s.snap.Load().byKID[kid], true
}

// Seed starts s with the keys old has loaded, when both read the same
// source (the same discovery document, for an issuer) with the same issuer
// binding, and reports whether it did. A config
// reload builds new Sets: seeded from the old ones, they answer at once,
// and keep the old keys while the provider is down, instead of failing
// with keys_unavailable until their first fetch succeeds. Call it before
// Start or Refresh.
func (s *Set) Seed(old *Set) bool {
	if old == nil || old == s || old.url != s.url || old.issuer != s.issuer || old.keyIssuer != s.keyIssuer || old.discoveryURL != s.discoveryURL {
		return false
	}
	old.fetchMu.Lock()
	sn, uri, body, age := old.snap.Load(), old.jwksURI, old.lastBody, old.maxAge
	old.fetchMu.Unlock()
	if sn == nil {
		return false
	}
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	if s.snap.Load() != nil {
		return false
	}
	// Snapshots are immutable, so the two Sets can share one.
	s.jwksURI, s.lastBody, s.maxAge = uri, body, age
	s.snap.Store(sn)
	return true
}

// Start fetches the keys in the background and refreshes them until ctx
// ends. It returns at once; calls after the first do nothing.
func (s *Set) Start(ctx context.Context) {
	if !s.started.CompareAndSwap(false, true) {
		return
	}
	s.missMu.Lock()
	s.ctx = ctx
	s.missMu.Unlock()
	go s.loop(ctx)
}

func (s *Set) loop(ctx context.Context) {
	defer close(s.loopDone)
	backoff := firstBackoff
	for {
		err := s.fetch(ctx, true)
		if ctx.Err() != nil {
			return
		}
		wait := s.interval()
		if err != nil {
			wait = min(wait, backoff)
			backoff = min(2*backoff, maxBackoff)
		} else {
			backoff = firstBackoff
		}
		if !s.sleep(ctx, wait) {
			return
		}
	}
}

// interval is the time to the next background refresh after a success.
func (s *Set) interval() time.Duration {
	s.fetchMu.Lock()
	maxAge := s.maxAge
	s.fetchMu.Unlock()
	if maxAge < 0 {
		return s.refresh
	}
	return min(s.refresh, max(maxAge, MinRefresh))
}

// Refresh fetches the keys now (with discovery, for an oidc source) and
// returns why the keys were not replaced, if they were not.
func (s *Set) Refresh(ctx context.Context) error {
	return s.fetch(ctx, true)
}

// fetch runs one fetch attempt, publishes its keys if they are good and
// new, and reports the result.
func (s *Set) fetch(ctx context.Context, discover bool) error {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	fctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	result, err := s.fetchLocked(fctx, discover)
	if err != nil && ctx.Err() != nil {
		// Shutting down is not the provider's failure.
		return err
	}
	if err != nil {
		s.log.Warn("jwks fetch failed", zap.String("result", result), zap.String("reason", err.Error()))
	}
	if s.onFetch != nil {
		s.onFetch(result)
	}
	return err
}

func (s *Set) fetchLocked(ctx context.Context, discover bool) (string, error) {
	uri := s.url
	if s.issuer != "" {
		uri = s.jwksURI
		if discover || uri == "" {
			var err error
			if uri, err = s.discover(ctx); err != nil {
				return resultOf(err), err
			}
		}
	}
	body, header, err := s.get(ctx, uri)
	if err != nil {
		return resultOf(err), err
	}
	sum := sha256Sum(body)
	if s.snap.Load() != nil && sum == s.lastBody {
		s.jwksURI, s.maxAge = uri, maxAge(header)
		return ResultUnchanged, nil
	}
	keys, skips, err := parseSet(body, s.keyIssuer)
	if err != nil {
		return ResultJSON, &fetchError{ResultJSON, err}
	}
	for _, sk := range skips {
		log := s.log.Warn
		if sk.quiet {
			log = s.log.Debug
		}
		log("jwks key skipped", zap.String("kid", sk.kid), zap.String("reason", sk.reason))
	}
	if len(keys) == 0 {
		return ResultNoKeys, &fetchError{ResultNoKeys, fmt.Errorf("no usable key in the JWK Set (%d skipped)", len(skips))}
	}
	s.jwksURI, s.lastBody, s.maxAge = uri, sum, maxAge(header)
	next := newSnapshot(keys)
	old := s.snap.Load()
	if old != nil && slices.Equal(old.prints, next.prints) {
		// Same keys, re-sent differently: keep the old snapshot, whose
		// *Key values cached tokens may point to.
		return ResultUnchanged, nil
	}
	s.snap.Store(next)
	added, removed := diff(old, next)
	s.log.Info("jwks keys changed", zap.Strings("added", added), zap.Strings("removed", removed),
		zap.Int("keys", len(next.all)))
	if old != nil && s.onChange != nil {
		s.onChange()
	}
	return ResultOK, nil
}

func newSnapshot(keys []parsedKey) *snapshot {
	sn := &snapshot{byKID: make(map[string][]*verifier.Key, len(keys))}
	order := make([]int, len(keys))
	for i, pk := range keys {
		sn.all = append(sn.all, pk.key)
		sn.byKID[pk.key.ID] = append(sn.byKID[pk.key.ID], pk.key)
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(keys[a].print, keys[b].print) })
	for _, i := range order {
		sn.prints = append(sn.prints, keys[i].print)
		sn.kids = append(sn.kids, keys[i].key.ID)
	}
	return sn
}

// diff lists the kids of keys that appeared and disappeared; a key
// replaced under the same kid shows in both.
func diff(old, next *snapshot) (added, removed []string) {
	count := map[string]int{}
	if old != nil {
		for _, p := range old.prints {
			count[p]++
		}
	}
	for i, p := range next.prints {
		if count[p] > 0 {
			count[p]--
		} else {
			added = append(added, kidName(next.kids[i]))
		}
	}
	if old != nil {
		for i, p := range old.prints {
			if count[p] > 0 {
				count[p]--
				removed = append(removed, kidName(old.kids[i]))
			}
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return slices.Compact(added), slices.Compact(removed)
}

func kidName(kid string) string {
	if kid == "" {
		return "(no kid)"
	}
	return kid
}
