package jwtguard

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/dpop"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// DPoP is the `dpop` block of a handler: tokens bound to a client's key
// (cnf.jkt) are accepted only with a proof of possession (RFC 9449).
type DPoP struct {
	// Refuse tokens that are not sender-constrained. Default: unbound
	// tokens pass as bearer tokens.
	Required bool `json:"required,omitempty"`
	// Proof algorithms. Default: ES256 ES384 ES512 PS256 PS384 PS512
	// RS256 RS384 RS512 EdDSA.
	Algorithms []string `json:"algorithms,omitempty"`
	// Oldest proof iat accepted. Default: 60s.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
	// How far in the future a proof's iat may be. Default (absent): 5s;
	// 0 allows none.
	Leeway *caddy.Duration `json:"leeway,omitempty"`
	// Require a server nonce (DPoP-Nonce) in every proof.
	Nonce bool `json:"nonce,omitempty"`
	// scheme://host[:port] clients put in htu, when TLS ends in front of
	// Caddy or a proxy rewrites the Host. Default: the request's own.
	Origin string `json:"origin,omitempty"`
	// How many proofs the replay cache remembers: it refuses new proofs
	// (503) while it holds that many unexpired. The cache is the
	// process's, as large as the largest any handler asks for. Default:
	// 131,072.
	ReplayCache int `json:"replay_cache,omitempty"`
}

// maxReplayCache bounds replay_cache (1<<26): 2 GiB of table, so that a
// slip of the keyboard does not take the machine's memory.
const maxReplayCache = (2 << 30) / dpop.ReplayEntryBytes

// replayEntries is the size of replay cache the block asks for.
func (c *DPoP) replayEntries() int {
	if c.ReplayCache > 0 {
		return c.ReplayCache
	}
	return dpop.DefaultReplayEntries
}

// MTLS is the `mtls` block of a handler: tokens bound to a client
// certificate (cnf["x5t#S256"]) are accepted only over a connection with
// that certificate (RFC 8705).
type MTLS struct {
	// Refuse tokens that are not sender-constrained.
	Required bool `json:"required,omitempty"`
	// A request header holding the client certificate as RFC 9440
	// Client-Cert (`:<base64 DER>:`), believed only from the server's
	// trusted_proxies and removed from everyone else's requests.
	// Default: the certificate of the TLS connection.
	Header string `json:"header,omitempty"`
}

// config is the dpop package's view of the block, without the shared
// replay cache and nonces that Provision adds.
func (c *DPoP) config() dpop.Config {
	cfg := dpop.Config{
		Algorithms:   c.Algorithms,
		MaxAge:       time.Duration(c.MaxAge),
		RequireNonce: c.Nonce,
		Origin:       c.Origin,
	}
	if c.Leeway != nil {
		cfg.Leeway = time.Duration(*c.Leeway)
		if cfg.Leeway == 0 {
			cfg.Leeway = -1 // dpop reads 0 as its default
		}
	}
	return cfg
}

// check validates the block without building the replay cache.
func (c *DPoP) check() error {
	if c.MaxAge < 0 {
		return fmt.Errorf("dpop max_age: must be more than 0")
	}
	if c.Leeway != nil && *c.Leeway < 0 {
		return fmt.Errorf("dpop leeway: must not be negative")
	}
	if c.ReplayCache < 0 || c.ReplayCache > maxReplayCache {
		return fmt.Errorf("dpop replay_cache: %d is not a number of proofs from 1 to %d", c.ReplayCache, maxReplayCache)
	}
	cfg := c.config()
	cfg.Replay = noReplay{}
	cfg.Nonces = sharedNonces()
	_, err := dpop.New(cfg)
	return err
}

// noReplay stands for the replay cache while a config is only checked.
type noReplay struct{}

func (noReplay) Seen(string, time.Time) (bool, error) { return true, nil }

