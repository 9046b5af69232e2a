// Package dpop verifies DPoP proofs (RFC 9449) for requests that present a
// DPoP-bound access token: every check of RFC 9449 §4.3, the RFC 7638
// thumbprint that binds the proof's key to the token's cnf.jkt, a replay
// cache, and stateless server nonces. It imports nothing from Caddy.
//
// The caller verifies the access token first (verifier with AllowBound),
// then passes the proof, the request as the client sent it, the token and
// its cnf.jkt to Verifier.Verify. golang-jwt does the signature
// arithmetic, as in verifier; parsing is done here, strictly.
package dpop

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// Defaults, as the SPEC's dpop block gives them.
const (
	DefaultMaxAge = 60 * time.Second
	DefaultLeeway = 5 * time.Second
)

// DefaultAlgorithms are the proof algorithms accepted when none are
// configured: every asymmetric algorithm jwtguard verifies.
var DefaultAlgorithms = []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA"}

const (
	// MaxProofLength bounds a proof, in bytes; a longer one is not parsed.
	// A proof with an 8192-bit RSA key is under 3 KiB.
	MaxProofLength = 8 << 10
	// MaxJTILength bounds jti, which the replay cache hashes (and a
	// shared cache stores): a UUID is 36 bytes.
	MaxJTILength = 256
)

