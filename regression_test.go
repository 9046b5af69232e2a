package jwtguard

// Regression tests for findings of a security review.

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

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