// The replay cache and the nonces are the process's, not a handler's: a
// config reload must not make a spent proof good again nor void the
// nonces clients hold, and a proof spent on one route stays spent on all.
var (
	processReplay struct {
		sync.Mutex
		cache *dpop.GrowingReplayCache // made by the first handler provisioned
		// maxAge is the largest max_age of any handler provisioned, which
		// every entry is kept for (dpop.Config.RememberFor); it never
		// goes down, since proofs stored under it are still in the cache.
		// Written under the lock; requests read it without.
		maxAge atomic.Int64
	}
	sharedNonces = sync.OnceValue(func() *dpop.Nonces {
		n, err := dpop.NewNonces(nil, nil)
		if err != nil {
			panic(err) // only a broken crypto/rand
		}
		return n
	})
)

// sharedReplay returns the process's replay cache, made or grown to hold
// at least entries proofs, and whether this call grew it, and raises the
// process's largest max_age to maxAge (0: the default). Neither ever goes
// down: handlers of a config still running may need the room, and proofs
// stored under the longer max_age are still in the cache.
func sharedReplay(entries int, maxAge time.Duration) (*dpop.GrowingReplayCache, bool) {
	processReplay.Lock()
	defer processReplay.Unlock()
	if maxAge == 0 {
		maxAge = dpop.DefaultMaxAge
	}
	if int64(maxAge) > processReplay.maxAge.Load() {
		processReplay.maxAge.Store(int64(maxAge))
	}
	if processReplay.cache == nil {
		processReplay.cache = dpop.NewGrowingReplayCache(entries, nil)
		return processReplay.cache, false
	}
	return processReplay.cache, processReplay.cache.Grow(entries)
}

func (m *MTLS) check() error {
	if m.Header != "" && !validHeaderName(m.Header) {
		return fmt.Errorf("mtls header: %q is not a valid header field name", m.Header)
	}
	return nil
}

// provisionBinding sets up the dpop and mtls checks; it runs before the
// verifier is built, which needs to know whether to let bound tokens by.
func (h *Handler) provisionBinding() error {
	if h.DPoP != nil {
		if err := h.DPoP.check(); err != nil {
			return err
		}
		cfg := h.DPoP.config()
		replay, grew := sharedReplay(h.DPoP.replayEntries(), cfg.MaxAge)
		cfg.RememberFor = func() time.Duration { return time.Duration(processReplay.maxAge.Load()) }
		if grew {
			h.logger.Info("DPoP replay cache grown; the proofs it held stay refused",
				zap.Int("replay_cache", replay.Entries()))
		}
		// With a cluster (known once the store opens), proofs and nonces
		// are the whole cluster's; the process's own serve until then.
		cfg.Replay = &clusterReplay{local: replay, shared: h.clusterShared, log: h.logger}
		cfg.Nonces = &clusterNonces{local: sharedNonces(), shared: h.clusterShared}
		v, err := dpop.New(cfg)
		if err != nil {
			return err
		}
		h.proofs = v
		h.dpopMissing = v.Challenge(nil)
	}
	if h.MTLS != nil {
		if err := h.MTLS.check(); err != nil {
			return err
		}
		h.certHeader = http.CanonicalHeaderKey(h.MTLS.Header)
	}
	// With detect's binding rule the handler, not the verifier, refuses
	// bound tokens: the rule needs to see them verified.
	h.checkBound = h.DPoP != nil || h.MTLS != nil || (h.Detect != nil && h.Detect.Binding != nil)
	return nil
}

// dpopSources is h.sources with the DPoP scheme accepted on the
// Authorization header, as RFC 9449 §7.1 carries a bound token.
func dpopSources(sources []verifier.Source) []verifier.Source {
	out := append([]verifier.Source(nil), sources...)
	for i := range out {
		if out[i].Kind == verifier.FromHeader && out[i].Scheme != "" && strings.EqualFold(out[i].Name, "Authorization") {
			out[i].DPoP = true
		}
	}
	return out
}