// Config is what a Verifier checks.
type Config struct {
	// Algorithms are the accepted proof algorithms (JWS names; "Ed25519"
	// is read as EdDSA). Empty means DefaultAlgorithms; "none" and the
	// HMAC algorithms are a configuration error.
	Algorithms []string
	// MaxAge is how old a proof's iat may be; 0 means DefaultMaxAge.
	MaxAge time.Duration
	// Leeway is how far in the future a proof's iat may be; 0 means
	// DefaultLeeway, a negative value none.
	Leeway time.Duration
	// RequireNonce requires a server nonce in every proof (RFC 9449 §8).
	RequireNonce bool
	// Nonces issues and checks nonces when RequireNonce is set; nil means
	// a NewNonces with a random secret (good for this process only).
	Nonces NonceSource
	// Origin, when set (scheme://host[:port]), replaces the request's
	// scheme and host in the URL htu must match: for TLS ended in front of
	// the server, or a Host rewritten by a proxy.
	Origin string
	// Replay remembers accepted proofs; nil means a LocalReplayCache of
	// ReplayEntries entries.
	Replay ReplayCache
	// ReplayEntries sizes the default replay cache; 0 means
	// DefaultReplayEntries.
	ReplayEntries int
	// RememberFor, when set, is how long past its iat a proof's jti is
	// kept in Replay, used when longer than MaxAge. Verifiers sharing one
	// replay cache with different max_age (other routes, or a reload that
	// raised it) give the largest any of them has had: an entry kept only
	// for the shorter window would let the proof be replayed on the route
	// with the longer one.
	RememberFor func() time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier checks DPoP proofs against one Config. It is safe for
// concurrent use.
type Verifier struct {
	algs      verifier.AlgorithmSet
	names     []string
	algsParam string
	maxAge    float64 // seconds
	leeway    float64
	remember  func() time.Duration
	window    time.Duration
	origin    []byte // normal form of Config.Origin; nil without one
	nonces    NonceSource
	replay    ReplayCache
	headers   *headerCache
	now       func() time.Time
	// checkSig is the signature check, a field so that the benchmark can
	// measure everything else on its own.
	checkSig func(alg verifier.Algorithm, input string, sig []byte, pub any) bool
}

// checkSignature verifies with golang-jwt, as verifier does.
func checkSignature(alg verifier.Algorithm, input string, sig []byte, pub any) bool {
	return methods[alg].Verify(input, sig, pub) == nil
}

// Request is what Verify needs of the request and its access token.
type Request struct {
	// Method is the request method.
	Method string
	// Scheme, Host and Path are the request URL as the client sent it,
	// before any rewrite: "https" on a TLS connection, else "http"; the
	// Host header; the escaped path (URL.EscapedPath of the original
	// request). A query in Path is ignored. With Config.Origin, Scheme
	// and Host are not used.
	Scheme, Host, Path string
	// AccessToken is the token from Authorization: DPoP, for ath.
	AccessToken string
	// JKT is the verified token's cnf.jkt.
	JKT string
}

// Result describes a proof that passed.
type Result struct {
	// Thumbprint is the RFC 7638 thumbprint of the proof's key: the
	// token's cnf.jkt.
	Thumbprint string
	// JTI is the proof's jti (client-chosen text).
	JTI string
	// IssuedAt is the proof's iat.
	IssuedAt time.Time
	// Nonce, when nonces are required and the proof's nonce is not the
	// current one, is a fresh nonce to send in DPoP-Nonce (RFC 9449 §8.2),
	// so the client moves on before its nonce expires.
	Nonce string
}

// methods maps each proof algorithm to golang-jwt's implementation.
var methods = map[verifier.Algorithm]jwt.SigningMethod{
	verifier.RS256: jwt.SigningMethodRS256, verifier.RS384: jwt.SigningMethodRS384, verifier.RS512: jwt.SigningMethodRS512,
	verifier.PS256: jwt.SigningMethodPS256, verifier.PS384: jwt.SigningMethodPS384, verifier.PS512: jwt.SigningMethodPS512,
	verifier.ES256: jwt.SigningMethodES256, verifier.ES384: jwt.SigningMethodES384, verifier.ES512: jwt.SigningMethodES512,
	verifier.EdDSA: jwt.SigningMethodEdDSA,
}

// parseAlgorithm reads a proof algorithm name: an asymmetric one verifier
// knows, with "Ed25519" (RFC 9864's fully specified name) as EdDSA, whose
// only curve jwtguard accepts is Ed25519.
func parseAlgorithm(name string) (verifier.Algorithm, bool) {
	if name == "Ed25519" {
		return verifier.EdDSA, true
	}
	a, ok := verifier.ParseAlgorithm(name)
	if !ok || methods[a] == nil {
		return 0, false
	}
	return a, true
}

// New checks cfg and returns a Verifier for it.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{now: cfg.Now, replay: cfg.Replay, headers: newHeaderCache(), checkSig: checkSignature}
	if v.now == nil {
		v.now = time.Now
	}
	names := cfg.Algorithms
	if len(names) == 0 {
		names = DefaultAlgorithms
	}
	for _, name := range names {
		a, ok := parseAlgorithm(name)
		if !ok {
			if _, known := verifier.ParseAlgorithm(name); known || strings.EqualFold(name, "none") {
				return nil, fmt.Errorf("dpop algorithms: %s cannot sign a proof: proofs are signed with the client's private key", name)
			}
			return nil, fmt.Errorf("dpop algorithms: unknown algorithm %q", name)
		}
		v.algs |= verifier.AlgorithmSet(a)
	}
	// Listed in DefaultAlgorithms' order, the SPEC's: small, fast EC
	// proofs first.
	for _, name := range DefaultAlgorithms {
		if a, _ := parseAlgorithm(name); v.algs.Has(a) {
			v.names = append(v.names, name)
		}
	}
	v.algsParam = strings.Join(v.names, " ")

	maxAge, leeway := cfg.MaxAge, cfg.Leeway
	switch {
	case maxAge == 0:
		maxAge = DefaultMaxAge
	case maxAge < 0:
		return nil, errors.New("dpop max_age: must be positive")
	}
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	v.maxAge, v.leeway = maxAge.Seconds(), leeway.Seconds()
	v.remember = cfg.RememberFor
	v.window = maxAge + leeway

	if cfg.Origin != "" {
		scheme, authority, path, ok := splitURI(cfg.Origin)
		ok = ok && (path == "" || path == "/") && !strings.ContainsAny(cfg.Origin, "?#")
		if ok {
			v.origin, ok = appendOrigin(nil, scheme, authority)
			ok = ok && (bytes.HasPrefix(v.origin, []byte("https://")) || bytes.HasPrefix(v.origin, []byte("http://")))
		}
		if !ok {
			return nil, fmt.Errorf("dpop origin: %q is not scheme://host[:port] with scheme http or https", cfg.Origin)
		}
	}
	if cfg.RequireNonce {
		v.nonces = cfg.Nonces
		if v.nonces == nil {
			n, err := NewNonces(nil, v.now)
			if err != nil {
				return nil, err
			}
			v.nonces = n
		}
	}
	if v.replay == nil {
		v.replay = NewReplayCache(cfg.ReplayEntries, v.now)
	}
	return v, nil
}

// Algorithms returns the accepted proof algorithms, in a fixed order.
func (v *Verifier) Algorithms() []string { return v.names }

// Window is how long a proof can be accepted after it is first seen,
// MaxAge + Leeway: how long a replay cache must remember its jti.
func (v *Verifier) Window() time.Duration { return v.window }

// Nonce returns the current nonce, or "" when nonces are not required.
func (v *Verifier) Nonce() string {
	if v.nonces == nil {
		return ""
	}
	return v.nonces.Nonce()
}

