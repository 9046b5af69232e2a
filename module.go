package jwtguard

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/detect"
	"github.com/jwtguard/caddy-jwtguard/dpop"
	"github.com/jwtguard/caddy-jwtguard/jwks"
	"github.com/jwtguard/caddy-jwtguard/revocation"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler lets a request through only with a valid JSON Web Token, and
// tells the upstream who the caller is.
//
// Tokens are looked for in the configured sources in order (by default
// the Authorization header with the Bearer scheme). A verified token's
// claims are passed on as request headers (claim_headers) and as
// placeholders:
//
// Placeholder | Description
// ------------|-------------
// `{http.auth.user.id}` | the token's `sub`
// `{http.auth.user.<claim>}` | each top-level claim present in the token
// `{http.auth.jwt.token_id}` | the token id: `<iss>#<jti>`, or `sha256:<hash>` of the signing input
// `{http.auth.jwt.error}` | on failure, the error code (`missing`, `malformed`, `expired`, ...)
// `{http.auth.jwt.binding}` | how the token is sender-constrained: `dpop`, `mtls`, or empty for a bearer token
// `{http.auth.jwt.jkt}` | the `cnf.jkt` of a DPoP-bound token
//
// A request without a token gets 401 with `WWW-Authenticate: Bearer
// realm="jwtguard"`; an invalid token gets 401 with an RFC 6750
// `error="invalid_token"`; keys that have never loaded, or a revocation
// list that cannot answer, get 503 with Retry-After. Failures are returned
// as handler errors, so `handle_errors` can act on them.
//
// A token bound to a key (`cnf.jkt`, DPoP) or a client certificate
// (`cnf["x5t#S256"]`, mTLS) is accepted only with its proof of
// possession, and only where `dpop` or `mtls` is configured; on a route
// with `dpop`, failures also carry the DPoP challenge of RFC 9449.
//
// Every header named in claim_headers, and its spellings with `_` or `.`
// in place of `-`, is removed from every request before anything else, so
// a client can never forge one; so are request trailers of those names,
// and those names in the Connection header, which would have the proxy
// drop the claim headers as hop-by-hop.
type Handler struct {
	// Where the token comes from, tried in order. Default: the
	// Authorization header with the Bearer scheme.
	From []verifier.Source `json:"from,omitempty"`

	// HMAC secrets (HS256/384/512): the UTF-8 bytes of the value, or
	// "base64:<b64>" for binary keys. At least 32 bytes. Placeholders
	// such as {env.JWT_SECRET} and {file./run/secrets/jwt} are replaced
	// at provision time.
	Secrets []string `json:"secrets,omitempty"`

	// PEM files holding one RSA, ECDSA (P-256/384/521) or Ed25519 public
	// key each, as SubjectPublicKeyInfo or an X.509 certificate.
	PublicKeys []string `json:"public_keys,omitempty"`

	// JWK Set URLs.
	JWKS []string `json:"jwks,omitempty"`

	// OpenID Connect issuer URLs; the JWK Set is found by discovery and
	// the issuer is required to match.
	OIDC []string `json:"oidc,omitempty"`

	// How often JWK Sets are fetched again. Default: 10m.
	KeyRefresh caddy.Duration `json:"key_refresh,omitempty"`

	// The algorithm allow-list. Default: every algorithm the configured
	// keys can verify.
	Algorithms []string `json:"algorithms,omitempty"`

	// Accepted `iss` values. Default: any.
	Issuers []string `json:"issuers,omitempty"`

	// `aud` must contain one of these. Default: any.
	Audiences []string `json:"audiences,omitempty"`

	// Clock skew allowed on exp, nbf and iat. Default: 0.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	// Reject tokens whose exp - iat exceeds this, and tokens with no iat.
	// Default: no limit.
	MaxLifetime caddy.Duration `json:"max_lifetime,omitempty"`

	// Claims that must be present; exp always is.
	Require []string `json:"require,omitempty"`

	// Accepted `typ` header values, compared case-insensitively with or
	// without the "application/" prefix. Default: any.
	TokenTypes []string `json:"token_types,omitempty"`

	// Claims written into request headers for the upstream.
	ClaimHeaders []ClaimHeader `json:"claim_headers,omitempty"`

	// Remove the token from the request before passing it on.
	StripToken bool `json:"strip_token,omitempty"`

	// A request with no token passes through unauthenticated; a request
	// with a bad token is still rejected.
	Optional bool `json:"optional,omitempty"`

	// Turn off the revocation check. Default: on, failing closed.
	DisableRevocation bool `json:"disable_revocation,omitempty"`

	// Stolen-token detection: rules that notice a thief's use of a valid
	// token, usage records and events. Default: off.
	Detect *Detect `json:"detect,omitempty"`

	// DPoP-bound tokens (RFC 9449): accepted with a valid proof under the
	// DPoP scheme. Default: refused, as any bound token.
	DPoP *DPoP `json:"dpop,omitempty"`

	// Certificate-bound tokens (RFC 8705): accepted from the client whose
	// certificate they name. Default: refused, as any bound token.
	MTLS *MTLS `json:"mtls,omitempty"`

	verifier *verifier.Verifier
	keySets  []*jwks.Set // started by Provision, stopped with its context
	app      *App        // nil with revocation off and no detect
	detector *detect.Detector
	geo      *detect.GeoIP
	country  func(netip.Addr) string // the geoip country of an address, for usage records
	sources  []verifier.Source
	headers  []string // canonical names of the claim headers
	logger   *zap.Logger

	proofs      *dpop.Verifier // nil without dpop
	dpopMissing string         // the DPoP challenge without an error
	certHeader  string         // canonical mtls header, "" for the TLS connection's
	checkBound  bool           // the handler, not the verifier, refuses bound tokens
}