var (
	errBoundAsBearer = &verifier.Error{Code: verifier.CodeBinding, Reason: "DPoP-bound token sent without the DPoP scheme"}
	errNoDPoP        = &verifier.Error{Code: verifier.CodeBinding, Reason: "token is bound to a DPoP key"}
	errUnboundDPoP   = &verifier.Error{Code: verifier.CodeBinding, Reason: "token is not bound to a DPoP key"}
	errNoMTLS        = &verifier.Error{Code: verifier.CodeBinding, Reason: "token is bound to a client certificate"}
	errCertMismatch  = &verifier.Error{Code: verifier.CodeBinding, Reason: "client certificate missing or not the one the token is bound to"}
	errUnknownCnf    = &verifier.Error{Code: verifier.CodeBinding, Reason: "token is bound by a confirmation method jwtguard cannot check"}
	errUnbound       = &verifier.Error{Code: verifier.CodeBinding, Reason: "token is not sender-constrained"}
)

// proofFailure is a refusal from the dpop package, kept whole for the
// challenge it asks for and its nonce.
type proofFailure struct {
	err *verifier.Error
	dp  *dpop.Error
}

// checkBinding enforces the sender-constraint rules on a verified token:
// every confirmation method in cnf must be proven (the leaf certificate,
// a DPoP proof), the DPoP scheme carries only DPoP-bound tokens, and
// `required` refuses tokens with no binding. Binding failures come before
// proof failures (the SPEC's precedence), so the proof, which costs a
// signature check and a replay-cache entry, is looked at last.
func (h *Handler) checkBinding(w http.ResponseWriter, r *http.Request, raw string, from int, tok *verifier.Token) (*verifier.Error, *dpop.Error) {
	usesDPoP := h.proofs != nil && h.sources[from].UsesDPoP(r)
	var e *verifier.Error
	switch {
	case tok.Bound && tok.JKT == "" && tok.X5T == "":
		e = errUnknownCnf
	case tok.JKT != "" && h.proofs == nil:
		e = errNoDPoP
	case tok.JKT != "" && !usesDPoP:
		e = errBoundAsBearer
	case tok.JKT == "" && usesDPoP:
		e = errUnboundDPoP
	case tok.X5T != "" && h.MTLS == nil:
		e = errNoMTLS
	case tok.X5T != "" && !h.certMatches(r, tok.X5T):
		e = errCertMismatch
	case !tok.Bound && (h.DPoP != nil && h.DPoP.Required || h.MTLS != nil && h.MTLS.Required):
		return errUnbound, nil
	}
	if e != nil {
		if tok.Bound {
			// An unbound token under DPoP is a confused client, not a
			// copied token.
			h.observeBinding(r, tok)
		}
		return e, nil
	}
	if tok.JKT == "" {
		return nil, nil
	}
	vals := r.Header["Dpop"]
	if len(vals) == 0 {
		// A copied token with no proof at all: a thief's signature.
		h.observeBinding(r, tok)
	}
	proof, err := dpop.ProofValues(vals)
	if err == nil {
		var res dpop.Result
		res, err = h.proofs.Verify(proof, h.proofRequest(r, raw, tok.JKT))
		if err == nil {
			if res.Nonce != "" {
				w.Header().Set("DPoP-Nonce", res.Nonce)
			}
			return nil, nil
		}
	}
	de := err.(*dpop.Error)
	if de.Code == verifier.CodeBinding {
		h.observeBinding(r, tok)
	}
	return &verifier.Error{Code: de.Code, Reason: de.Reason}, de
}

// proofRequest is the request as the client sent it, which htu names:
// the path before any rewrite (Caddy keeps the original request in the
// context), https on a TLS connection.
func (h *Handler) proofRequest(r *http.Request, raw, jkt string) dpop.Request {
	req := dpop.Request{Method: r.Method, Scheme: "http", Host: r.Host, AccessToken: raw, JKT: jkt}
	if r.TLS != nil {
		req.Scheme = "https"
	}
	orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
	switch {
	case ok && orig.URL != nil:
		req.Path = orig.URL.EscapedPath()
		if orig.Method != "" {
			req.Method = orig.Method // the method directive may have changed it
		}
		if orig.Host != "" {
			req.Host = orig.Host // and request_header the Host
		}
	case r.URL != nil:
		req.Path = r.URL.EscapedPath()
	}
	return req
}