// Challenge returns the DPoP challenge for WWW-Authenticate (RFC 9449
// §7.1): the algs parameter, and the error and its description when err
// is not nil. The handler adds the Bearer challenge unless dpop is
// required, and DPoP-Nonce from err.Nonce.
func (v *Verifier) Challenge(err *Error) string {
	c := `DPoP algs="` + v.algsParam + `"`
	if err != nil && err.Challenge != "" {
		c += `, error="` + err.Challenge + `", error_description="` + err.Reason + `"`
	}
	return c
}

// ProofHeader returns the one DPoP header of a request (h holds Go's
// canonical names, as net/http makes them). None, an empty one, or more
// than one is an *Error: RFC 9449 §4.3 allows exactly one proof.
func ProofHeader(h http.Header) (string, error) {
	return ProofValues(h["Dpop"])
}

// ProofValues is ProofHeader for the values of the DPoP header, for a
// caller that has looked them up already.
func ProofValues(vals []string) (string, error) {
	switch {
	case len(vals) > 1:
		return "", errRepeated
	case len(vals) == 0 || vals[0] == "":
		return "", errMissing
	}
	return vals[0], nil
}

// proof is a proof taken apart, its signature not yet checked.
type proof struct {
	hdr          *proofHeader
	cached       bool   // hdr came from the cache
	hdrSegment   string // the header's base64url text
	signingInput string
	sig          []byte
	jti, htm     string
	htu, ath     string
	nonce        string
	hasNonce     bool
	iat          float64
}

// Verify checks a DPoP proof for a request carrying a DPoP-bound token
// that the caller has verified. The checks that cost little come first;
// the signature, then the binding to the token, then the replay cache,
// which only ever records proofs that passed everything else. Errors are
// *Error.
func (v *Verifier) Verify(proofJWT string, req Request) (Result, error) {
	if req.JKT == "" {
		return Result{}, errUnbound
	}
	if req.AccessToken == "" {
		return Result{}, errNoToken
	}
	var p proof
	e := v.parse(proofJWT, &p)
	if e != nil {
		return Result{}, e
	}
	if p.htm != req.Method {
		return Result{}, errMethod
	}
	if !v.urlMatches(p.htu, &req) {
		return Result{}, errURL
	}
	// The age is checked against the proof's expiry in nanoseconds, the
	// number the replay cache keeps: a replay that passes this check finds
	// its first use's entry unexpired at the same instant.
	now := v.now().UnixNano()
	nowSec := float64(now) / 1e9
	if p.iat > nowSec+v.leeway {
		return Result{}, errFuture
	}
	if p.iat < nowSec-v.maxAge-1 { // and so until below is in range
		return Result{}, errTooOld
	}
	until := int64(math.Ceil((p.iat + v.maxAge) * 1e9))
	if until < now {
		return Result{}, errTooOld
	}
	hd := p.hdr
	if !hd.athMatches(req.AccessToken, p.ath) {
		return Result{}, errATH
	}
	var res Result
	if v.nonces != nil {
		if !p.hasNonce || !v.nonces.Check(p.nonce) {
			reason := "DPoP nonce required"
			if p.hasNonce {
				reason = "DPoP nonce not current"
			}
			return Result{}, &Error{Code: CodeDPoP, Challenge: ErrorUseNonce, Reason: reason, Nonce: v.nonces.Nonce()}
		}
		if cur := v.nonces.Nonce(); p.nonce != cur {
			res.Nonce = cur
		}
	}

	if !p.cached {
		if hd.pub, e = hd.jwk.publicKey(hd.alg); e != nil {
			return Result{}, e
		}
	}
	if !v.checkSig(hd.alg, p.signingInput, p.sig, hd.pub) {
		return Result{}, errSignature
	}
	if !p.cached {
		tp, ok := hd.jwk.appendThumbprint(make([]byte, 0, thumbprintLen))
		if !ok {
			return Result{}, errJWK
		}
		hd.thumbprint = string(tp)
	}
	if hd.thumbprint != req.JKT {
		return Result{}, errMismatch
	}

	// Remembered until no age check could pass it any more. A cache with
	// its own clock (not a ReplayCacheAt) may read a later instant than
	// now, find the first use's entry just expired and take a replay for
	// a first sighting: the age is checked again after it answers.
	keep := until
	if v.remember != nil {
		if r := v.remember().Seconds(); r > v.maxAge {
			keep = int64(math.Ceil((p.iat + r) * 1e9))
		}
	}
	var first bool
	var err error
	if at, ok := v.replay.(ReplayCacheAt); ok {
		first, err = at.SeenAt(p.jti, keep, now)
	} else {
		first, err = v.replay.Seen(p.jti, time.Unix(0, keep))
		if err == nil && first && until < v.now().UnixNano() {
			return Result{}, errTooOld
		}
	}
	switch {
	case errors.Is(err, ErrReplayCacheFull):
		return Result{}, errFull
	case errors.Is(err, ErrProofExpired):
		return Result{}, errTooOld
	case err != nil:
		return Result{}, errReplayIO
	case !first:
		return Result{}, errReplay
	}
	if !p.cached {
		v.headers.put(strings.Clone(p.hdrSegment), hd)
	}
	res.Thumbprint, res.JTI, res.IssuedAt = hd.thumbprint, p.jti, fromUnixSeconds(p.iat)
	return res, nil
}

