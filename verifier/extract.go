package verifier

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// Where a token can be carried.
const (
	FromHeader = "header"
	FromCookie = "cookie"
	FromQuery  = "query"
)

// Source is one place a request may carry a token.
type Source struct {
	// Kind is FromHeader, FromCookie or FromQuery.
	Kind string `json:"kind"`
	// Name is the header field, cookie name or query parameter.
	Name string `json:"name"`
	// Scheme, for headers only, is the authentication scheme that must
	// precede the token ("Bearer"), compared case-insensitively. Empty
	// means the whole field value is the token.
	Scheme string `json:"scheme,omitempty"`
	// DPoP, for a header source with a Scheme, also accepts the DPoP
	// scheme (RFC 9449 §7.1). A handler with dpop sets it; it is not
	// configuration.
	DPoP bool `json:"-"`
}

// dpopScheme is the scheme of a DPoP-bound token (RFC 9449 §7.1).
const dpopScheme = "DPoP"

// DefaultSources is where tokens are looked for when none are configured.
var DefaultSources = []Source{{Kind: FromHeader, Name: "Authorization", Scheme: "Bearer"}}

// Extract returns the token from the first source that holds one, and the
// index of that source; ok is false when no source holds a token.
//
// repeated reports that a source holds more than one value (two
// Authorization headers of any schemes, two cookies or parameters of that
// name, empty or not); Extract stops at that source, with ok true. Only one
// value could be verified, while an upstream reading another would trust a
// token nobody checked, and RFC 6750 §2 forbids sending a token more than
// once. An empty or other-scheme first value does not make the request
// anonymous: with optional, the second value would pass unverified.
func Extract(r *http.Request, sources []Source) (token string, from int, repeated, ok bool) {
	for i := range sources {
		tok, n := sources[i].Extract(r)
		if n > 1 || tok != "" {
			return tok, i, n > 1, true
		}
	}
	return "", -1, false, false
}

// Extract returns the token this source finds in r ("" for none) and how
// many values of its name the request carries. A header holding another
// scheme, or the scheme with nothing after it, holds no token.
func (s *Source) Extract(r *http.Request) (token string, count int) {
	switch s.Kind {
	case FromHeader:
		vals := r.Header.Values(s.Name)
		if len(vals) > 0 {
			token = s.fromHeader(vals[0])
		}
		return token, len(vals)
	case FromCookie:
		for _, line := range r.Header["Cookie"] {
			count += cookieValues(line, s.Name, &token)
		}
	case FromQuery:
		count = queryValues(r.URL.RawQuery, s.Name, &token)
	}
	return token, count
}

func (s *Source) fromHeader(v string) string {
	if s.Scheme != "" {
		rest, ok := cutScheme(v, s.Scheme)
		if !ok && s.DPoP {
			rest, ok = cutScheme(v, dpopScheme)
		}
		if !ok {
			return ""
		}
		v = rest
	}
	return strings.Trim(v, " \t")
}

// cutScheme returns what follows scheme and white space in v.
func cutScheme(v, scheme string) (string, bool) {
	n := len(scheme)
	if len(v) <= n || !strings.EqualFold(v[:n], scheme) || (v[n] != ' ' && v[n] != '\t') {
		return "", false
	}
	return v[n:], true
}

// UsesDPoP reports whether the token this header source found in r came
// under the DPoP scheme rather than its own.
func (s *Source) UsesDPoP(r *http.Request) bool {
	if !s.DPoP || s.Kind != FromHeader {
		return false
	}
	vals := r.Header.Values(s.Name)
	if len(vals) == 0 {
		return false
	}
	_, own := cutScheme(vals[0], s.Scheme)
	_, dpop := cutScheme(vals[0], dpopScheme)
	return dpop && !own
}

// cookieValues counts the cookies called name in one Cookie header line,
// and sets *first to the first one's value if none was found before; it
// avoids the allocations of http.Request.Cookie, which parses every cookie.
//
// It splits and trims as net/http's readCookies does, so that every cookie
// a Go upstream would read under name counts ("token =x" is token; "token"
// without '=' is token with an empty value). It trims names with
// strings.TrimSpace, which removes more than net/http does: a spelling
// counted here that net/http skips can only refuse a request, never let a
// second value through. Values net/http would refuse (a '"' inside, a
// control character) count too, and fail verification if used.
func cookieValues(line, name string, first *string) (count int) {
	for line != "" {
		var part string
		part, line, _ = strings.Cut(line, ";")
		v, ok := cookieNamed(part, name)
		if !ok {
			continue
		}
		if count++; count == 1 && *first == "" {
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			*first = v
		}
	}
	return count
}

// cookieNamed reports whether one ';'-separated part of a Cookie line is a
// cookie called name, and returns its value: what follows the first '=',
// as net/http keeps it (space after '=' kept, trailing space trimmed).
func cookieNamed(part, name string) (value string, ok bool) {
	k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
	return v, strings.TrimSpace(k) == name
}

// queryValues counts the parameters called name in a raw query string and
// sets *first to the first one's value.
func queryValues(rawQuery, name string, first *string) (count int) {
	for rawQuery != "" {
		var part string
		part, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(part, "=")
		if queryUnescape(k) != name {
			continue
		}
		if count++; count == 1 {
			*first = queryUnescape(v)
		}
	}
	return count
}

// queryUnescape decodes a query component, allocating only when it is
// escaped; an invalid escape decodes to "", which matches nothing.
func queryUnescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	u, err := url.QueryUnescape(s)
	if err != nil {
		return ""
	}
	return u
}

// Strip removes what this source found from the request, so that the token
// does not travel upstream.
func (s *Source) Strip(r *http.Request) {
	switch s.Kind {
	case FromHeader:
		r.Header.Del(s.Name)
	case FromCookie:
		// Every spelling of the name goes (cookieNamed), and the rest are
		// kept as net/http reads them, so the upstream's view of the other
		// cookies does not change.
		var kept []string
		for _, line := range r.Header["Cookie"] {
			var parts []string
			for part := range strings.SplitSeq(line, ";") {
				if _, ok := cookieNamed(part, s.Name); ok {
					continue
				}
				if part = textproto.TrimString(part); part != "" {
					parts = append(parts, part)
				}
			}
			if len(parts) > 0 {
				kept = append(kept, strings.Join(parts, "; "))
			}
		}
		if len(kept) == 0 {
			delete(r.Header, "Cookie")
		} else {
			r.Header["Cookie"] = kept
		}
	case FromQuery:
		var parts []string
		for _, part := range strings.Split(r.URL.RawQuery, "&") {
			k, _, _ := strings.Cut(part, "=")
			if queryUnescape(k) != s.Name && part != "" {
				parts = append(parts, part)
			}
		}
		r.URL.RawQuery = strings.Join(parts, "&")
	}
}
