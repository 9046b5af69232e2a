package verifier

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func cookieRequest(lines ...string) *http.Request {
	return &http.Request{Header: http.Header{"Cookie": lines}, URL: &url.URL{}}
}

// netHTTPCookies is what a Go upstream reads: every cookie called name,
// as net/http parses the request's Cookie lines.
func netHTTPCookies(r *http.Request, name string) []string {
	var vals []string
	for _, c := range r.Cookies() {
		if c.Name == name {
			vals = append(vals, c.Value)
		}
	}
	return vals
}

// TestExtractCookieNames: a cookie name is compared as net/http reads it,
// so every spelling an upstream would take for the token's cookie counts.
func TestExtractCookieNames(t *testing.T) {
	src := Source{Kind: FromCookie, Name: "token"}
	cases := []struct {
		lines []string
		token string
		count int
	}{
		{[]string{"token=A"}, "A", 1},
		{[]string{"token =FORGED; token=VALID"}, "FORGED", 2},
		{[]string{"token\t=FORGED; token=VALID"}, "FORGED", 2},
		{[]string{" token =A"}, "A", 1},
		{[]string{"a=b;token = A"}, " A", 1},     // net/http keeps the space before the value
		{[]string{"token; token=VALID"}, "", 2},  // a name without '=' is a cookie with an empty value
		{[]string{"token=; token=VALID"}, "", 2}, // an empty value is a value
		{[]string{`token="A"`}, "A", 1},
		{[]string{`token=""`}, "", 1},
		{[]string{"=A; token=B"}, "B", 1}, // an empty name is no cookie
		{[]string{"Token=A; TOKEN=B; token=C"}, "C", 1},
		{[]string{"xtoken=A; tokenx=B; to ken=C"}, "", 0},
		{[]string{"a=1", "token =A"}, "A", 1},
		{[]string{"token=A", "b=1; token\t=B"}, "A", 2},
		{[]string{";;token=A;;"}, "A", 1},
	}
	for _, c := range cases {
		r := cookieRequest(c.lines...)
		tok, n := src.Extract(r)
		if tok != c.token || n != c.count {
			t.Errorf("Cookie %q: got %q x%d, want %q x%d", c.lines, tok, n, c.token, c.count)
		}
		// Whatever a Go upstream reads, jwtguard counted; and a single
		// value is the one jwtguard verifies.
		if got := netHTTPCookies(r, "token"); len(got) > n || (len(got) == 1 && n == 1 && got[0] != tok) {
			t.Errorf("Cookie %q: net/http reads %q, jwtguard found %q x%d", c.lines, got, tok, n)
		}
	}
}

// TestExtractRepeatedSource: a source with two values is repeated even when
// the first holds no token (another scheme, an empty value), so that
// optional cannot let the second through as anonymous.
func TestExtractRepeatedSource(t *testing.T) {
	bearer := []Source{{Kind: FromHeader, Name: "Authorization", Scheme: "Bearer"}}
	cases := []struct {
		name    string
		sources []Source
		req     func() *http.Request
	}{
		{"Basic then Bearer", bearer, func() *http.Request {
			return &http.Request{URL: &url.URL{}, Header: http.Header{"Authorization": {"Basic YTpi", "Bearer FORGED"}}}
		}},
		{"empty then Bearer", bearer, func() *http.Request {
			return &http.Request{URL: &url.URL{}, Header: http.Header{"Authorization": {"", "Bearer FORGED"}}}
		}},
		{"Bearer without token then Bearer", bearer, func() *http.Request {
			return &http.Request{URL: &url.URL{}, Header: http.Header{"Authorization": {"Bearer ", "Bearer FORGED"}}}
		}},
		{"bare parameter then token", []Source{{Kind: FromQuery, Name: "token"}}, func() *http.Request {
			return &http.Request{URL: &url.URL{RawQuery: "token&token=FORGED"}, Header: http.Header{}}
		}},
		{"empty parameter then token", []Source{{Kind: FromQuery, Name: "token"}}, func() *http.Request {
			return &http.Request{URL: &url.URL{RawQuery: "token=&a=1&tok%65n=FORGED"}, Header: http.Header{}}
		}},
		{"empty cookie then token", []Source{{Kind: FromCookie, Name: "token"}}, func() *http.Request {
			return cookieRequest("token=; token=FORGED")
		}},
		{"two empty cookies", []Source{{Kind: FromCookie, Name: "token"}}, func() *http.Request {
			return cookieRequest("token=", "token")
		}},
		{"repeated source before the one with a token", append([]Source{{Kind: FromCookie, Name: "s"}}, bearer...), func() *http.Request {
			r := cookieRequest("s=; s=FORGED")
			r.Header.Set("Authorization", "Bearer VALID")
			return r
		}},
	}
	for _, c := range cases {
		_, from, repeated, ok := Extract(c.req(), c.sources)
		if !repeated || !ok || from != 0 {
			t.Errorf("%s: repeated %v, ok %v, from %d; want a repeated source 0", c.name, repeated, ok, from)
		}
	}
	// One value, or none, is not repeated.
	r := &http.Request{URL: &url.URL{RawQuery: "a=1&token="}, Header: http.Header{"Authorization": {"Basic YTpi"}, "Cookie": {"token="}}}
	for _, src := range []Source{bearer[0], {Kind: FromQuery, Name: "token"}, {Kind: FromCookie, Name: "token"}} {
		if _, _, repeated, ok := Extract(r, []Source{src}); repeated || ok {
			t.Errorf("%s %s with one empty value: repeated %v, ok %v", src.Kind, src.Name, repeated, ok)
		}
	}
}