// urlMatches compares htu with the request URL in their normal forms,
// or first as text: a client usually writes htu exactly as it sends the
// URL, and the same text names the same resource without normalising.
func (v *Verifier) urlMatches(htu string, req *Request) bool {
	reqPath, _, _ := strings.Cut(req.Path, "?")
	if v.sameText(htu, req, reqPath) {
		return true
	}
	scheme, authority, path, ok := splitURI(htu)
	if !ok {
		return false
	}
	var a, b [256]byte
	want, ok := appendOrigin(a[:0], scheme, authority)
	if !ok {
		return false
	}
	if want, ok = appendPath(want, path); !ok {
		return false
	}
	got := b[:0]
	if v.origin != nil {
		got = append(got, v.origin...)
	} else if got, ok = appendOrigin(got, req.Scheme, req.Host); !ok {
		return false
	}
	if got, ok = appendPath(got, reqPath); !ok {
		return false
	}
	return bytes.Equal(want, got)
}

// sameText reports whether htu is, byte for byte, the request's scheme,
// "://", host and path (or the origin and path), in characters that need
// no normalising: no percent-encoding, nothing a URI may not hold raw, and
// nothing that would split the text into other parts than the request's.
func (v *Verifier) sameText(htu string, req *Request, path string) bool {
	var prefix, host string
	if v.origin != nil {
		prefix = unsafe.String(unsafe.SliceData(v.origin), len(v.origin))
	} else {
		if req.Scheme != "https" && req.Scheme != "http" || req.Host == "" {
			return false
		}
		prefix, host = req.Scheme, req.Host
	}
	n := len(prefix)
	if host != "" {
		n += 3 + len(host)
	}
	if len(htu) != n+len(path) || path == "" || htu[:len(prefix)] != prefix || htu[n:] != path {
		return false
	}
	if host != "" {
		if htu[len(prefix):len(prefix)+3] != "://" || htu[len(prefix)+3:n] != host {
			return false
		}
		for i := 0; i < len(host); i++ {
			if c := host[i]; !plainByte[c] || c == '/' || c == '@' {
				return false
			}
		}
	}
	for i := n; i < len(htu); i++ {
		if !plainByte[htu[i]] {
			return false
		}
	}
	return true
}

// plainByte marks the characters a URI holds raw with one meaning:
// unreserved, sub-delims, ':', '@', '/', and '[' ']' of IP literals.
var plainByte = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		t[c] = isUnreserved(b) || isSubDelim(b) || strings.IndexByte(":@/[]", b) >= 0
	}
	return t
}()