// observeBinding tells the detect binding rule about a valid bound token
// presented without its proof. Its findings are recorded and acted on as
// any rule's; the request is refused with binding whatever they say,
// which comes first in the SPEC's order.
func (h *Handler) observeBinding(r *http.Request, tok *verifier.Token) {
	if h.detector == nil || h.Detect.Binding == nil {
		return
	}
	req := h.detectRequest(r, tok)
	if v := h.detector.ObserveBinding(&req); v.Findings != nil {
		h.act(tok, &req, v)
	}
}

// certMatches reports whether the client's certificate is the one the
// token is bound to: base64url(SHA-256(DER)) = cnf["x5t#S256"].
func (h *Handler) certMatches(r *http.Request, x5t string) bool {
	var der []byte
	switch {
	case h.certHeader != "" && trustedProxy(r):
		// Behind a proxy, the connection's certificate is the proxy's.
		vals := r.Header[h.certHeader]
		if len(vals) != 1 {
			return false
		}
		der = parseClientCert(vals[0])
	case r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
		der = r.TLS.PeerCertificates[0].Raw
	}
	if len(der) == 0 {
		return false
	}
	sum := sha256.Sum256(der)
	var buf [43]byte
	base64.RawURLEncoding.Encode(buf[:], sum[:])
	return subtle.ConstantTimeCompare(buf[:], []byte(x5t)) == 1
}

// parseClientCert reads an RFC 9440 Client-Cert value: an RFC 8941 byte
// sequence, `:<base64 DER>:`. Anything else is no certificate.
func parseClientCert(v string) []byte {
	v = strings.Trim(v, " \t")
	if len(v) < 2 || v[0] != ':' || v[len(v)-1] != ':' {
		return nil
	}
	der, err := base64.StdEncoding.DecodeString(v[1 : len(v)-1])
	if err != nil {
		return nil
	}
	return der
}

// trustedProxy reports whether the request came from one of the server's
// trusted_proxies, as Caddy decided it.
func trustedProxy(r *http.Request) bool {
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted
}

// dropUntrustedCert removes the client certificate header from requests
// that did not come through a trusted proxy: a client could name any
// certificate there, and an upstream must not believe it either.
func (h *Handler) dropUntrustedCert(r *http.Request) {
	if _, ok := r.Header[h.certHeader]; ok && !trustedProxy(r) {
		delete(r.Header, h.certHeader)
	}
}

// dpopChallenges sets WWW-Authenticate on a route with dpop: the DPoP
// challenge (RFC 9449 §7.1), with an error for a token that failed, and the
// Bearer one unless dpop is required.
func (h *Handler) dpopChallenges(w http.ResponseWriter, e *verifier.Error, dp *dpop.Error) {
	hdr := w.Header()
	if e.Code == verifier.CodeMissing {
		hdr.Set("WWW-Authenticate", h.dpopMissing)
	} else {
		if dp == nil {
			dp = &dpop.Error{Code: e.Code, Challenge: dpop.ErrorInvalidToken, Reason: e.Reason}
		}
		hdr.Set("WWW-Authenticate", h.proofs.Challenge(dp))
		if dp.Nonce != "" {
			hdr.Set("DPoP-Nonce", dp.Nonce)
		}
	}
	if h.DPoP.Required {
		return
	}
	bearer := challenge(e)
	if e.Code == verifier.CodeDPoP {
		// The proof belongs to the DPoP scheme; the bearer scheme has
		// nothing to say about it.
		bearer = challenge(errMissing)
	}
	hdr.Add("WWW-Authenticate", bearer)
}