// TestStripCookieEverySpelling: strip_token removes the token's cookie
// however its name is spaced, and leaves the others as net/http reads them.
func TestStripCookieEverySpelling(t *testing.T) {
	src := Source{Kind: FromCookie, Name: "token"}
	cases := []struct {
		lines []string
		want  []string // Cookie lines left; nil: none
	}{
		{[]string{"a=1; token=X; b=2"}, []string{"a=1; b=2"}},
		{[]string{"a=1; token =X; b=2"}, []string{"a=1; b=2"}},
		{[]string{"a=1;\ttoken\t=X"}, []string{"a=1"}},
		{[]string{" token = X ", "c=3"}, []string{"c=3"}},
		{[]string{"token"}, nil},
		{[]string{"tokens=1; xtoken=2"}, []string{"tokens=1; xtoken=2"}},
	}
	for _, c := range cases {
		r := cookieRequest(c.lines...)
		src.Strip(r)
		if got := r.Header["Cookie"]; strings.Join(got, "|") != strings.Join(c.want, "|") || (c.want == nil && got != nil) {
			t.Errorf("Strip %q: left %q, want %q", c.lines, got, c.want)
		}
		if got := netHTTPCookies(r, "token"); len(got) != 0 {
			t.Errorf("Strip %q: net/http still reads token %q", c.lines, got)
		}
	}
}

// FuzzCookie checks the cookie source against net/http on any Cookie
// line: jwtguard counts at least every cookie of the name that net/http
// reads, a single one has the value net/http gives it, and after Strip
// net/http reads none of that name and the same other cookies.
func FuzzCookie(f *testing.F) {
	for _, seed := range []string{
		"token=A", "token =A; token=B", "token\t=A", "token; token=B", "token=; token=B", `token="A"`,
		"=A; token=B", " token = A ", "a=1;;token=\"x;b=2", "token=a\\b; token=c", "\u00a0token=A; token=B",
		"token\v=A", "tok\x00en=A", "a=\"1\"; token=\"\"",
	} {
		f.Add(seed, "")
	}
	f.Add("a=1", "token=B")
	src := Source{Kind: FromCookie, Name: "token"}
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		if strings.Count(line1+line2, ";") > 1000 {
			t.Skip("net/http reads no cookie at all past 3000")
		}
		lines := []string{line1}
		if line2 != "" {
			lines = append(lines, line2)
		}
		r := cookieRequest(lines...)
		tok, n := src.Extract(r)
		got := netHTTPCookies(r, "token")
		if len(got) > n {
			t.Fatalf("Cookie %q: net/http reads %d token cookies, jwtguard counted %d", lines, len(got), n)
		}
		if n == 1 && len(got) == 1 && got[0] != tok {
			t.Fatalf("Cookie %q: net/http reads %q, jwtguard %q", lines, got[0], tok)
		}
		var others []string
		for _, c := range r.Cookies() {
			if c.Name != "token" {
				others = append(others, c.Name+"="+c.Value)
			}
		}
		src.Strip(r)
		if _, n := src.Extract(r); n != 0 {
			t.Fatalf("Cookie %q: %d token cookies left after Strip: %q", lines, n, r.Header["Cookie"])
		}
		var after []string
		for _, c := range r.Cookies() {
			if c.Name == "token" {
				t.Fatalf("Cookie %q: net/http reads token after Strip: %q", lines, r.Header["Cookie"])
			}
			after = append(after, c.Name+"="+c.Value)
		}
		if strings.Join(after, "\x00") != strings.Join(others, "\x00") {
			t.Fatalf("Cookie %q: Strip changed the other cookies from %q to %q", lines, others, after)
		}
	})
}

// TestExtractDPoPScheme: a source with DPoP set takes a token under either
// scheme and tells which one it was; without it DPoP is another scheme.
func TestExtractDPoPScheme(t *testing.T) {
	plain := Source{Kind: FromHeader, Name: "Authorization", Scheme: "Bearer"}
	both := plain
	both.DPoP = true
	cases := []struct {
		value    string
		src      Source
		token    string
		usesDPoP bool
	}{
		{"Bearer abc", plain, "abc", false},
		{"DPoP abc", plain, "", false},
		{"Bearer abc", both, "abc", false},
		{"DPoP abc", both, "abc", true},
		{"dpop\tabc", both, "abc", true},
		{"DPoP", both, "", false},
		{"DPoP ", both, "", true},
		{"DPoPabc", both, "", false},
		{"Basic abc", both, "", false},
	}
	for _, c := range cases {
		r := &http.Request{Header: http.Header{"Authorization": {c.value}}, URL: &url.URL{}}
		tok, n := c.src.Extract(r)
		if tok != c.token || n != 1 {
			t.Errorf("%q (DPoP %v): got %q x%d, want %q", c.value, c.src.DPoP, tok, n, c.token)
		}
		if got := c.src.UsesDPoP(r); got != c.usesDPoP {
			t.Errorf("%q (DPoP %v): UsesDPoP %v, want %v", c.value, c.src.DPoP, got, c.usesDPoP)
		}
	}
}
