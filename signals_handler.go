package jwtguard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/jwks"
	"github.com/jwtguard/caddy-jwtguard/signals"
)

func init() {
	caddy.RegisterModule(Signals{})
	httpcaddyfile.RegisterHandlerDirective("jwtguard_signals", parseSignalsCaddyfile)
	// Ahead of jwtguard: a transmitter's or provider's request carries no
	// access token, and may carry an Authorization that is none. An order
	// can only name a standard directive; jwtguard sits before basic_auth,
	// after basicauth, and try_files comes before both. A global `order
	// jwtguard_signals ...` overrides it.
	httpcaddyfile.RegisterDirectiveOrder("jwtguard_signals", httpcaddyfile.After, "try_files")
}

// Signals receives security events from identity providers and turns them
// into revocations in the jwtguard app's revocation list: Security Event
// Tokens from Shared Signals transmitters, pushed to it (RFC 8935,
// `Content-Type: application/secevent+jwt`) or polled by it (RFC 8936),
// and OpenID Connect back-channel logout tokens (a form with
// `logout_token`). It answers every request itself.
//
// A push is answered 202 once its revocations are durable, or 400 with
// `{"err": "<code>", "description": "..."}` (invalid_request, invalid_key,
// invalid_issuer, invalid_audience, authentication_failed); a logout 200
// with `Cache-Control: no-store`, or 400 `{"error": "invalid_request",
// "error_description": "..."}`. A valid signal that cannot be stored now
// (the list, or the sender's keys, not available) gets 503 with
// Retry-After, for the sender to deliver it again. A signal whose jti was
// applied before is answered as a success and changes nothing.
type Signals struct {
	// SETs and logout tokens must have one of these in their aud.
	// Required.
	Audiences []string `json:"audiences"`

	// Shared Signals transmitters; keys through their
	// /.well-known/ssf-configuration.
	Transmitters []SignalsTransmitter `json:"transmitters,omitempty"`

	// OpenID providers whose back-channel logout tokens are accepted;
	// keys through OpenID discovery.
	OIDC []string `json:"oidc,omitempty"`

	// The longest lifetime of the access tokens checked against the
	// list: entries made here expire that long after the event.
	// Default: 24h.
	TokenLifetime caddy.Duration `json:"token_lifetime,omitempty"`

	app      *App
	receiver *signals.Receiver
	pollers  []*signals.Poller
	keySets  []*jwks.Set
	logger   *zap.Logger
	cancel   context.CancelFunc
	running  *sync.WaitGroup // the poll loops
}