// bindingPlaceholder is {http.auth.jwt.binding}: how the token is bound,
// every binding having been proven by the time placeholders are set.
func bindingPlaceholder(tok *verifier.Token) string {
	switch {
	case tok.JKT != "":
		return "dpop"
	case tok.X5T != "":
		return "mtls"
	}
	return ""
}

// unmarshalDPoP parses a dpop line and its optional block:
//
//	dpop [required] {
//		algorithms <alg...>
//		max_age <duration>
//		leeway <duration>
//		nonce
//		origin <scheme://host[:port]>
//		replay_cache <n>
//	}
func unmarshalDPoP(d *caddyfile.Dispenser) (*DPoP, error) {
	c := new(DPoP)
	start := d.Token()
	var err error
	if c.Required, err = requiredArg(d, "dpop"); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return nil, d.Errf("dpop: %s: repeated", sub)
		}
		seen[sub] = true
		args := d.RemainingArgs()
		switch sub {
		case "algorithms":
			if len(args) == 0 {
				return nil, d.Errf("dpop: algorithms: at least one value is required")
			}
			c.Algorithms = args
		case "max_age", "leeway":
			if len(args) != 1 {
				return nil, d.Errf("dpop: %s: want one duration, got %d values", sub, len(args))
			}
			dur, err := caddy.ParseDuration(args[0])
			if err != nil || dur < 0 {
				return nil, d.Errf("dpop: %s: %q is not a duration (e.g. 30s, 1m)", sub, args[0])
			}
			if sub == "max_age" {
				if dur == 0 {
					return nil, d.Errf("dpop: max_age: must be more than 0")
				}
				c.MaxAge = caddy.Duration(dur)
			} else {
				l := caddy.Duration(dur)
				c.Leeway = &l
			}
		case "nonce":
			if len(args) != 0 {
				return nil, d.Errf("dpop: nonce: takes no values")
			}
			c.Nonce = true
		case "origin":
			if len(args) != 1 {
				return nil, d.Errf("dpop: origin: want one scheme://host[:port]")
			}
			c.Origin = args[0]
		case "replay_cache":
			if len(args) != 1 {
				return nil, d.Errf("dpop: replay_cache: want one number of proofs")
			}
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 || n > maxReplayCache {
				return nil, d.Errf("dpop: replay_cache: %q is not a number of proofs from 1 to %d", args[0], maxReplayCache)
			}
			c.ReplayCache = n
		default:
			return nil, d.Errf("dpop: unrecognized subdirective %s", sub)
		}
		// Each line is checked as it is read, so the error names it.
		if err := c.check(); err != nil {
			return nil, d.Errf("%v", err)
		}
	}
	if err := c.check(); err != nil {
		return nil, errAt(start, "%v", err)
	}
	return c, nil
}

// unmarshalMTLS parses an mtls line and its optional block:
//
//	mtls [required] {
//		header <field>
//	}
func unmarshalMTLS(d *caddyfile.Dispenser) (*MTLS, error) {
	m := new(MTLS)
	var err error
	if m.Required, err = requiredArg(d, "mtls"); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return nil, d.Errf("mtls: %s: repeated", sub)
		}
		seen[sub] = true
		args := d.RemainingArgs()
		switch sub {
		case "header":
			if len(args) != 1 {
				return nil, d.Errf("mtls: header: want one header field")
			}
			m.Header = args[0]
			if err := m.check(); err != nil {
				return nil, d.Errf("%v", err)
			}
		default:
			return nil, d.Errf("mtls: unrecognized subdirective %s", sub)
		}
	}
	return m, nil
}

// requiredArg reads the optional `required` after dpop or mtls.
func requiredArg(d *caddyfile.Dispenser, name string) (bool, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 0:
		return false, nil
	case len(args) == 1 && args[0] == "required":
		return true, nil
	}
	return false, d.Errf("%s: want %s [required], got %q", name, name, strings.Join(args, " "))
}
