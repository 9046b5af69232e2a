// Package signals turns security events from identity providers into
// revocations: Security Event Tokens (RFC 8417) pushed (RFC 8935) or
// polled (RFC 8936) from Shared Signals transmitters, and OpenID Connect
// back-channel logout tokens. It imports nothing from Caddy; the
// jwtguard_signals handler wires it to a revocation store and key sets.
//
// A SET or logout token is checked completely before anything is stored:
// its typ, its issuer (a configured transmitter or provider), the
// request's Authorization for a transmitter that has one, its signature
// with that issuer's keys only, its audience and its claims. Then its
// events become revocation entries (see entries.go), stored durably before
// the answer, together with the token's jti, so that a redelivery, or a
// replay after an administrator deleted the entries, changes nothing.
package signals

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/internal/utf8clip"
	"github.com/jwtguard/caddy-jwtguard/revocation"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// RFC 8935 §2.3 error codes, the err member of a push's 400 answer and of
// a poll's setErrs.
const (
	ErrInvalidRequest       = "invalid_request"
	ErrInvalidKey           = "invalid_key"
	ErrInvalidIssuer        = "invalid_issuer"
	ErrInvalidAudience      = "invalid_audience"
	ErrAuthenticationFailed = "authentication_failed"
)

// Results a signal counts as, besides the error codes above.
const (
	ResultApplied = "applied" // valid, and its revocations are stored
	// ResultIgnored is a valid signal that revokes nothing: an event
	// without a revocation, a subject that names no user, session or
	// token, or a redelivery of one already applied.
	ResultIgnored = "ignored"
	// The two answered 503 with Retry-After, for the sender to try
	// again: nothing about the signal was wrong.
	ResultStoreUnavailable = "store_unavailable"
	ResultKeysUnavailable  = "keys_unavailable"
)

// Results lists every result, for metric series.
var Results = []string{ResultApplied, ResultIgnored, ErrInvalidRequest, ErrInvalidKey,
	ErrInvalidIssuer, ErrInvalidAudience, ErrAuthenticationFailed, ResultStoreUnavailable, ResultKeysUnavailable}

// Defaults and limits.
const (
	DefaultTokenLifetime = 24 * time.Hour
	DefaultRemember      = 168 * time.Hour
	// ClockSkew is allowed on a SET's or logout token's iat and exp.
	ClockSkew = 5 * time.Minute
	// MaxBody is the largest push or back-channel logout body read: a
	// token is at most verifier.MaxTokenLength, a form adds little.
	MaxBody = 64 << 10
	// maxEntryField is the revocation list's limit on a matched field.
	maxEntryField = 1024
	maxReason     = 1024
)

// Media types of the two requests.
const (
	pushType   = "application/secevent+jwt"
	logoutType = "application/x-www-form-urlencoded"
)

// Transmitter is a Shared Signals transmitter whose SETs are accepted.
type Transmitter struct {
	// Issuer is its iss, exactly.
	Issuer string
	// Authorization, when set, is the exact Authorization header value
	// its pushes carry; without it a push is authenticated by the SET's
	// signature alone.
	Authorization string
	// Keys are its signing keys, bound to Issuer.
	Keys verifier.KeySet
}

// Provider is an OpenID provider whose back-channel logout tokens are
// accepted.
type Provider struct {
	Issuer string
	Keys   verifier.KeySet
}

