package jwtguard

// Regression tests for findings of a security review.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// A compromised JWK Set key is revoked by kid; its thief signs tokens with
// no kid header, which every key of the set is tried against: the
// revocation must still hold.
func TestKeyRevocationHoldsWithoutKidHeader(t *testing.T) {
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := base64.RawURLEncoding.EncodeToString
	doc, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": "k1", "n": b64(priv.N.Bytes()), "e": b64(big.NewInt(int64(priv.E)).Bytes())}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(doc) }))
	defer srv.Close()
	store, err := revocation.Open(t.TempDir(), revocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h := newHandler(t, "jwtguard {\n jwks "+srv.URL+"\n}", store)
	if err := h.keySets[0].Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	mint := func(kid string) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"sub": "mallory", "exp": time.Now().Add(time.Hour).Unix()})
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(priv)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	get := func(tok string) (int, string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		_, _, repl, err := serve(h, r)
		c, _ := repl.GetString("http.auth.jwt.error")
		if err == nil {
			return 200, ""
		}
		return status(err), c
	}
	if s, _ := get(mint("")); s != 200 {
		t.Fatalf("kid-less token before revocation: %d", s)
	}
	if _, _, err := store.Add(revocation.Entry{KeyID: "k1"}); err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{"k1", ""} {
		if s, c := get(mint(kid)); s != 401 || c != "revoked" {
			t.Errorf("token of revoked key k1, kid header %q: got %d %q, want 401 revoked", kid, s, c)
		}
	}
}

// An exp in milliseconds (or any date past year 9999) would make a token
// that never expires and that no revocation entry could outlive.
func TestFarFutureDatesRefused(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n}")
	for _, exp := range []float64{1e12, 1e19} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+sign(t, jwt.MapClaims{"sub": "x", "exp": exp}))
		_, _, repl, err := serve(h, r)
		if c, _ := repl.GetString("http.auth.jwt.error"); status(err) != 401 || c != "claims" {
			t.Errorf("exp %g: got %d %q, want 401 claims", exp, status(err), c)
		}
	}
}

// A second token in the same source could reach an upstream that reads
// another value than the one verified: the request is refused.
func TestTokenSentTwiceRefused(t *testing.T) {
	good := sign(t, jwt.MapClaims{"sub": "alice"})
	forged := "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
	cases := []struct {
		block string
		req   func() *http.Request
	}{
		{"", func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Add("Authorization", "Bearer "+good)
			r.Header.Add("Authorization", "Bearer "+forged)
			return r
		}},
		{"from query access_token", func() *http.Request {
			return httptest.NewRequest("GET", "/?access_token="+good+"&access_token="+forged, nil)
		}},
		{"from cookie s", func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Add("Cookie", "s="+good)
			r.Header.Add("Cookie", "a=b; s="+forged)
			return r
		}},
	}
	for _, c := range cases {
		h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n "+c.block+"\n}")
		w, up, repl, err := serve(h, c.req())
		code, _ := repl.GetString("http.auth.jwt.error")
		if status(err) != 401 || up.called || code != "malformed" || !strings.Contains(w.Header().Get("WWW-Authenticate"), "more than once") {
			t.Errorf("%q: status %d, code %q, upstream called %v", c.block, status(err), code, up.called)
		}
	}
}

// A cookie name with a space around it is the same cookie to net/http:
// "token =FORGED; token=VALID" is two token cookies, and a Go upstream
// reading r.Cookie("token") would get FORGED.
func TestRegressionCookieSpelledWithSpace(t *testing.T) {
	good := sign(t, jwt.MapClaims{"sub": "alice"})
	forged := "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n from cookie token\n}")
	for _, line := range []string{"token =" + forged + "; token=" + good, "token\t=" + forged + "; token=" + good, "token; token=" + good} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", line)
		_, up, repl, err := serve(h, r)
		code, _ := repl.GetString("http.auth.jwt.error")
		if status(err) != 401 || up.called || code != "malformed" {
			t.Errorf("Cookie %.20q...: status %d, code %q, upstream called %v; want 401 malformed", line, status(err), code, up.called)
		}
	}
	// strip_token removes the token's cookie however its name is spaced.
	h = newHandler(t, "jwtguard {\n secret "+testSecret+"\n from cookie token\n strip_token\n}")
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "a=1; token ="+good+"; b=2")
	_, up, _, err := serve(h, r)
	if err != nil || !up.called {
		t.Fatalf("token cookie spelled with a space: %v", err)
	}
	if got := up.req.Header.Get("Cookie"); got != "a=1; b=2" {
		t.Errorf("cookies upstream %q, want %q", got, "a=1; b=2")
	}
	if c, err := up.req.Cookie("token"); err == nil {
		t.Errorf("the upstream still reads the token cookie: %q", c.Value)
	}
}

