package verifier

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Token is a verified token. It is shared between requests through the
// cache, so it is never modified after Verify returns it.
type Token struct {
	// ID is "<iss>#<jti>", or "sha256:<hash of the signing input>".
	ID        string
	Algorithm string
	KeyID     string
	Type      string
	Issuer    string
	Subject   string
	JTI       string
	// SID is the sid claim: the identity provider's session (OpenID
	// Connect), what a session revocation matches.
	SID      string
	Audience []string
	// JKT and X5T are the thumbprints the token is bound to: cnf.jkt
	// (RFC 9449, DPoP) and cnf["x5t#S256"] (RFC 8705, a client
	// certificate); "" when absent.
	JKT, X5T string
	// Bound reports a cnf claim with a confirmation method: jkt, x5t#S256
	// (even empty), or one jwtguard cannot check (RFC 7800 jwk, jwe, kid,
	// jku), which no proof can then satisfy.
	Bound bool
	// Key is the key that verified the signature.
	Key *Key

	exp, nbf, iat          float64
	hasExp, hasNbf, hasIat bool
	hasJTI                 bool

	claims  []member      // top level, in token order
	headers []headerClaim // rendered Config.HeaderClaims
}

type headerClaim struct {
	value string
	set   bool
}

// ExpiresAt returns the exp claim.
func (t *Token) ExpiresAt() time.Time { return numericDate(t.exp) }

// IssuedAt returns the iat claim; ok is false when the token has none.
func (t *Token) IssuedAt() (time.Time, bool) { return numericDate(t.iat), t.hasIat }

// IssuedAtUnix returns iat in whole seconds, rounded down, as revocation
// by subject compares it.
func (t *Token) IssuedAtUnix() (int64, bool) { return int64(math.Floor(t.iat)), t.hasIat }

func numericDate(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// HeaderClaim returns the rendered value of Config.HeaderClaims[i].
func (t *Token) HeaderClaim(i int) (string, bool) {
	if i >= len(t.headers) {
		return "", false
	}
	return t.headers[i].value, t.headers[i].set
}

// Claim returns the rendered value of a top-level claim, or of a dot path
// into nested objects ("realm.roles"). A null claim counts as absent.
func (t *Token) Claim(path string) (string, bool) { return t.lookupPath(path) }

// ClaimNames lists the top-level claims present, in token order.
func (t *Token) ClaimNames() []string {
	names := make([]string, 0, len(t.claims))
	for _, m := range t.claims {
		if m.raw != "null" {
			names = append(names, m.name)
		}
	}
	return names
}

func (t *Token) raw(name string) (string, bool) {
	for _, m := range t.claims {
		if m.name == name {
			return m.raw, m.raw != "null"
		}
	}
	return "", false
}

// lookupPath tries the whole path as a claim name first, so that namespaced
// claims such as "https://example.com/roles" work, then follows the dots.
func (t *Token) lookupPath(path string) (string, bool) {
	if raw, ok := t.raw(path); ok {
		return render(raw), true
	}
	first, rest, found := strings.Cut(path, ".")
	if !found {
		return "", false
	}
	raw, ok := t.raw(first)
	for ok && rest != "" {
		if jsonKind(raw) != 'o' {
			return "", false
		}
		var name string
		name, rest, _ = strings.Cut(rest, ".")
		raw, ok = objectMember(raw, name)
	}
	if !ok || raw == "null" {
		return "", false
	}
	return render(raw), true
}

// render turns a claim's JSON into header and placeholder text: strings as
// they are, numbers as JSON writes them, arrays as their rendered elements
// joined with ", ", objects as compact JSON.
func render(raw string) string {
	switch jsonKind(raw) {
	case 's':
		return unquote(raw)
	case 'n':
		return renderNumber(raw)
	case 'a':
		// One builder for the whole array: roles and groups claims are
		// rendered on the first sight of every token.
		var b strings.Builder
		b.Grow(len(raw))
		forEachElement(raw, func(e string) {
			if e == "null" {
				return
			}
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(render(e))
		})
		return b.String()
	case 'o':
		return compact(raw)
	}
	return raw // true, false
}

// renderNumber keeps integer literals as written (so ids beyond 2^53 keep
// their digits) and formats the rest the way encoding/json does.
func renderNumber(raw string) string {
	if !strings.ContainsAny(raw, ".eE") {
		return raw
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		return raw
	}
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		s := strconv.FormatFloat(f, 'e', -1, 64)
		// encoding/json writes e-07 as e-7
		if n := len(s); n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:]
		}
		return s
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// compact removes insignificant white space from validated JSON.
func compact(raw string) string {
	var b strings.Builder
	b.Grow(len(raw))
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString:
			b.WriteByte(c)
			if c == '\\' {
				i++
				b.WriteByte(raw[i])
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
			b.WriteByte(c)
		case c == ' ', c == '\t', c == '\n', c == '\r':
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// String is the token id, so that a token put where text is expected (a
// Caddy placeholder) shows its id and never its claims.
func (t *Token) String() string { return t.ID }
