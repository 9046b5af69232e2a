package verifier

import (
	"net/http"
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
}

// DefaultSources is where tokens are looked for when none are configured.
var DefaultSources = []Source{{Kind: FromHeader, Name: "Authorization", Scheme: "Bearer"}}

// Extract returns the token from the first source that holds one, and the
// index of that source; ok is false when no source holds a token.
func Extract(r *http.Request, sources []Source) (token string, from int, ok bool) {
	for i := range sources {
		if tok, ok := sources[i].Extract(r); ok {
			return tok, i, true
		}
	}
	return "", -1, false
}

// Extract returns the token this source finds in r. A header holding
// another scheme, or the scheme with nothing after it, holds no token.
func (s *Source) Extract(r *http.Request) (string, bool) {
	switch s.Kind {
	case FromHeader:
		return s.fromHeader(r.Header.Get(s.Name))
	case FromCookie:
		for _, line := range r.Header["Cookie"] {
			if v, ok := cookieValue(line, s.Name); ok {
				return v, v != ""
			}
		}
	case FromQuery:
		v, ok := queryValue(r.URL.RawQuery, s.Name)
		return v, ok && v != ""
	}
	return "", false
}

func (s *Source) fromHeader(v string) (string, bool) {
	if s.Scheme != "" {
		n := len(s.Scheme)
		if len(v) <= n || !strings.EqualFold(v[:n], s.Scheme) || (v[n] != ' ' && v[n] != '\t') {
			return "", false
		}
		v = v[n:]
	}
	v = strings.Trim(v, " \t")
	return v, v != ""
}

// cookieValue finds name in one Cookie header line without the allocations
// of http.Request.Cookie, which parses every cookie.
func cookieValue(line, name string) (string, bool) {
	for line != "" {
		var part string
		part, line, _ = strings.Cut(line, ";")
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		if !ok || k != name {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return "", false
}

// queryValue finds the first value of name in a raw query string.
func queryValue(rawQuery, name string) (string, bool) {
	for rawQuery != "" {
		var part string
		part, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(part, "=")
		if strings.ContainsAny(k, "%+") {
			var err error
			if k, err = url.QueryUnescape(k); err != nil {
				continue
			}
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			uv, err := url.QueryUnescape(v)
			if err != nil {
				return "", false
			}
			v = uv
		}
		return v, true
	}
	return "", false
}

// Repeated reports whether the request carries more than one value for
// this source (two Authorization headers, two cookies or two parameters of
// that name). Only one of them could be verified, while an upstream that
// reads another would trust a token nobody checked; RFC 6750 §2 forbids
// sending a token more than once.
func (s *Source) Repeated(r *http.Request) bool {
	n := 0
	switch s.Kind {
	case FromHeader:
		n = len(r.Header.Values(s.Name))
	case FromCookie:
		for _, line := range r.Header["Cookie"] {
			for part := range strings.SplitSeq(line, ";") {
				if k, _, _ := strings.Cut(strings.TrimSpace(part), "="); k == s.Name {
					n++
				}
			}
		}
	case FromQuery:
		for part := range strings.SplitSeq(r.URL.RawQuery, "&") {
			k, _, _ := strings.Cut(part, "=")
			if uk, err := url.QueryUnescape(k); err == nil {
				k = uk
			}
			if k == s.Name {
				n++
			}
		}
	}
	return n > 1
}

// Strip removes what this source found from the request, so that the token
// does not travel upstream.
func (s *Source) Strip(r *http.Request) {
	switch s.Kind {
	case FromHeader:
		r.Header.Del(s.Name)
	case FromCookie:
		lines := r.Header["Cookie"]
		var kept []string
		for _, line := range lines {
			var parts []string
			for _, part := range strings.Split(line, ";") {
				k, _, _ := strings.Cut(strings.TrimSpace(part), "=")
				if k != s.Name && strings.TrimSpace(part) != "" {
					parts = append(parts, strings.TrimSpace(part))
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
			if uk, err := url.QueryUnescape(k); err == nil {
				k = uk
			}
			if k != s.Name && part != "" {
				parts = append(parts, part)
			}
		}
		r.URL.RawQuery = strings.Join(parts, "&")
	}
}