// Config configures a Receiver.
type Config struct {
	// Audiences: a SET's or logout token's aud must contain one.
	Audiences    []string
	Transmitters []Transmitter
	Providers    []Provider
	// TokenLifetime is the longest lifetime of the access tokens checked
	// against the store: an entry made here expires that long after the
	// event's time. Default DefaultTokenLifetime.
	TokenLifetime time.Duration
	// Remember is how long a signal's jti is remembered, at least
	// TokenLifetime plus ClockSkew (a replay after that could revoke
	// nothing that is still valid). Default DefaultRemember.
	Remember time.Duration
	// Store returns the revocation store; an error answers 503.
	Store func() (*revocation.Store, error)
	// Logger gets a line per signal; nil means none.
	Logger *zap.Logger
	// OnResult is called once per EventLabel among the events of each
	// signal (once for a signal whose events are unknown) with that label
	// and one of Results.
	OnResult func(event, result string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Receiver checks and applies signals. It is safe for concurrent use.
type Receiver struct {
	// cfg is New's Config with its defaults filled in, without its
	// Transmitters and Providers (see transmitters and providers).
	cfg          Config
	transmitters map[string]*issuer
	providers    map[string]*issuer
}

// issuer is a transmitter or provider with the verifier of its tokens.
type issuer struct {
	iss           string
	authorization [32]byte // SHA-256 of the Authorization value, compared in constant time
	checkAuth     bool
	v             *verifier.Verifier
}

// New checks cfg and returns a Receiver.
func New(cfg Config) (*Receiver, error) {
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("signals: at least one audience is required")
	}
	for _, a := range cfg.Audiences {
		if a == "" {
			return nil, errors.New("signals: an empty audience")
		}
	}
	if len(cfg.Transmitters)+len(cfg.Providers) == 0 {
		return nil, errors.New("signals: configure a transmitter or an oidc provider")
	}
	if cfg.Store == nil {
		return nil, errors.New("signals: no revocation store")
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.TokenLifetime < 0 {
		return nil, errors.New("signals: token lifetime must be positive")
	}
	if cfg.Remember <= 0 {
		cfg.Remember = DefaultRemember
	}
	cfg.Remember = max(cfg.Remember, cfg.TokenLifetime+ClockSkew)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.OnResult == nil {
		cfg.OnResult = func(string, string) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Receiver{cfg: cfg, transmitters: map[string]*issuer{}, providers: map[string]*issuer{}}
	for _, t := range cfg.Transmitters {
		is, err := r.newIssuer(t.Issuer, t.Keys, "secevent+jwt")
		if err != nil {
			return nil, fmt.Errorf("signals: transmitter %s: %v", t.Issuer, err)
		}
		if t.Authorization != "" {
			is.checkAuth, is.authorization = true, sha256.Sum256([]byte(t.Authorization))
		}
		if _, dup := r.transmitters[t.Issuer]; dup {
			return nil, fmt.Errorf("signals: transmitter %s configured twice", t.Issuer)
		}
		r.transmitters[t.Issuer] = is
	}
	for _, p := range cfg.Providers {
		// No TokenTypes here: a logout token's typ is optional, and
		// checked by the caller when present.
		is, err := r.newIssuer(p.Issuer, p.Keys, "")
		if err != nil {
			return nil, fmt.Errorf("signals: oidc %s: %v", p.Issuer, err)
		}
		if _, dup := r.providers[p.Issuer]; dup {
			return nil, fmt.Errorf("signals: oidc %s configured twice", p.Issuer)
		}
		r.providers[p.Issuer] = is
	}
	// Their keys live on in the issuers, and a push Authorization only as
	// its hash: the secret itself is not kept.
	r.cfg.Transmitters, r.cfg.Providers = nil, nil
	return r, nil
}

func (r *Receiver) newIssuer(iss string, keys verifier.KeySet, typ string) (*issuer, error) {
	if iss == "" {
		return nil, errors.New("an issuer is required")
	}
	if keys == nil {
		return nil, errors.New("no keys")
	}
	cfg := verifier.Config{
		KeySets:   []verifier.KeySet{keys},
		Issuers:   []string{iss},
		Audiences: r.cfg.Audiences,
		Leeway:    ClockSkew,
		// A SET or logout token is what this verifier is for; cnf means
		// nothing to it. Each token is seen once: no cache.
		EventTokens:  true,
		AllowBound:   true,
		CacheEntries: -1,
		Now:          r.cfg.Now,
	}
	if typ != "" {
		cfg.TokenTypes = []string{typ}
	}
	v, err := verifier.New(cfg)
	if err != nil {
		return nil, err
	}
	return &issuer{iss: iss, v: v}, nil
}

// ServeHTTP answers a push (Content-Type application/secevent+jwt, RFC
// 8935) or a back-channel logout (application/x-www-form-urlencoded with
// logout_token) once its revocations are durable.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "signals are POSTed", http.StatusMethodNotAllowed)
		return
	}
	ct := req.Header.Values("Content-Type")
	mt := ""
	if len(ct) == 1 {
		mt, _, _ = mime.ParseMediaType(ct[0])
	}
	body, over, err := readBody(req.Body)
	switch {
	case err != nil:
		// The client went away or sent a broken body: nothing to answer
		// it with that it could read.
		r.cfg.Logger.Debug("signal body unreadable", zap.Error(err))
		w.WriteHeader(http.StatusBadRequest)
		return
	case strings.EqualFold(mt, logoutType):
		var o *outcome
		if over > 0 {
			o = refuse(ErrInvalidRequest, fmt.Sprintf("body over %d bytes", over))
		} else {
			o = r.receiveLogoutForm(string(body))
		}
		o.logout = true
		r.finish(o)
		writeLogout(w, o)
	default:
		var o *outcome
		switch {
		case !strings.EqualFold(mt, pushType):
			o = refuse(ErrInvalidRequest, "Content-Type must be "+pushType+" (a SET) or "+logoutType+" (a back-channel logout)")
		case over > 0:
			o = refuse(ErrInvalidRequest, fmt.Sprintf("body over %d bytes", over))
		default:
			o = r.receiveSET(string(bytes.TrimSpace(body)), delivery{push: true, authorization: req.Header.Values("Authorization")})
		}
		r.finish(o)
		writePush(w, o)
	}
}

// readBody reads at most MaxBody bytes. A longer body, or one over Caddy's
// request_body limit, is not read further: over is then the limit it
// went over (0 otherwise).
func readBody(body io.Reader) (b []byte, over int64, err error) {
	if body == nil {
		return nil, 0, nil
	}
	b, err = io.ReadAll(io.LimitReader(body, MaxBody+1))
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		// request_body's limit, lower than MaxBody: the client is there,
		// and gets the answer any body over a limit gets.
		return nil, mbe.Limit, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if len(b) > MaxBody {
		return nil, MaxBody, nil
	}
	return b, 0, nil
}

// writePush answers a push as RFC 8935 §2.2-2.3 says.
func writePush(w http.ResponseWriter, o *outcome) {
	switch {
	case o.status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(o.status)
	case o.err != "":
		writeJSON(w, http.StatusBadRequest, map[string]string{"err": o.err, "description": o.desc})
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// writeLogout answers a back-channel logout (OpenID Connect Back-Channel
// Logout 1.0 §2.8): never cached.
func writeLogout(w http.ResponseWriter, o *outcome) {
	w.Header().Set("Cache-Control", "no-store")
	switch {
	case o.status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(o.status)
	case o.err != "":
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": ErrInvalidRequest, "error_description": o.desc})
	default:
		w.WriteHeader(http.StatusOK)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// outcome is what became of one signal.
type outcome struct {
	status int    // 0 (success), 400 or 503
	err    string // an RFC 8935 code, "" on success or 503
	desc   string
	result string   // one of Results
	labels []string // EventLabel of each event, for metrics
	logout bool
	// iss and jti name the signal in logs: verified ones once verified,
	// else clipped copies of what the token claimed.
	iss, jti string
	entries  []revocation.Entry // stored (or found stored)
	repeat   bool               // the jti was applied before
}

func refuse(code, desc string) *outcome {
	return &outcome{status: http.StatusBadRequest, err: code, desc: desc, result: code}
}

func unavailable(result, desc string) *outcome {
	return &outcome{status: http.StatusServiceUnavailable, desc: desc, result: result}
}

// finish counts and logs a signal. Raw tokens are never logged: iss and
// jti name it.
func (r *Receiver) finish(o *outcome) {
	// Each label once: a token's events may be hundreds of made-up
	// types, all "other", and a refused token's are claims nobody
	// vouched for.
	labels := slices.Compact(slices.Sorted(slices.Values(o.labels)))
	if len(labels) == 0 {
		labels = []string{labelOther}
		if o.logout {
			labels = []string{labelLogout}
		}
	}
	for _, l := range labels {
		r.cfg.OnResult(l, o.result)
	}
	fields := []zap.Field{zap.String("iss", o.iss), zap.String("jti", o.jti), zap.Strings("events", labels), zap.String("result", o.result)}
	switch {
	case o.status == http.StatusServiceUnavailable:
		r.cfg.Logger.Error("signal not applied, the sender should retry", append(fields, zap.String("reason", o.desc))...)
	case o.err != "":
		r.cfg.Logger.Warn("signal refused", append(fields, zap.String("description", o.desc))...)
	default:
		ids := make([]string, len(o.entries))
		for i, e := range o.entries {
			ids[i] = string(e.Kind) + ":" + e.ID
		}
		r.cfg.Logger.Info("signal received", append(fields, zap.Bool("redelivered", o.repeat), zap.Strings("revocations", ids))...)
	}
}

// authorized compares the request's Authorization with the configured
// value in constant time (hashes of both, so the length leaks nothing
// either); exactly one header must be present.
func authorized(got []string, want *[32]byte) bool {
	if len(got) != 1 {
		return false
	}
	sum := sha256.Sum256([]byte(got[0]))
	return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}

// clip shortens a value an unverified token claimed, for a log line.
func clip(s string) string {
	const n = 128
	if len(s) <= n {
		return s
	}
	return utf8clip.Clip(s, n) + "..."
}

// receiveLogoutForm reads the form of a back-channel logout request.
func (r *Receiver) receiveLogoutForm(body string) *outcome {
	form, err := url.ParseQuery(body)
	if err != nil {
		return refuse(ErrInvalidRequest, "the body is not a form")
	}
	toks := form["logout_token"]
	if len(toks) != 1 {
		return refuse(ErrInvalidRequest, "the form must hold exactly one logout_token")
	}
	return r.receiveLogout(toks[0])
}
