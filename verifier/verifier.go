// Package verifier extracts JSON Web Tokens from HTTP requests and verifies
// them: signature, algorithm, and the claim rules of jwtguard. It imports
// nothing from Caddy, so it can be tested and reused on its own.
//
// golang-jwt does the signature arithmetic. Parsing is done here, because
// the rules are stricter than golang-jwt's (duplicate claim names, canonical
// base64url, a 16 KiB limit) and because the first sight of a token must
// stay cheap.
package verifier

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// MaxTokenLength is the longest token accepted, in bytes; a longer one is
// malformed and is not parsed at all.
const MaxTokenLength = 16 << 10

// KeySet is a source of keys that change at run time, such as a JWK Set.
type KeySet interface {
	// Keys returns the keys for a token with this kid and (unverified)
	// iss: those whose kid equals kid, or every key when kid is empty.
	// loaded is false while the set has never been loaded.
	Keys(kid, iss string) (keys []*Key, loaded bool)
}

// Config is what a Verifier checks.
type Config struct {
	// Keys are static keys (secret, public_key), tried in order.
	Keys []*Key
	// KeySets are dynamic keys (jwks, oidc), selected by kid.
	KeySets []KeySet
	// Algorithms is the allow-list; zero means every algorithm the keys
	// can verify.
	Algorithms AlgorithmSet
	// Issuers, when not empty, is the set of accepted iss values.
	Issuers []string
	// Audiences, when not empty: aud must contain one of them.
	Audiences []string
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration
	// MaxLifetime, when positive, rejects tokens whose exp - iat exceeds
	// it, and tokens with no iat.
	MaxLifetime time.Duration
	// Require lists claims that must be present (exp always is).
	Require []string
	// TokenTypes, when not empty, is the set of accepted typ headers.
	TokenTypes []string
	// HeaderClaims are the claims (dot paths allowed) that the caller
	// writes into request headers: they are rendered once per token and a
	// control character in one of them fails the token.
	HeaderClaims []string
	// AllowBound lets tokens with a cnf claim through, for a caller that
	// checks their proof of possession itself (DPoP, mutual TLS) with
	// Token.JKT and Token.X5T. False (the default) refuses them with
	// CodeBinding: a bound token is never a plain bearer token.
	AllowBound bool
	// EventTokens is for the verifier of Security Event Tokens (RFC 8417)
	// and OpenID back-channel logout tokens, never of access tokens: it
	// lets tokens with a secevent+jwt or logout+jwt typ, or an events
	// claim, through (the caller checks which kind it expects), and does
	// not require exp, which SETs lack (an exp present is still
	// enforced). False, the default, refuses such tokens with CodeType.
	EventTokens bool
	// CacheEntries bounds the cache of verified tokens; 0 means
	// DefaultCacheEntries, negative disables the cache.
	CacheEntries int
	// CacheBytes bounds the cache's memory; 0 means DefaultCacheBytes.
	CacheBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier verifies tokens against one Config. It is safe for concurrent use.
type Verifier struct {
	cfg   Config
	algs  AlgorithmSet
	types []string
	cache *cache
	now   func() time.Time
}

// New checks cfg and returns a Verifier for it.
func New(cfg Config) (*Verifier, error) {
	if len(cfg.Keys) == 0 && len(cfg.KeySets) == 0 {
		return nil, errors.New("no verification key: configure secret, public_key, jwks or oidc")
	}
	var possible AlgorithmSet
	for _, k := range cfg.Keys {
		possible |= k.algs
	}
	if len(cfg.KeySets) > 0 {
		possible |= asymmetricAlgos
	}
	algs := cfg.Algorithms
	if algs == 0 {
		algs = possible
	} else if extra := algs &^ possible; extra != 0 {
		return nil, fmt.Errorf("algorithms: no configured key can verify %s%s", extra, hmacHint(extra, cfg.Keys))
	}
	for _, c := range cfg.Require {
		if c == "" {
			return nil, errors.New("require: empty claim name")
		}
	}
	v := &Verifier{cfg: cfg, algs: algs, now: cfg.Now}
	if v.now == nil {
		v.now = time.Now
	}
	for _, t := range cfg.TokenTypes {
		v.types = append(v.types, normalizeType(t))
	}
	if cfg.CacheEntries >= 0 {
		v.cache = newCache(cfg.CacheEntries, cfg.CacheBytes)
	}
	return v, nil
}

func hmacHint(extra AlgorithmSet, keys []*Key) string {
	if extra&hmacAlgorithms == 0 {
		return ""
	}
	for _, k := range keys {
		if _, ok := k.material.([]byte); ok {
			return " (HS384 needs a secret of at least 48 bytes, HS512 of at least 64)"
		}
	}
	return ""
}

// Algorithms returns the allow-list in force.
func (v *Verifier) Algorithms() AlgorithmSet { return v.algs }

// Verify verifies a token and returns its claims. A token seen before and
// still cached skips parsing and signature checks; its time-based claims
// are checked again against the current time. Errors are *Error.
func (v *Verifier) Verify(token string) (*Token, error) {
	now := v.now()
	var h, gen uint64
	if v.cache != nil {
		gen = v.cache.gen.Load()
		h = v.cache.hash(token)
		if t := v.cache.get(token, h); t != nil {
			if err := v.checkTimes(t, now); err != nil {
				if err == errExpired {
					v.cache.remove(token)
				}
				return nil, err
			}
			return t, nil
		}
	}
	t, err := v.verify(token, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(token, h, gen, t, unixSeconds(now))
	}
	return t, nil
}

// FlushCache forgets every cached token, for when keys are removed.
func (v *Verifier) FlushCache() {
	if v.cache != nil {
		v.cache.clear()
	}
}

// SweepCache drops cached tokens that have expired.
func (v *Verifier) SweepCache() {
	if v.cache != nil {
		v.cache.sweep(unixSeconds(v.now()) - v.cfg.Leeway.Seconds())
	}
}

func (v *Verifier) verify(token string, now time.Time) (*Token, error) {
	p, err := parse(token)
	if err != nil {
		return nil, err
	}
	t := &p.Token

	alg, ok := ParseAlgorithm(p.alg)
	if p.alg == "" {
		return nil, errNoAlg
	}
	if !ok || !v.algs.Has(alg) {
		return nil, errAlgorithm
	}
	if err := v.checkSignature(p, alg); err != nil {
		return nil, err
	}
	// Whatever token_type allows: a logout token or a SET presented as an
	// access token is a token replayed at the wrong door.
	if (p.events || isEventType(t.Type)) && !v.cfg.EventTokens {
		return nil, errEventToken
	}
	if len(v.types) > 0 && !v.typeAccepted(t.Type) {
		return nil, errType
	}
	if p.claimsErr != nil {
		return nil, p.claimsErr
	}
	if !t.hasExp && !v.cfg.EventTokens {
		return nil, errNoExp
	}
	for _, name := range v.cfg.Require {
		if _, ok := t.raw(name); !ok {
			return nil, fail(CodeClaims, "required claim missing")
		}
	}
	if len(v.cfg.HeaderClaims) > 0 {
		if n := len(v.cfg.HeaderClaims); n <= len(p.headerSpace) {
			t.headers = p.headerSpace[:n]
		} else {
			t.headers = make([]headerClaim, n)
		}
		for i, path := range v.cfg.HeaderClaims {
			val, ok := t.lookupPath(path)
			if !ok {
				continue
			}
			if hasControlChar(val) {
				return nil, errControlChar
			}
			t.headers[i] = headerClaim{val, true}
		}
	}
	if err := v.checkTimes(t, now); err != nil {
		return nil, err
	}
	if len(v.cfg.Issuers) > 0 && !contains(v.cfg.Issuers, t.Issuer) {
		return nil, errIssuer
	}
	if len(v.cfg.Audiences) > 0 && !intersects(v.cfg.Audiences, t.Audience) {
		return nil, errAudience
	}
	if v.cfg.MaxLifetime > 0 {
		if !t.hasIat {
			return nil, errNoIat
		}
		if t.exp-t.iat > v.cfg.MaxLifetime.Seconds() {
			return nil, errLifetime
		}
	}
	// Refused before the cache sees it: a bound token accepted without its
	// proof would make a copied token as good as the key it is bound to.
	if t.Bound && !v.cfg.AllowBound {
		return nil, errBound
	}
	t.ID = tokenID(t, token[:p.signingInputLen])
	return t, nil
}

// checkSignature finds a key for the token and verifies the signature.
func (v *Verifier) checkSignature(p *parsed, alg Algorithm) error {
	input := p.raw[:p.signingInputLen]
	tried, selected, unloaded := false, false, false
	for _, k := range v.cfg.Keys {
		if !k.algs.Has(alg) || (k.Issuer != "" && k.Issuer != p.Issuer) {
			continue
		}
		tried = true
		if k.verify(alg, input, p.sig) {
			p.Token.Key = k
			return nil
		}
	}
	// JWK Sets never hold HMAC keys: an HS token cannot need them, and must
	// not get keys_unavailable while they load.
	sets := v.cfg.KeySets
	if AlgorithmSet(alg)&hmacAlgorithms != 0 {
		sets = nil
	}
	for _, ks := range sets {
		keys, loaded := ks.Keys(p.KeyID, p.Issuer)
		if !loaded {
			unloaded = true
			continue
		}
		for _, k := range keys {
			if k.Issuer != "" && k.Issuer != p.Issuer {
				continue
			}
			selected = true
			if !k.algs.Has(alg) {
				continue
			}
			tried = true
			if k.verify(alg, input, p.sig) {
				p.Token.Key = k
				return nil
			}
		}
	}
	switch {
	case !tried && selected:
		return errKeyAlgorithm
	case unloaded:
		return errKeysUnavail
	case !tried && len(sets) == 0:
		return errKeyAlgorithm
	}
	return errSignature
}

// checkTimes applies exp, nbf and iat against now, with leeway.
func (v *Verifier) checkTimes(t *Token, now time.Time) error {
	n := unixSeconds(now)
	leeway := v.cfg.Leeway.Seconds()
	if t.hasExp && n-leeway >= t.exp {
		return errExpired
	}
	if t.hasNbf && n+leeway < t.nbf {
		return errNotBefore
	}
	if t.hasIat && n+leeway < t.iat {
		return errIssuedAt
	}
	return nil
}

func (v *Verifier) typeAccepted(typ string) bool {
	if typ == "" {
		return false
	}
	typ = normalizeType(typ)
	for _, t := range v.types {
		if t == typ {
			return true
		}
	}
	return false
}

// isEventType reports the typ of a Security Event Token (RFC 8417) or a
// logout token (OpenID Connect Back-Channel Logout), compared as
// normalizeType does and without allocating; a media type parameter is
// ignored, since this list refuses rather than accepts.
func isEventType(typ string) bool {
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	if i := strings.IndexByte(typ, ';'); i >= 0 {
		typ = strings.TrimRight(typ[:i], " \t")
	}
	return strings.EqualFold(typ, "secevent+jwt") || strings.EqualFold(typ, "logout+jwt")
}

// normalizeType compares media types as RFC 7515 §4.1.9 says: without
// case, and with the "application/" prefix optional.
func normalizeType(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// tokenID is "<iss>#<jti>" when the token has a jti, otherwise a hash of
// its signing input: the signature is left out so that re-encoding it
// cannot dodge a revocation.
func tokenID(t *Token, signingInput string) string {
	if t.hasJTI {
		return t.Issuer + "#" + t.JTI
	}
	sum := sha256.Sum256(bytesOf(signingInput))
	return "sha256:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// bytesOf views a string as bytes without copying; callers only read them.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// parsed is a token taken apart but not yet verified. It carries room for
// a usual token's claims and claim headers, so that taking a token apart
// costs two allocations (this and the decoded segments); a verified Token
// keeps pointing into it.
type parsed struct {
	Token
	raw             string
	signingInputLen int
	alg             string
	sig             []byte
	claimsErr       error
	events          bool // an events claim: a SET or logout token

	memberSpace [12]member
	headerSpace [4]headerClaim
}

var strictB64 = base64.RawURLEncoding.Strict()

// parse splits, decodes and reads a token without checking its signature.
func parse(token string) (*parsed, error) {
	if len(token) > MaxTokenLength {
		return nil, errTooLong
	}
	// The strict decoder rejects every byte outside the base64url
	// alphabet, padding included, except CR and LF, which it skips.
	dot1 := strings.IndexByte(token, '.')
	dot2 := -1
	if dot1 > 0 {
		if dot2 = strings.IndexByte(token[dot1+1:], '.'); dot2 >= 0 {
			dot2 += dot1 + 1
		}
	}
	if dot2 <= dot1+1 || strings.IndexByte(token[dot2+1:], '.') >= 0 ||
		strings.IndexByte(token, '\n') >= 0 || strings.IndexByte(token, '\r') >= 0 {
		return nil, errSegments
	}
	h, pl, s := token[:dot1], token[dot1+1:dot2], token[dot2+1:]

	// One buffer for the three decoded segments. The header and payload
	// are read as strings that alias it: it is never written again, and
	// the claims keep it alive for as long as the token lives.
	buf := make([]byte, strictB64.DecodedLen(len(h))+strictB64.DecodedLen(len(pl))+strictB64.DecodedLen(len(s)))
	hn, err := strictB64.Decode(buf, bytesOf(h))
	if err != nil {
		return nil, errSegments
	}
	pn, err := strictB64.Decode(buf[hn:], bytesOf(pl))
	if err != nil {
		return nil, errSegments
	}
	sn, err := strictB64.Decode(buf[hn+pn:], bytesOf(s))
	if err != nil {
		return nil, errSegments
	}
	header := unsafe.String(unsafe.SliceData(buf), hn)
	payload := unsafe.String(unsafe.SliceData(buf[hn:]), pn)

	p := &parsed{raw: token, signingInputLen: dot2, sig: buf[hn+pn : hn+pn+sn : hn+pn+sn]}
	var hm [8]member
	hdr, err := parseObject(header, hm[:0])
	if err != nil {
		return nil, errHeaderJSON
	}
	for _, m := range hdr {
		switch m.name {
		case "alg", "kid", "typ":
			if jsonKind(m.raw) != 's' {
				return nil, fail(CodeMalformed, "token header "+m.name+" is not a string")
			}
			val := unquote(m.raw)
			switch m.name {
			case "alg":
				p.alg = val
			case "kid":
				p.KeyID = val
			default:
				p.Type = val
			}
		case "crit":
			// RFC 7515 §4.1.11: extensions we do not understand make
			// the token invalid; we understand none.
			return nil, errCrit
		}
	}
	p.Algorithm = p.alg

	claims, err := parseObject(payload, p.memberSpace[:0])
	if err != nil {
		return nil, errPayloadJSON
	}
	p.readClaims(claims)
	return p, nil
}

// readClaims fills the registered claims and records the first claim of
// the wrong JSON type, which is reported only after the signature checks.
func (p *parsed) readClaims(claims []member) {
	t := &p.Token
	t.claims = claims
	bad := func(name, want string) {
		if p.claimsErr == nil {
			p.claimsErr = fail(CodeClaims, name+" claim is not "+want)
		}
	}
	for _, m := range claims {
		kind := jsonKind(m.raw)
		switch m.name {
		case "exp", "nbf", "iat":
			if kind != 'n' {
				bad(m.name, "a number")
				continue
			}
			f, ok := NumericDate(m.raw)
			if !ok {
				bad(m.name, "a usable date")
				continue
			}
			switch m.name {
			case "exp":
				t.exp, t.hasExp = f, true
			case "nbf":
				t.nbf, t.hasNbf = f, true
			default:
				t.iat, t.hasIat = f, true
			}
		case "iss", "sub", "jti", "sid":
			// sid too: a session revocation must not be dodged by a
			// token whose sid is a number or an object.
			if kind != 's' {
				bad(m.name, "a string")
				continue
			}
			switch m.name {
			case "iss":
				t.Issuer = unquote(m.raw)
			case "sub":
				t.Subject = unquote(m.raw)
			case "sid":
				t.SID = unquote(m.raw)
			default:
				t.JTI, t.hasJTI = unquote(m.raw), true
			}
		case "events":
			p.events = true // any value, null included
		case "cnf":
			p.readConfirmation(m.raw, kind, bad)
		case "aud":
			switch kind {
			case 's':
				t.Audience = []string{unquote(m.raw)}
			case 'a':
				strs := true
				forEachElement(m.raw, func(e string) {
					strs = strs && jsonKind(e) == 's'
					if strs {
						t.Audience = append(t.Audience, unquote(e))
					}
				})
				if !strs {
					bad("aud", "a string or an array of strings")
					t.Audience = nil
				}
			default:
				bad("aud", "a string or an array of strings")
			}
		}
	}
}

// readConfirmation reads the cnf claim (RFC 7800) in the same pass as the
// other claims: any member makes the token bound, and the two thumbprints
// jwtguard can check must be strings.
func (p *parsed) readConfirmation(raw string, kind byte, bad func(name, want string)) {
	if kind != 'o' {
		bad("cnf", "an object")
		return
	}
	var space [4]member
	// Validated with the claim set already; a list on the stack keeps a
	// usual cnf free of allocation.
	members, _ := parseObject(raw, space[:0])
	t := &p.Token
	for _, m := range members {
		t.Bound = true
		if m.name != "jkt" && m.name != "x5t#S256" {
			continue
		}
		if jsonKind(m.raw) != 's' {
			bad("cnf "+m.name, "a string")
			continue
		}
		if m.name == "jkt" {
			t.JKT = unquote(m.raw)
		} else {
			t.X5T = unquote(m.raw)
		}
	}
}

// Inspect reads a token without verifying it, for callers that need its
// id or expiry (such as revoking a token given by an administrator). Its
// claims must not be trusted.
func Inspect(token string) (*Token, error) {
	p, err := parse(token)
	if err != nil {
		return nil, err
	}
	if p.claimsErr != nil {
		return nil, p.claimsErr
	}
	p.Token.ID = tokenID(&p.Token, token[:p.signingInputLen])
	return &p.Token, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func intersects(want, have []string) bool {
	for _, h := range have {
		if contains(want, h) {
			return true
		}
	}
	return false
}

// hasControlChar reports the characters that must not reach a header:
// C0 controls other than tab, and DEL.
func hasControlChar(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}