// ClaimHeader writes a claim into a request header.
type ClaimHeader struct {
	// A claim name, or a dot path into nested objects (realm.roles).
	// A claim whose whole name matches is preferred to a dot path.
	Claim string `json:"claim"`
	// The header field that receives the claim's value.
	Header string `json:"header"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwtguard",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads the keys and builds the verifier.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := initMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}

	if err := h.provisionBinding(); err != nil {
		return err
	}
	var err error
	if h.verifier, err = h.newVerifier(); err != nil {
		return err
	}
	if (!h.DisableRevocation || h.Detect != nil) && h.app == nil {
		app, err := ctx.App("jwtguard")
		if err != nil {
			return fmt.Errorf("revocation list: %v", err)
		}
		h.app = app.(*App)
	}
	if h.app != nil {
		h.app.useLeeway(time.Duration(h.Leeway))
	}
	h.sources = h.From
	if len(h.sources) == 0 {
		h.sources = verifier.DefaultSources
	}
	if h.proofs != nil {
		h.sources = dpopSources(h.sources)
	}
	for _, ch := range h.ClaimHeaders {
		h.headers = append(h.headers, http.CanonicalHeaderKey(ch.Header))
	}
	// Fetching starts once the verifier exists: a key change flushes its
	// cache of verified tokens. Both stop with the config's context.
	for _, set := range h.keySets {
		set.Start(ctx)
	}
	if h.Detect != nil {
		if err := h.provisionDetect(); err != nil {
			return err
		}
	}
	go h.sweep(ctx)
	return nil
}

func (h *Handler) newVerifier() (*verifier.Verifier, error) {
	cfg, err := h.verifierConfig()
	if err != nil {
		return nil, err
	}
	return verifier.New(cfg)
}

func (h *Handler) verifierConfig() (verifier.Config, error) {
	cfg := verifier.Config{
		Issuers:     h.Issuers,
		Audiences:   h.Audiences,
		Leeway:      time.Duration(h.Leeway),
		MaxLifetime: time.Duration(h.MaxLifetime),
		Require:     h.Require,
		TokenTypes:  h.TokenTypes,
		AllowBound:  h.checkBound,
	}
	repl := caddy.NewReplacer()
	for i, s := range h.Secrets {
		value, err := repl.ReplaceOrErr(s, true, true)
		if err != nil {
			return cfg, fmt.Errorf("secret %d: %v", i+1, err)
		}
		raw, err := verifier.DecodeSecret(value)
		if err != nil {
			return cfg, err
		}
		key, err := verifier.NewHMACKey(raw)
		if err != nil {
			return cfg, fmt.Errorf("secret %d: %v", i+1, err)
		}
		cfg.Keys = append(cfg.Keys, key)
	}
	for _, file := range h.PublicKeys {
		data, err := os.ReadFile(file)
		if err != nil {
			return cfg, fmt.Errorf("public_key: %v", err)
		}
		key, err := verifier.ParsePublicKeyPEM(data)
		if err != nil {
			return cfg, fmt.Errorf("public_key %s: %v", file, err)
		}
		cfg.Keys = append(cfg.Keys, key)
	}
	sets, issuers, err := h.buildKeySets()
	if err != nil {
		return cfg, err
	}
	cfg.KeySets = sets
	if len(issuers) > 0 {
		// oidc sets the issuer; an explicit issuer line adds to it.
		cfg.Issuers = append(append([]string(nil), h.Issuers...), issuers...)
	}
	for _, name := range h.Algorithms {
		alg, ok := verifier.ParseAlgorithm(name)
		if !ok {
			return cfg, fmt.Errorf("algorithms: unknown algorithm %q", name)
		}
		cfg.Algorithms |= verifier.AlgorithmSet(alg)
	}
	for _, ch := range h.ClaimHeaders {
		cfg.HeaderClaims = append(cfg.HeaderClaims, ch.Claim)
	}
	return cfg, nil
}

// buildKeySets builds a JWK Set per jwks and oidc source, seeded with the keys
// the previous config's Set for the same source holds (so a reload while
// the provider is down costs nothing), and returns the oidc issuers.
func (h *Handler) buildKeySets() ([]verifier.KeySet, []string, error) {
	var out []verifier.KeySet
	var issuers []string
	keyIssuer := ""
	if len(h.Issuers) == 1 {
		keyIssuer = h.Issuers[0]
	}
	add := func(opts jwks.Options, what string) error {
		opts.Refresh = time.Duration(h.KeyRefresh)
		opts.Logger = h.logger.Named("jwks")
		opts.OnFetch = countKeyFetch
		opts.OnChange = func() { h.verifier.FlushCache() }
		set, err := jwks.New(opts)
		if err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		takeOverKeySet(opts.URL+"|"+opts.Issuer+"|"+opts.KeyIssuer, set)
		h.keySets = append(h.keySets, set)
		out = append(out, set)
		return nil
	}
	for _, u := range h.JWKS {
		if err := add(jwks.Options{URL: u, KeyIssuer: keyIssuer}, "jwks "+u); err != nil {
			return nil, nil, err
		}
	}
	for _, iss := range h.OIDC {
		if err := add(jwks.Options{Issuer: iss}, "oidc "+iss); err != nil {
			return nil, nil, err
		}
		issuers = append(issuers, iss)
	}
	return out, issuers, nil
}

// liveKeySets holds the newest Set per source, to seed the next config's.
var (
	keySetsMu   sync.Mutex
	liveKeySets = map[string]*jwks.Set{}
)

// takeOverKeySet seeds set with the keys of the previous config's set for
// the same source, so that a reload while the provider is down costs
// nothing, and makes it the one the next config's is seeded from.
func takeOverKeySet(source string, set *jwks.Set) {
	keySetsMu.Lock()
	defer keySetsMu.Unlock()
	set.Seed(liveKeySets[source])
	liveKeySets[source] = set
}

// forgetKeySets drops sets from liveKeySets unless a newer config took
// them over (Caddy provisions the new config before cleaning up the old).
func forgetKeySets(sets []*jwks.Set) {
	keySetsMu.Lock()
	defer keySetsMu.Unlock()
	for k, set := range liveKeySets {
		if slices.Contains(sets, set) {
			delete(liveKeySets, k)
		}
	}
}

// Cleanup forgets this handler's key sets.
func (h *Handler) Cleanup() error {
	h.cleanupDetect()
	forgetKeySets(h.keySets)
	return nil
}

// Validate checks what Provision does not need to.
func (h *Handler) Validate() error {
	for name, d := range map[string]caddy.Duration{"leeway": h.Leeway, "max_lifetime": h.MaxLifetime, "key_refresh": h.KeyRefresh} {
		if d < 0 {
			return fmt.Errorf("%s: must not be negative", name)
		}
	}
	for _, s := range h.From {
		switch s.Kind {
		case verifier.FromHeader, verifier.FromCookie, verifier.FromQuery:
		default:
			return fmt.Errorf("from: unknown source %q (want header, cookie or query)", s.Kind)
		}
		if s.Name == "" {
			return fmt.Errorf("from %s: a name is required", s.Kind)
		}
		if err := checkSourceName(s); err != nil {
			return fmt.Errorf("from %s: %v", s.Kind, err)
		}
	}
	if h.DisableRevocation && h.Detect != nil {
		if acts := h.Detect.revokingActions(); len(acts) > 0 {
			return fmt.Errorf("detect: %s: revokes, but this handler has revocation off and would go on accepting the token; use reject, or turn revocation on", strings.Join(acts, ", "))
		}
	}
	for _, ch := range h.ClaimHeaders {
		if ch.Claim == "" || !validHeaderName(ch.Header) {
			return fmt.Errorf("claim_header %q %q: need a claim and a valid header field name", ch.Claim, ch.Header)
		}
		if err := checkClaimHeader(ch.Header); err != nil {
			return fmt.Errorf("claim_header %s: %v", ch.Header, err)
		}
	}
	return nil
}

// checkSourceName refuses a cookie name that no Cookie header can carry:
// it would never match, and the route would quietly accept nothing.
func checkSourceName(s verifier.Source) error {
	if s.Kind == verifier.FromCookie && !validHeaderName(s.Name) {
		return fmt.Errorf("%q is not a valid cookie name", s.Name)
	}
	return nil
}

// checkClaimHeader refuses header fields a proxy never forwards: the
// upstream would never see the claim.
func checkClaimHeader(name string) error {
	switch http.CanonicalHeaderKey(name) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length":
		return fmt.Errorf("%s is a hop-by-hop or framing header that the proxy does not pass on as set; pick another name", name)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.dropForgedHeaders(r)
	if h.certHeader != "" {
		h.dropUntrustedCert(r)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)

	raw, from, repeated, found := verifier.Extract(r, h.sources)
	if !found {
		if h.Optional {
			if logoutInUse.Load() {
				markAnonymous(r)
			}
			countResult(resultAnonymous)
			return next.ServeHTTP(w, r)
		}
		return h.reject(w, repl, "", errMissing)
	}
	if repeated {
		return h.reject(w, repl, raw, errRepeated)
	}
	tok, err := h.verifier.Verify(raw)
	if err != nil {
		return h.reject(w, repl, raw, err.(*verifier.Error))
	}
	if h.checkBound {
		if e, dp := h.checkBinding(w, r, raw, from, tok); e != nil {
			return h.refuse(w, repl, raw, e, dp)
		}
	}
	if e := h.checkRevoked(tok); e != nil {
		return h.reject(w, repl, raw, e)
	}
	if h.detector != nil {
		if e := h.watch(r, tok); e != nil {
			return h.reject(w, repl, raw, e)
		}
	}

	// One backing array for every claim header; each gets a slice of
	// capacity one, so a later append elsewhere copies instead of writing
	// into its neighbour.
	values := make([]string, len(h.headers))
	for i, name := range h.headers {
		if v, ok := tok.HeaderClaim(i); ok {
			values[i] = v
			r.Header[name] = values[i : i+1 : i+1]
		}
	}
	if h.StripToken {
		h.sources[from].Strip(r)
		if h.proofs != nil {
			delete(r.Header, "Dpop")
		}
	}
	setPlaceholders(repl, tok)
	if logoutInUse.Load() {
		caddyhttp.SetVar(r.Context(), verifiedVar, tok)
	}
	countResult(resultOK)
	return next.ServeHTTP(w, r)
}

var (
	errMissing          = &verifier.Error{Code: verifier.CodeMissing, Reason: "no token"}
	errRepeated         = &verifier.Error{Code: verifier.CodeMalformed, Reason: "token sent more than once"}
	errRevoked          = &verifier.Error{Code: verifier.CodeRevoked, Reason: "token revoked"}
	errStoreUnavailable = &verifier.Error{Code: verifier.CodeStoreUnavailable, Reason: "revocation list unavailable"}
)

// checkRevoked asks the revocation list about the verified token; a list
// that cannot answer fails the request closed.
func (h *Handler) checkRevoked(tok *verifier.Token) *verifier.Error {
	if h.DisableRevocation {
		return nil
	}
	store, err := h.app.Store()
	var revoked bool
	if err == nil {
		iat, hasIat := tok.IssuedAtUnix()
		revoked, err = store.Revoked(&revocation.Token{
			ID: tok.ID, Issuer: tok.Issuer, Subject: tok.Subject, JTI: tok.JTI, KeyID: revocationKeyID(tok), SID: tok.SID,
			IssuedAt: iat, HasIssuedAt: hasIat,
		})
	}
	switch {
	case err != nil:
		if c := h.logger.Check(zapcore.ErrorLevel, "revocation list unavailable"); c != nil {
			c.Write(zap.String("token_id", tok.ID), zap.Error(err))
		}
		return errStoreUnavailable
	case revoked:
		return errRevoked
	}
	return nil
}

// revocationKeyID is the kid a key revocation matches: it must hold for
// every token the key verifies, and a thief holding the key can leave kid
// out of the header, when only the key's own kid names it.
func revocationKeyID(tok *verifier.Token) string {
	if tok.KeyID == "" && tok.Key != nil {
		return tok.Key.ID
	}
	return tok.KeyID
}

// dropForgedHeaders deletes every incoming header that could be taken for
// a claim header: the name itself and its spellings with '_' or '.' for
// '-', which CGI-style upstreams fold together. Those names also leave the
// Connection header (a proxy would drop the claim headers as hop-by-hop)
// and the request's trailers (a proxy would forward them after the body).
func (h *Handler) dropForgedHeaders(r *http.Request) {
	if len(h.headers) == 0 {
		return
	}
	hdr := r.Header
	// The lists are noticed in the same pass, which costs less than
	// looking them up (most requests have no Trailer, many no Connection).
	var conn, trailer bool
	for name := range hdr {
		switch {
		case h.isClaimHeader(name):
			delete(hdr, name)
		case name == "Connection":
			conn = true
		case name == "Trailer":
			trailer = true
		}
	}
	if conn {
		h.dropFromList(hdr, "Connection")
	}
	if trailer {
		h.dropFromList(hdr, "Trailer")
	}
	h.dropForgedTrailers(r)
}

func (h *Handler) isClaimHeader(name string) bool {
	for _, want := range h.headers {
		if sameHeader(name, want) {
			return true
		}
	}
	return false
}

// dropFromList removes the claim header names from every line of a
// comma-separated list header, such as Connection; a line left empty
// goes. Lines that name no claim header are kept as they are, and nothing
// is allocated unless one does.
func (h *Handler) dropFromList(hdr http.Header, key string) {
	lines := hdr[key]
	i := 0
	for i < len(lines) && !h.namesClaimHeader(lines[i]) {
		i++
	}
	if i == len(lines) {
		return
	}
	kept := append(make([]string, 0, len(lines)), lines[:i]...)
	for _, line := range lines[i:] {
		if h.namesClaimHeader(line) {
			var parts []string
			for el := range strings.SplitSeq(line, ",") {
				if el = textproto.TrimString(el); el != "" && !h.isClaimHeader(el) {
					parts = append(parts, el)
				}
			}
			if len(parts) == 0 {
				continue
			}
			line = strings.Join(parts, ", ")
		}
		kept = append(kept, line)
	}
	if len(kept) == 0 {
		delete(hdr, key)
	} else {
		hdr[key] = kept
	}
}

// namesClaimHeader reports whether a comma-separated list names a claim
// header, its elements trimmed as Caddy's reverse proxy trims them.
func (h *Handler) namesClaimHeader(list string) bool {
	for list != "" {
		var el string
		el, list, _ = strings.Cut(list, ",")
		if h.isClaimHeader(textproto.TrimString(el)) {
			return true
		}
	}
	return false
}

// dropForgedTrailers deletes claim header names from the request's
// trailers. Declared ones are in r.Trailer already; the values arrive when
// the body is read to its end, after this handler has run: net/http then
// merges every trailer the client sent, declared or not, into that map,
// and Caddy's reverse proxy copies the map at the same EOF. So the body is
// wrapped to delete them again at EOF, before any reader above sees it.
// Only bodies that can carry trailers are wrapped: of unknown length
// (chunked) or with trailers declared.
func (h *Handler) dropForgedTrailers(r *http.Request) {
	if r.Trailer != nil {
		for name := range r.Trailer {
			if h.isClaimHeader(name) {
				delete(r.Trailer, name)
			}
		}
	}
	if r.Body != nil && r.Body != http.NoBody && (r.Trailer != nil || r.ContentLength < 0) {
		r.Body = &trailerGuard{ReadCloser: r.Body, req: r, h: h}
	}
}

// trailerGuard deletes forged trailers once the body it wraps has ended.
type trailerGuard struct {
	io.ReadCloser
	req *http.Request
	h   *Handler
}

func (b *trailerGuard) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		for name := range b.req.Trailer {
			if b.h.isClaimHeader(name) {
				delete(b.req.Trailer, name)
			}
		}
	}
	return n, err
}

func sameHeader(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if fold(a[i]) != fold(b[i]) {
			return false
		}
	}
	return true
}

func fold(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_' || c == '.':
		return '-'
	}
	return c
}

// setPlaceholders publishes the token through one provider that answers
// on demand: a request pays for the placeholders its config reads, not for
// every claim (nor for growing the replacer's map).
func setPlaceholders(repl *caddy.Replacer, tok *verifier.Token) {
	repl.Map(func(key string) (any, bool) {
		name, ok := strings.CutPrefix(key, "http.auth.")
		if !ok {
			return nil, false
		}
		switch {
		case name == "jwt.token_id":
			return tok.ID, true
		case name == "jwt.binding":
			return bindingPlaceholder(tok), true
		case name == "jwt.jkt":
			return tok.JKT, tok.JKT != ""
		case name == "user.id":
			return tok.Subject, tok.Subject != ""
		case strings.HasPrefix(name, "user."):
			return tok.Claim(name[len("user."):])
		}
		return nil, false
	})
}

// challenge is the RFC 6750 WWW-Authenticate value for each failure.
func challenge(e *verifier.Error) string {
	if e.Code == verifier.CodeMissing {
		return `Bearer realm="jwtguard"`
	}
	return `Bearer realm="jwtguard", error="invalid_token", error_description="` + e.Reason + `"`
}

// reject answers a failed request: 401 for a bad or missing token, 503
// when the server cannot tell (keys not loaded, revocation list down).
func (h *Handler) reject(w http.ResponseWriter, repl *caddy.Replacer, raw string, e *verifier.Error) error {
	return h.refuse(w, repl, raw, e, nil)
}

// refuse is reject with the dpop package's refusal, when it made one, for
// the DPoP challenge it asks for.
func (h *Handler) refuse(w http.ResponseWriter, repl *caddy.Replacer, raw string, e *verifier.Error, dp *dpop.Error) error {
	countResult(string(e.Code))
	repl.Set("http.auth.jwt.error", string(e.Code))
	if c := h.logger.Check(zapcore.DebugLevel, "token rejected"); c != nil {
		fields := []zap.Field{zap.String("error", string(e.Code)), zap.String("reason", e.Reason)}
		if raw != "" {
			if t, err := verifier.Inspect(raw); err == nil {
				fields = append(fields, zap.String("token_id", t.ID))
			}
		}
		c.Write(fields...)
	}
	status := http.StatusUnauthorized
	switch e.Code {
	case verifier.CodeKeysUnavailable, verifier.CodeStoreUnavailable:
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	default:
		if h.proofs != nil {
			h.dpopChallenges(w, e, dp)
		} else {
			w.Header().Set("WWW-Authenticate", challenge(e))
		}
	}
	return caddyhttp.Error(status, e)
}

// sweep drops expired tokens from the cache, and idle tokens from the
// detector, once a minute, so that tokens nobody sends again do not hold
// memory until evicted.
func (h *Handler) sweep(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.verifier.SweepCache()
			if h.detector != nil {
				h.detector.Sweep()
			}
		}
	}
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