// SignalsTransmitter is one Shared Signals transmitter.
type SignalsTransmitter struct {
	// The transmitter's issuer, exactly as its SETs' iss.
	Issuer string `json:"issuer"`
	// The exact Authorization header its pushes carry; {env.*} and
	// {file.*} work. Default: none, a push is authenticated by the SET's
	// signature alone.
	Authorization string `json:"authorization,omitempty"`
	// Its RFC 8936 poll endpoint: SETs are polled from there. Default:
	// none, the transmitter pushes.
	Poll string `json:"poll,omitempty"`
	// The wait between polls that brought nothing. Default: 30s.
	PollInterval caddy.Duration `json:"poll_interval,omitempty"`
	// The Authorization header sent when polling; {env.*} and {file.*}
	// work.
	PollAuthorization string `json:"poll_authorization,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Signals) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwtguard_signals",
		New: func() caddy.Module { return new(Signals) },
	}
}

// Provision builds the key sets and the receiver, and starts the poll
// loops, which wait for the app to start (so that `caddy validate` polls
// nothing) and end at Cleanup.
func (s *Signals) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	if err := s.Validate(); err != nil {
		return err
	}
	if err := initMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if err := initSignalsMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	app, err := ctx.App("jwtguard")
	if err != nil {
		return fmt.Errorf("jwtguard_signals: the jwtguard app: %v", err)
	}
	s.app = app.(*App)
	if err := s.checkStore(); err != nil {
		return err
	}

	cfg := signals.Config{
		Audiences:     s.Audiences,
		TokenLifetime: time.Duration(s.TokenLifetime),
		Remember:      time.Duration(s.app.History),
		Store:         s.app.Store,
		Logger:        s.logger,
		OnResult:      countSignal,
	}
	polls := make([]signals.PollOptions, 0, len(s.Transmitters))
	for _, t := range s.Transmitters {
		auth, err := resolveCredential("transmitter "+t.Issuer+": authorization", t.Authorization)
		if err != nil {
			return err
		}
		keys, err := s.keySet(jwks.Options{Issuer: t.Issuer, WellKnown: jwks.WellKnownSSF})
		if err != nil {
			return err
		}
		cfg.Transmitters = append(cfg.Transmitters, signals.Transmitter{Issuer: t.Issuer, Authorization: auth, Keys: keys})
		if t.Poll != "" {
			pollAuth, err := resolveCredential("transmitter "+t.Issuer+": poll_authorization", t.PollAuthorization)
			if err != nil {
				return err
			}
			polls = append(polls, signals.PollOptions{Issuer: t.Issuer, URL: t.Poll, Authorization: pollAuth, Interval: time.Duration(t.PollInterval)})
		}
	}
	for _, iss := range s.OIDC {
		keys, err := s.keySet(jwks.Options{Issuer: iss})
		if err != nil {
			return err
		}
		cfg.Providers = append(cfg.Providers, signals.Provider{Issuer: iss, Keys: keys})
	}
	if s.receiver, err = signals.New(cfg); err != nil {
		return fmt.Errorf("jwtguard_signals: %v", err)
	}
	for _, o := range polls {
		p, err := s.receiver.NewPoller(o)
		if err != nil {
			return fmt.Errorf("jwtguard_signals: %v", err)
		}
		s.pollers = append(s.pollers, p)
	}

	run, cancel := context.WithCancel(ctx)
	s.cancel, s.running = cancel, new(sync.WaitGroup)
	for _, set := range s.keySets {
		set.Start(run)
	}
	for _, p := range s.pollers {
		s.running.Add(1)
		go func() {
			defer s.running.Done()
			if waitForApp(run, s.app) {
				p.Run(run)
			}
		}()
	}
	return nil
}

// resolveCredential replaces the placeholders of an Authorization value.
// One that comes out empty (an {env.*} that is not set) is an error: an
// empty authorization would quietly let any signed SET in without it.
func resolveCredential(what, v string) (string, error) {
	out, err := caddy.NewReplacer().ReplaceOrErr(v, true, true)
	if err == nil && v != "" && strings.TrimSpace(out) == "" {
		err = errors.New("empty")
	}
	if err != nil {
		return "", fmt.Errorf("jwtguard_signals: %s: %v", what, err)
	}
	return out, nil
}

// checkStore fails provisioning when the revocation list could never
// open: its directory cannot be made or written. The list itself opens
// when the app starts (not here, so that `caddy validate` works beside a
// running server, which holds the directory's lock).
func (s *Signals) checkStore() error {
	if s.app.hold.store.Load() != nil {
		return nil // open, held by a running config
	}
	dir := s.app.dir
	fail := func(err error) error {
		return fmt.Errorf("jwtguard_signals: the revocation list in %s cannot be used (set storage_dir in the jwtguard global option): %v", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".jwtguard-signals-check-*")
	if err != nil {
		return fail(err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// keySet builds a key set, seeded with the keys of the previous config's
// set for the same source, so that a reload while the provider is down
// costs nothing.
func (s *Signals) keySet(opts jwks.Options) (*jwks.Set, error) {
	opts.Logger = s.logger.Named("jwks")
	opts.OnFetch = countKeyFetch
	set, err := jwks.New(opts)
	if err != nil {
		return nil, fmt.Errorf("jwtguard_signals: %v", err)
	}
	takeOverKeySet(opts.WellKnown+"|"+opts.Issuer+"|"+opts.Issuer, set)
	s.keySets = append(s.keySets, set)
	return set, nil
}

// waitForApp waits until the app has started: Caddy provisions a config
// before starting it, and `caddy validate` provisions one it never starts.
func waitForApp(ctx context.Context, a *App) bool {
	select {
	case <-a.whenStarted():
		return true
	case <-ctx.Done():
		return false
	}
}

// Validate checks the configuration, for JSON configs too.
func (s *Signals) Validate() error {
	if len(s.Audiences) == 0 {
		return errors.New("jwtguard_signals: audience is required")
	}
	if slices.Contains(s.Audiences, "") {
		return errors.New("jwtguard_signals: audience: an empty value")
	}
	if len(s.Transmitters)+len(s.OIDC) == 0 {
		return errors.New("jwtguard_signals: configure a transmitter or an oidc provider")
	}
	if s.TokenLifetime < 0 {
		return errors.New("jwtguard_signals: token_lifetime must be positive")
	}
	seen := map[string]bool{}
	for _, t := range s.Transmitters {
		if err := checkIssuerURL(t.Issuer); err != nil {
			return fmt.Errorf("jwtguard_signals: transmitter %q: %v", t.Issuer, err)
		}
		if seen[t.Issuer] {
			return fmt.Errorf("jwtguard_signals: transmitter %s: configured twice", t.Issuer)
		}
		seen[t.Issuer] = true
		if t.Poll != "" {
			if _, err := jwks.CheckURL(t.Poll); err != nil {
				return fmt.Errorf("jwtguard_signals: transmitter %s: poll %q: %v", t.Issuer, t.Poll, err)
			}
		}
		if t.Poll == "" && (t.PollInterval != 0 || t.PollAuthorization != "") {
			return fmt.Errorf("jwtguard_signals: transmitter %s: poll_interval and poll_authorization go with poll", t.Issuer)
		}
		if t.PollInterval != 0 && time.Duration(t.PollInterval) < time.Second {
			return fmt.Errorf("jwtguard_signals: transmitter %s: the poll interval must be at least 1s", t.Issuer)
		}
	}
	clear(seen)
	for _, iss := range s.OIDC {
		if err := checkIssuerURL(iss); err != nil {
			return fmt.Errorf("jwtguard_signals: oidc %q: %v", iss, err)
		}
		if seen[iss] {
			return fmt.Errorf("jwtguard_signals: oidc %s: configured twice", iss)
		}
		seen[iss] = true
	}
	return nil
}

// checkIssuerURL: an issuer is an http(s) URL without query or fragment.
func checkIssuerURL(raw string) error {
	u, err := jwks.CheckURL(raw)
	if err != nil {
		return err
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return errors.New("an issuer has no query or fragment")
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. It answers every
// request; next is never called.
func (s *Signals) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	s.receiver.ServeHTTP(w, r)
	return nil
}

// Cleanup stops the poll loops and waits for them, so that the next
// config's loops never poll beside them, and forgets this config's key
// sets unless a newer config took them over.
func (s *Signals) Cleanup() error {
	if s.cancel != nil {
		s.cancel()
		done := make(chan struct{})
		go func() { s.running.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(signals.PollTimeout):
			// A poll applies what it got before looking at its
			// context; a store that hangs is the only way here.
			s.logger.Warn("signal poll loops still running after cleanup")
		}
	}
	forgetKeySets(s.keySets)
	return nil
}

func parseSignalsCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var s Signals
	err := s.UnmarshalCaddyfile(h.Dispenser)
	return &s, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	jwtguard_signals [<matcher>] {
//		audience <aud...>
//		transmitter <issuer-url> {
//			authorization <value>
//			poll <endpoint-url> [<interval>]
//			poll_authorization <value>
//		}
//		oidc <issuer-url>
//		token_lifetime <duration>
//	}
//
// transmitter and oidc may be repeated; the others may appear once.
// audience is required, and at least one transmitter or oidc. An
// authorization value with spaces (Bearer <token>) may be quoted or
// written as words, which are joined with one space.
func (s *Signals) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	start := d.Token()
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		sub := d.Val()
		if sub != "transmitter" && sub != "oidc" && seen[sub] {
			return d.Errf("%s: repeated; give all its values on one line", sub)
		}
		seen[sub] = true
		switch sub {
		case "audience":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Err("audience: at least one value is required")
			}
			s.Audiences = args
		case "transmitter":
			t, err := unmarshalTransmitter(d)
			if err != nil {
				return err
			}
			for _, o := range s.Transmitters {
				if o.Issuer == t.Issuer {
					return d.Errf("transmitter %s: configured twice", t.Issuer)
				}
			}
			s.Transmitters = append(s.Transmitters, t)
		case "oidc":
			args := d.RemainingArgs()
			if len(args) != 1 {
				return d.Errf("oidc: want one issuer URL, got %d values", len(args))
			}
			if err := checkIssuerURL(args[0]); err != nil {
				return d.Errf("oidc %q: %v", args[0], err)
			}
			if slices.Contains(s.OIDC, args[0]) {
				return d.Errf("oidc %s: configured twice", args[0])
			}
			s.OIDC = append(s.OIDC, args[0])
		case "token_lifetime":
			args := d.RemainingArgs()
			if len(args) != 1 {
				return d.Errf("token_lifetime: want one duration, got %d values", len(args))
			}
			dur, err := caddy.ParseDuration(args[0])
			if err != nil || dur <= 0 {
				return d.Errf("token_lifetime: %q is not a duration of more than zero (e.g. 1h)", args[0])
			}
			s.TokenLifetime = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized subdirective %s", sub)
		}
	}
	if len(s.Audiences) == 0 {
		return errAt(start, "jwtguard_signals: audience is required (the aud your transmitters and providers address their tokens to)")
	}
	if len(s.Transmitters)+len(s.OIDC) == 0 {
		return errAt(start, "jwtguard_signals: nothing to receive from: add a transmitter or an oidc line")
	}
	return nil
}

// unmarshalTransmitter reads `transmitter <issuer-url> { ... }`.
func unmarshalTransmitter(d *caddyfile.Dispenser) (SignalsTransmitter, error) {
	var t SignalsTransmitter
	args := d.RemainingArgs()
	if len(args) != 1 {
		return t, d.Errf("transmitter: want one issuer URL, got %d values", len(args))
	}
	if err := checkIssuerURL(args[0]); err != nil {
		return t, d.Errf("transmitter %q: %v", args[0], err)
	}
	t.Issuer = args[0]
	tok := d.Token()
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return t, d.Errf("transmitter %s: %s: repeated", t.Issuer, sub)
		}
		seen[sub] = true
		args := d.RemainingArgs()
		switch sub {
		case "authorization", "poll_authorization":
			if len(args) == 0 {
				return t, d.Errf("transmitter %s: %s: want the Authorization value, e.g. \"Bearer <token>\"", t.Issuer, sub)
			}
			v := strings.Join(args, " ")
			if strings.TrimSpace(v) == "" {
				// authorization "{$VAR}" with VAR unset: taken as none,
				// it would let any signed SET in without the credential.
				return t, d.Errf("transmitter %s: %s: an empty value (an environment variable not set?)", t.Issuer, sub)
			}
			if sub == "authorization" {
				t.Authorization = v
			} else {
				t.PollAuthorization = v
			}
		case "poll":
			if len(args) < 1 || len(args) > 2 {
				return t, d.Errf("transmitter %s: poll: want <endpoint-url> [<interval>]", t.Issuer)
			}
			if _, err := jwks.CheckURL(args[0]); err != nil {
				return t, d.Errf("transmitter %s: poll %q: %v", t.Issuer, args[0], err)
			}
			t.Poll = args[0]
			if len(args) == 2 {
				dur, err := caddy.ParseDuration(args[1])
				if err != nil || dur < time.Second {
					return t, d.Errf("transmitter %s: poll interval %q: want a duration of at least 1s (e.g. 30s)", t.Issuer, args[1])
				}
				t.PollInterval = caddy.Duration(dur)
			}
		default:
			return t, d.Errf("transmitter %s: unrecognized subdirective %s", t.Issuer, sub)
		}
	}
	if t.PollAuthorization != "" && t.Poll == "" {
		return t, errAt(tok, "transmitter %s: poll_authorization goes with poll", t.Issuer)
	}
	return t, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Signals)(nil)
	_ caddy.Validator             = (*Signals)(nil)
	_ caddy.CleanerUpper          = (*Signals)(nil)
	_ caddyhttp.MiddlewareHandler = (*Signals)(nil)
	_ caddyfile.Unmarshaler       = (*Signals)(nil)
)