// parse splits, decodes and reads a proof into p, and checks everything
// that needs neither the request nor the signature.
func (v *Verifier) parse(s string, p *proof) *Error {
	if s == "" {
		return errMissing
	}
	if len(s) > MaxProofLength {
		return errTooLong
	}
	dot1 := strings.IndexByte(s, '.')
	if dot1 <= 0 {
		return errSegments
	}
	dot2 := strings.IndexByte(s[dot1+1:], '.') + dot1 + 1
	if dot2 <= dot1+1 || dot2 == len(s)-1 || strings.IndexByte(s[dot2+1:], '.') >= 0 {
		return errSegments
	}
	h, pl, sg := s[:dot1], s[dot1+1:dot2], s[dot2+1:]
	p.hdrSegment, p.signingInput = h, s[:dot2]
	p.hdr = v.headers.get(h)
	p.cached = p.hdr != nil
	// The strict decoder refuses every byte outside the base64url
	// alphabet, padding included, except CR and LF, which it skips. A
	// cached header is the text of one that passed: only the rest needs
	// looking at.
	rest := s
	if p.cached {
		rest = s[dot1:]
	}
	if strings.IndexByte(rest, '\n') >= 0 || strings.IndexByte(rest, '\r') >= 0 {
		return errSegments
	}
	// One buffer for the segments decoded; header and claims are read as
	// strings aliasing it, and it is never written again.
	hl := 0
	if !p.cached {
		hl = strictB64.DecodedLen(len(h))
	}
	buf := make([]byte, hl+strictB64.DecodedLen(len(pl))+strictB64.DecodedLen(len(sg)))
	var hn int
	var err error
	if !p.cached {
		if hn, err = strictB64.Decode(buf, bytesOf(h)); err != nil {
			return errSegments
		}
	}
	pn, err := strictB64.Decode(buf[hn:], bytesOf(pl))
	if err != nil {
		return errSegments
	}
	sn, err := strictB64.Decode(buf[hn+pn:], bytesOf(sg))
	if err != nil {
		return errSegments
	}
	p.sig = buf[hn+pn : hn+pn+sn : hn+pn+sn]
	if !p.cached {
		var e *Error
		if p.hdr, e = v.readHeader(unsafe.String(unsafe.SliceData(buf), hn)); e != nil {
			return e
		}
	}
	payload := unsafe.String(unsafe.SliceData(buf[hn:]), pn)

	var cm [12]verifier.JSONMember
	members, simple := simpleMembers(payload, cm[:0])
	if !simple {
		if members, err = verifier.ParseJSONObject(payload, cm[:0]); err != nil {
			return errPayloadJSON
		}
	}
	var hasJTI, hasHTM, hasHTU, hasIat, hasATH bool
	for _, m := range members {
		var dst *string
		switch m.Name {
		case "jti":
			dst, hasJTI = &p.jti, true
		case "htm":
			dst, hasHTM = &p.htm, true
		case "htu":
			dst, hasHTU = &p.htu, true
		case "ath":
			dst, hasATH = &p.ath, true
		case "nonce":
			dst, p.hasNonce = &p.nonce, true
		case "iat":
			if verifier.JSONKind(m.Raw) != 'n' {
				return errClaims
			}
			f, ok := verifier.NumericDate(m.Raw)
			if !ok {
				return errClaims
			}
			p.iat, hasIat = f, true
			continue
		default:
			continue
		}
		if verifier.JSONKind(m.Raw) != 's' {
			return errClaims
		}
		*dst = verifier.JSONUnquote(m.Raw)
	}
	if !hasJTI || p.jti == "" || len(p.jti) > MaxJTILength {
		return errJTI
	}
	if !hasHTM || !hasHTU || !hasIat || !hasATH {
		return errClaims
	}
	return nil
}

// readHeader reads a proof's JOSE header: typ, alg and jwk, checked
// against each other; the key itself is parsed later, just before the
// signature.
func (v *Verifier) readHeader(header string) (*proofHeader, *Error) {
	var hm [8]verifier.JSONMember
	members, err := verifier.ParseJSONObject(header, hm[:0])
	if err != nil {
		return nil, errHeaderJSON
	}
	var typ, alg, jwkRaw string
	for _, m := range members {
		switch m.Name {
		case "typ", "alg":
			if verifier.JSONKind(m.Raw) != 's' {
				return nil, errHeaderJSON
			}
			if m.Name == "typ" {
				typ = verifier.JSONUnquote(m.Raw)
			} else {
				alg = verifier.JSONUnquote(m.Raw)
			}
		case "jwk":
			if verifier.JSONKind(m.Raw) != 'o' {
				return nil, errJWK
			}
			jwkRaw = m.Raw
		case "crit":
			// RFC 7515 §4.1.11: extensions not understood invalidate the
			// JWS; none are understood here.
			return nil, errCrit
		}
	}
	if typ != "dpop+jwt" {
		return nil, errType
	}
	a, ok := parseAlgorithm(alg)
	if !ok || !v.algs.Has(a) {
		return nil, errAlgorithm
	}
	if jwkRaw == "" {
		return nil, errNoJWK
	}
	k, e := readJWK(jwkRaw)
	if e != nil {
		return nil, e
	}
	if !k.fits(a) {
		return nil, errKeyAlgorithm
	}
	return &proofHeader{alg: a, jwk: k}, nil
}

// fits reports whether the JWK's type (and curve) is the one alg needs;
// publicKey checks the rest later, just before the signature.
func (k *jwk) fits(alg verifier.Algorithm) bool {
	switch alg {
	case verifier.ES256, verifier.ES384, verifier.ES512:
		return k.kty == "EC" && k.crv == curves[alg].name
	case verifier.EdDSA:
		return k.kty == "OKP" && k.crv == "Ed25519"
	}
	return k.kty == "RSA"
}

func fromUnixSeconds(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// bytesOf views a string as bytes without copying; callers only read them.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