// With optional, a source holding two values is refused even when the
// first holds no token: the second would reach the upstream unverified on
// a request passed as anonymous.
func TestRegressionOptionalSecondValueRefused(t *testing.T) {
	forged := "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
	cases := []struct {
		name, block string
		req         func() *http.Request
	}{
		{"Basic then Bearer", "", func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Add("Authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")
			r.Header.Add("Authorization", "Bearer "+forged)
			return r
		}},
		{"bare parameter then token", "from query token", func() *http.Request {
			return httptest.NewRequest("GET", "/?token&token="+forged, nil)
		}},
		{"empty cookie then token", "from cookie token", func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Cookie", "token=; token="+forged)
			return r
		}},
	}
	for _, c := range cases {
		h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n optional\n "+c.block+"\n}")
		_, up, repl, err := serve(h, c.req())
		code, _ := repl.GetString("http.auth.jwt.error")
		if status(err) != 401 || up.called || code != "malformed" {
			t.Errorf("%s: status %d, code %q, upstream called %v; want 401 malformed", c.name, status(err), code, up.called)
		}
	}
}

// Caddy's reverse proxy deletes the headers named in Connection after
// jwtguard wrote them: a client naming a claim header there would strip
// the upstream's identity headers from an authenticated request.
func TestRegressionConnectionNamesClaimHeader(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n claim_header sub X-User-Id\n claim_header email X-Email\n optional\n}")
	tok := sign(t, jwt.MapClaims{"sub": "alice", "email": "a@example.com"})
	cases := []struct {
		lines, want []string
	}{
		{[]string{"X-User-Id"}, nil},
		{[]string{"keep-alive, x-user-id ,\tX-Email"}, []string{"keep-alive"}},
		{[]string{"X_User_Id", "x.email, close", "Upgrade"}, []string{"close", "Upgrade"}},
		{[]string{"keep-alive", "X-User-Idx, X-Users-Id"}, []string{"keep-alive", "X-User-Idx, X-Users-Id"}},
	}
	for _, c := range cases {
		for _, auth := range []string{"Bearer " + tok, ""} { // authenticated and anonymous
			r := httptest.NewRequest("GET", "/", nil)
			if auth != "" {
				r.Header.Set("Authorization", auth)
			}
			r.Header["Connection"] = append([]string(nil), c.lines...)
			_, up, _, err := serve(h, r)
			if err != nil || !up.called {
				t.Fatalf("Connection %q: %v", c.lines, err)
			}
			got, ok := up.req.Header["Connection"]
			if strings.Join(got, "|") != strings.Join(c.want, "|") || (c.want == nil && ok) {
				t.Errorf("Connection %q (auth %v): upstream got %q, want %q", c.lines, auth != "", got, c.want)
			}
		}
	}
}

// Request trailers arrive with the end of the body, after the handler ran;
// net/http merges every trailer sent, declared or not, into r.Trailer,
// which Caddy's reverse proxy forwards.
func TestRegressionClaimTrailersDropped(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n claim_header sub X-User-Id\n optional\n}")
	tok := sign(t, jwt.MapClaims{"sub": "alice"})
	for _, declared := range []string{"Trailer: X-Other\r\n", "Trailer: X-User-Id, X-Other\r\n", "Trailer: x_user_id\r\nTrailer: X-Other\r\n"} {
		for _, auth := range []string{"Authorization: Bearer " + tok + "\r\n", ""} {
			raw := "POST / HTTP/1.1\r\nHost: example.com\r\n" + auth + "Transfer-Encoding: chunked\r\n" + declared +
				"\r\n5\r\nhello\r\n0\r\nX-User-Id: admin\r\nX_User_Id: admin\r\nX.User.Id: admin\r\nX-Other: o\r\n\r\n"
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
			if err != nil {
				t.Fatal(err)
			}
			var trailer http.Header
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				for name := range r.Trailer {
					if sameHeader(name, "X-User-Id") {
						t.Errorf("%q: a declared trailer %s reached the next handler", declared, name)
					}
				}
				if b, _ := io.ReadAll(r.Body); string(b) != "hello" {
					t.Errorf("%q: body %q", declared, b)
				}
				trailer = r.Trailer
				return nil
			})
			ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
			if err := h.ServeHTTP(httptest.NewRecorder(), r.WithContext(ctx), next); err != nil {
				t.Fatal(err)
			}
			for name, v := range trailer {
				if sameHeader(name, "X-User-Id") {
					t.Errorf("%q (auth %v): trailer %s: %q reached the next handler", declared, auth != "", name, v)
				}
			}
			if trailer.Get("X-Other") != "o" {
				t.Errorf("%q: trailer X-Other lost: %v", declared, trailer)
			}
		}
	}
	// A Trailer header (kept by net/http when the body is not chunked)
	// loses the names too.
	r := httptest.NewRequest("POST", "/", strings.NewReader("x"))
	r.Header["Trailer"] = []string{"X-User-Id, X-Other"}
	_, up, _, err := serve(h, r)
	if err != nil || strings.Join(up.req.Header["Trailer"], "|") != "X-Other" {
		t.Errorf("Trailer header upstream: %q (%v), want X-Other", up.req.Header["Trailer"], err)
	}
}
