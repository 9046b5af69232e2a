package jwtguard

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/audit"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

const cfSecret = "secret 0123456789abcdef0123456789abcdef"

func TestCaddyfileSenderConstrained(t *testing.T) {
	cases := []struct{ input, want string }{
		{"dpop", `"dpop":{}`},
		{"dpop required", `"dpop":{"required":true}`},
		{"dpop {\n }", `"dpop":{}`},
		{"dpop required {\n  algorithms ES256 Ed25519\n  max_age 30s\n  leeway 0s\n  nonce\n  origin https://api.example:8443\n }",
			`"dpop":{"required":true,"algorithms":["ES256","Ed25519"],"max_age":30000000000,"leeway":0,"nonce":true,"origin":"https://api.example:8443"}`},
		{"dpop {\n  leeway 2s\n }", `"dpop":{"leeway":2000000000}`},
		{"dpop {\n  replay_cache 500000\n }", `"dpop":{"replay_cache":500000}`},
		{"mtls", `"mtls":{}`},
		{"mtls required", `"mtls":{"required":true}`},
		{"mtls {\n  header Client-Cert\n }", `"mtls":{"header":"Client-Cert"}`},
		{"dpop\n mtls required", `"dpop":{},"mtls":{"required":true}`},
	}
	for _, c := range cases {
		h, err := parse("jwtguard {\n " + cfSecret + "\n " + c.input + "\n}")
		if err != nil {
			t.Errorf("%q: %v", c.input, err)
			continue
		}
		got, _ := json.Marshal(h)
		if !strings.Contains(string(got), c.want) {
			t.Errorf("%q:\n got  %s\n want %s", c.input, got, c.want)
		}
		// The JSON form reads back to the same handler.
		var back Handler
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(got) {
			t.Errorf("%q: JSON round trip:\n %s\n %s", c.input, got, again)
		}
	}
	// A bare line leaves the directives after it alone.
	h, err := parse("jwtguard {\n " + cfSecret + "\n dpop\n optional\n}")
	if err != nil || h.DPoP == nil || !h.Optional {
		t.Fatalf("bare dpop then optional: %+v %v", h, err)
	}
}

func TestCaddyfileSenderConstrainedErrors(t *testing.T) {
	cases := []struct {
		input, want string
		line        int
	}{
		{"dpop maybe", `dpop: want dpop [required], got "maybe"`, 3},
		{"dpop required now", `dpop: want dpop [required]`, 3},
		{"dpop\n dpop", "dpop: repeated", 4},
		{"dpop {\n  algorithms\n }", "dpop: algorithms: at least one value", 4},
		{"dpop {\n  algorithms HS256\n }", "HS256 cannot sign a proof", 4},
		{"dpop {\n  algorithms none\n }", "none cannot sign a proof", 4},
		{"dpop {\n  algorithms XX1\n }", `unknown algorithm "XX1"`, 4},
		{"dpop {\n  max_age 0s\n }", "dpop: max_age: must be more than 0", 4},
		{"dpop {\n  max_age soon\n }", `dpop: max_age: "soon" is not a duration`, 4},
		{"dpop {\n  leeway -1s\n }", "dpop: leeway", 4},
		{"dpop {\n  leeway 1s 2s\n }", "dpop: leeway: want one duration", 4},
		{"dpop {\n  nonce yes\n }", "dpop: nonce: takes no values", 4},
		{"dpop {\n  nonce\n\n  nonce\n }", "dpop: nonce: repeated", 6},
		{"dpop {\n  origin ftp://x\n }", "dpop origin", 4},
		{"dpop {\n  origin https://x/path\n }", "dpop origin", 4},
		{"dpop {\n  origin\n }", "dpop: origin: want one", 4},
		{"dpop {\n  bogus\n }", "dpop: unrecognized subdirective bogus", 4},
		{"dpop {\n  replay_cache\n }", "dpop: replay_cache: want one number", 4},
		{"dpop {\n  replay_cache 0\n }", `dpop: replay_cache: "0" is not a number of proofs`, 4},
		{"dpop {\n  replay_cache 1e6\n }", `dpop: replay_cache: "1e6" is not a number of proofs`, 4},
		{"dpop {\n  replay_cache 100000000\n }", `"100000000" is not a number of proofs from 1 to 67108864`, 4},
		{"dpop {\n  replay_cache 10\n  replay_cache 20\n }", "dpop: replay_cache: repeated", 5},
		{"mtls sometimes", `mtls: want mtls [required]`, 3},
		{"mtls {\n  header\n }", "mtls: header: want one header field", 4},
		{"mtls {\n  header Bad:Name\n }", "not a valid header field name", 4},
		{"mtls {\n  header A\n  header B\n }", "mtls: header: repeated", 5},
		{"mtls {\n  bogus\n }", "mtls: unrecognized subdirective bogus", 4},
		{"mtls\n mtls required", "mtls: repeated", 4},
	}
	lineRe := regexp.MustCompile(`, at Testfile:(\d+)`)
	for _, c := range cases {
		_, err := parse("jwtguard {\n " + cfSecret + "\n " + c.input + "\n}")
		if err == nil {
			t.Errorf("%q: no error, want %q", c.input, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got  %v\n want %q", c.input, err, c.want)
		}
		m := lineRe.FindStringSubmatch(err.Error())
		if m == nil || m[1] != strconv.Itoa(c.line) {
			t.Errorf("%q: error does not name line %d: %v", c.input, c.line, err)
		}
	}
}

// Proofs here are signed by go-jose, an implementation independent of
// the dpop package.

// dpopKey is a client's proof key and its RFC 7638 thumbprint.
type dpopKey struct {
	priv *ecdsa.PrivateKey
	jkt  string
}

func newDPoPKey(t testing.TB) dpopKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return dpopKey{priv, jktOf(t, priv.Public())}
}

// jktOf is go-jose's RFC 7638 thumbprint of a public key, as cnf.jkt
// carries it.
func jktOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	sum, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

var proofCounter atomic.Int64

// proof signs a DPoP proof for method and htu, bound to token by ath;
// extra claims are added or, with a nil value, removed.
func (k dpopKey) proof(t testing.TB, method, htu, token string, extra ...any) string {
	t.Helper()
	ath := sha256.Sum256([]byte(token))
	c := map[string]any{
		"jti": "handler-proof-" + strconv.FormatInt(proofCounter.Add(1), 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		"htm": method, "htu": htu, "iat": time.Now().Unix(),
		"ath": base64.RawURLEncoding.EncodeToString(ath[:]),
	}
	for i := 0; i < len(extra); i += 2 {
		if extra[i+1] == nil {
			delete(c, extra[i].(string))
		} else {
			c[extra[i].(string)] = extra[i+1]
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(c)
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const apiURL = "https://api.example.com/orders/42"

// dpopRequest is a GET of apiURL over TLS with the given Authorization
// and DPoP headers ("" leaves a header out).
func dpopRequest(auth string, proofs ...string) *http.Request {
	r := httptest.NewRequest("GET", apiURL, nil) // https: r.TLS is set
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	for _, p := range proofs {
		r.Header.Add("DPoP", p)
	}
	return r
}

// wwwAuthenticate is the challenges of a response, one per line.
func wwwAuthenticate(w *httptest.ResponseRecorder) []string {
	return w.Header().Values("WWW-Authenticate")
}

const (
	dpopAlgs      = `DPoP algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA"`
	bearerMissing = `Bearer realm="jwtguard"`
)

// TestDPoPAttacks: one row per check the handler owns, each with the code
// and the challenges it answers with. The proof checks themselves are the
// dpop package's tests; here it is what reaches them and what comes back.
func TestDPoPAttacks(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop\n}")
	hReq := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop required\n}")
	hNone := newHandler(t, "jwtguard {\n secret "+testSecret+"\n}")
	alice, mallory := newDPoPKey(t), newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	unbound := sign(t, jwt.MapClaims{"sub": "bob"})
	expired := sign(t, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix(), "cnf": map[string]any{"jkt": alice.jkt}})
	certBound := sign(t, jwt.MapClaims{"sub": "carol", "cnf": map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}})
	reused := alice.proof(t, "GET", apiURL, bound)
	if _, _, _, err := serve(h, dpopRequest("DPoP "+bound, reused)); err != nil {
		t.Fatalf("first use of the proof to replay: %v", err)
	}

	invalidToken := func(reason string) []string {
		return []string{dpopAlgs + `, error="invalid_token", error_description="` + reason + `"`,
			`Bearer realm="jwtguard", error="invalid_token", error_description="` + reason + `"`}
	}
	invalidProof := func(reason string) []string {
		return []string{dpopAlgs + `, error="invalid_dpop_proof", error_description="` + reason + `"`, bearerMissing}
	}
	cases := []struct {
		name       string
		h          *Handler
		req        *http.Request
		code       string // "" passes
		challenges []string
	}{
		{"valid proof", h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound)), "", nil},
		{"scheme in another case", h, dpopRequest("dpop "+bound, alice.proof(t, "GET", apiURL, bound)), "", nil},
		{"query and default port do not matter", h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", "https://API.example.com:443/orders/42?x=1", bound)), "", nil},
		{"unbound token as bearer", h, dpopRequest("Bearer " + unbound), "", nil},
		{"bound token as bearer", h, dpopRequest("Bearer "+bound, alice.proof(t, "GET", apiURL, bound)), "binding",
			invalidToken("DPoP-bound token sent without the DPoP scheme")},
		{"unbound token as DPoP", h, dpopRequest("DPoP "+unbound, alice.proof(t, "GET", apiURL, unbound)), "binding",
			invalidToken("token is not bound to a DPoP key")},
		{"certificate-bound token without mtls", h, dpopRequest("Bearer " + certBound), "binding",
			invalidToken("token is bound to a client certificate")},
		{"two DPoP headers", h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound), alice.proof(t, "GET", apiURL, bound)), "dpop",
			invalidProof("more than one DPoP header")},
		{"missing proof", h, dpopRequest("DPoP " + bound), "dpop", invalidProof("missing DPoP proof")},
		{"proof for another URL", h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", "https://api.example.com/orders/43", bound)), "dpop",
			invalidProof("DPoP proof htu does not match the request URL")},
		{"proof for plain http", h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", "http://api.example.com/orders/42", bound)), "dpop",
			invalidProof("DPoP proof htu does not match the request URL")},
		{"proof for another method", h, dpopRequest("DPoP "+bound, alice.proof(t, "POST", apiURL, bound)), "dpop",
			invalidProof("DPoP proof htm does not match the request method")},
		{"proof for another token", h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, unbound)), "dpop",
			invalidProof("DPoP proof ath does not match the access token")},
		{"replayed proof", h, dpopRequest("DPoP "+bound, reused), "dpop", invalidProof("DPoP proof replayed")},
		{"old proof", h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound, "iat", time.Now().Add(-2*time.Minute).Unix())), "dpop",
			invalidProof("DPoP proof too old")},
		{"proof by the thief's key", h, dpopRequest("DPoP "+bound, mallory.proof(t, "GET", apiURL, bound)), "binding",
			invalidToken("DPoP proof key is not the key the token is bound to")},
		{"expired token, valid proof: verification first", h, dpopRequest("DPoP "+expired, alice.proof(t, "GET", apiURL, expired)), "expired",
			invalidToken("token expired")},
		{"missing token", h, dpopRequest(""), "missing", []string{dpopAlgs, bearerMissing}},
		{"required: valid proof", hReq, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound)), "", nil},
		{"required: unbound token", hReq, dpopRequest("Bearer " + unbound), "binding",
			[]string{dpopAlgs + `, error="invalid_token", error_description="token is not sender-constrained"`}},
		{"required: missing token", hReq, dpopRequest(""), "missing", []string{dpopAlgs}},
		{"required: missing proof", hReq, dpopRequest("DPoP " + bound), "dpop",
			[]string{dpopAlgs + `, error="invalid_dpop_proof", error_description="missing DPoP proof"`}},
		{"without dpop: DPoP scheme is no token", hNone, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound)), "missing", []string{bearerMissing}},
		{"without dpop: bound token as bearer", hNone, dpopRequest("Bearer " + bound), "binding",
			[]string{`Bearer realm="jwtguard", error="invalid_token", error_description="token is bound to a key or certificate"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, up, repl, err := serve(c.h, c.req)
			if c.code == "" {
				if err != nil || !up.called {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || up.called {
				t.Fatalf("passed, want %s", c.code)
			}
			if got, _ := repl.GetString("http.auth.jwt.error"); got != c.code {
				t.Errorf("code %q, want %q (%v)", got, c.code, err)
			}
			if status(err) != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", status(err))
			}
			if got := wwwAuthenticate(w); !slices.Equal(got, c.challenges) {
				t.Errorf("challenges:\n got  %q\n want %q", got, c.challenges)
			}
		})
	}
}

// TestDPoPPassesOn: what a request with a valid proof takes upstream.
func TestDPoPPassesOn(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop\n strip_token\n}")
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	_, up, repl, err := serve(h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound)))
	if err != nil || !up.called {
		t.Fatalf("refused: %v", err)
	}
	for key, want := range map[string]string{"http.auth.jwt.binding": "dpop", "http.auth.jwt.jkt": alice.jkt, "http.auth.user.id": "alice"} {
		if got, _ := repl.GetString(key); got != want {
			t.Errorf("{%s} = %q, want %q", key, got, want)
		}
	}
	for _, name := range []string{"Authorization", "Dpop"} {
		if v, ok := up.req.Header[name]; ok {
			t.Errorf("strip_token left %s: %q", name, v)
		}
	}

	unbound := sign(t, jwt.MapClaims{"sub": "bob"})
	_, up, repl, err = serve(h, dpopRequest("Bearer "+unbound))
	if err != nil || !up.called {
		t.Fatalf("unbound bearer token refused: %v", err)
	}
	if v, ok := repl.Get("http.auth.jwt.binding"); !ok || v != "" {
		t.Errorf("{http.auth.jwt.binding} of a bearer token = %q, %v; want empty", v, ok)
	}
	if v, ok := repl.Get("http.auth.jwt.jkt"); ok {
		t.Errorf("{http.auth.jwt.jkt} of a bearer token = %q", v)
	}
}

// TestDPoPOriginalURL: htu is the URL the client sent, before a rewrite,
// which Caddy keeps in the request context.
func TestDPoPOriginalURL(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop\n}")
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	rewritten := func(proof string) *http.Request {
		r := dpopRequest("DPoP "+bound, proof)
		orig := *r
		u := *r.URL
		orig.URL = &u
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.OriginalRequestCtxKey, orig))
		r.URL.Path = "/internal/orders"
		r.Host = "backend.internal" // a Host rewrite (request_header Host ...) must not matter either
		return r
	}
	if _, up, _, err := serve(h, rewritten(alice.proof(t, "GET", apiURL, bound))); err != nil || !up.called {
		t.Fatalf("proof for the URL the client sent refused after a rewrite: %v", err)
	}
	for _, u := range []string{"https://api.example.com/internal/orders", "https://backend.internal/orders/42"} {
		if _, _, repl, err := serve(h, rewritten(alice.proof(t, "GET", u, bound))); err == nil {
			t.Fatalf("proof for the rewritten URL %s accepted", u)
		} else if got, _ := repl.GetString("http.auth.jwt.error"); got != "dpop" {
			t.Fatalf("proof for the rewritten URL %s: %q", u, got)
		}
	}
}

// TestDPoPOrigin: with origin, htu is origin + path whatever the request's
// own scheme and Host (TLS ended by a proxy in front).
func TestDPoPOrigin(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop {\n  origin https://api.example.com\n }\n}")
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	r := httptest.NewRequest("GET", "http://10.0.0.7:8080/orders/42", nil)
	r.Header.Set("Authorization", "DPoP "+bound)
	r.Header.Set("DPoP", alice.proof(t, "GET", apiURL, bound))
	if _, up, _, err := serve(h, r); err != nil || !up.called {
		t.Fatalf("proof for the origin refused: %v", err)
	}
}

// TestDPoPNonce: a proof without the server's nonce is answered with
// use_dpop_nonce and a DPoP-Nonce, and the retry with it passes.
func TestDPoPNonce(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop {\n  nonce\n }\n}")
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": alice.jkt}})
	w, _, repl, err := serve(h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound)))
	if err == nil {
		t.Fatal("proof without a nonce accepted")
	}
	if got, _ := repl.GetString("http.auth.jwt.error"); got != "dpop" {
		t.Errorf("code %q, want dpop", got)
	}
	nonce := w.Header().Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("no DPoP-Nonce with use_dpop_nonce")
	}
	if got := wwwAuthenticate(w); len(got) != 2 || !strings.HasPrefix(got[0], dpopAlgs+`, error="use_dpop_nonce"`) || got[1] != bearerMissing {
		t.Errorf("challenges: %q", got)
	}
	w, _, repl, err = serve(h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound, "nonce", "not-"+nonce)))
	if err == nil {
		t.Fatal("proof with a made-up nonce accepted")
	}
	if w.Header().Get("DPoP-Nonce") == "" {
		t.Error("no DPoP-Nonce after a bad nonce")
	}
	if _, up, _, err := serve(h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound, "nonce", nonce))); err != nil || !up.called {
		t.Fatalf("proof with the server's nonce refused: %v", err)
	}
	// A missing token gets no nonce to spend.
	_ = repl
}

// TestDPoPPrecedence: binding and dpop come after verification and before
// revocation.
func TestDPoPPrecedence(t *testing.T) {
	store, err := revocation.Open(t.TempDir(), revocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop\n}", store)
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "revoked-bound", "cnf": map[string]any{"jkt": alice.jkt}})
	if _, _, err := store.Add(revocation.Entry{JTI: "revoked-bound", Issuer: "https://idp"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		req  *http.Request
		code string
	}{
		{"revoked, as bearer", dpopRequest("Bearer " + bound), "binding"},
		{"revoked, no proof", dpopRequest("DPoP " + bound), "dpop"},
		{"revoked, valid proof", dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound)), "revoked"},
	} {
		_, _, repl, err := serve(h, c.req)
		if got, _ := repl.GetString("http.auth.jwt.error"); err == nil || got != c.code {
			t.Errorf("%s: code %q, want %q (%v)", c.name, got, c.code, err)
		}
	}
}

// TestDetectBinding: detect's binding rule sees a valid bound token
// presented without its proof (as a bearer token, with no proof, with a
// proof by another key), records the event and acts; the request itself
// is refused with binding or dpop, which come before what the action
// does, and the revocation it stores refuses the owner's next request.
func TestDetectBinding(t *testing.T) {
	cases := []struct {
		name, block string
		req         func(tok string, alice, mallory dpopKey) *http.Request
		code        string
	}{
		{"bound token as bearer", "dpop\n detect {\n  binding revoke\n }",
			func(tok string, _, _ dpopKey) *http.Request { return dpopRequest("Bearer " + tok) }, "binding"},
		{"no proof", "dpop\n detect {\n  binding revoke\n }",
			func(tok string, _, _ dpopKey) *http.Request { return dpopRequest("DPoP " + tok) }, "dpop"},
		{"the thief's proof", "dpop\n detect {\n  binding revoke\n }",
			func(tok string, _, m dpopKey) *http.Request {
				return dpopRequest("DPoP "+tok, m.proof(t, "GET", apiURL, tok))
			}, "binding"},
		{"route without dpop", "detect {\n  binding revoke\n }",
			func(tok string, _, _ dpopKey) *http.Request { return dpopRequest("Bearer " + tok) }, "binding"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store, err := revocation.Open(t.TempDir(), revocation.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n "+c.block+"\n}", store)
			log := withAudit(t, h, store)
			alice, mallory := newDPoPKey(t), newDPoPKey(t)
			jti := "binding-" + strconv.Itoa(i)
			tok := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": jti, "cnf": map[string]any{"jkt": alice.jkt}})
			fired := metrics.detections.WithLabelValues("binding", "revoke")
			before := testutil.ToFloat64(fired)

			_, up, repl, err := serve(h, c.req(tok, alice, mallory))
			if got, _ := repl.GetString("http.auth.jwt.error"); err == nil || up.called || got != c.code {
				t.Fatalf("code %q, want %s (%v)", got, c.code, err)
			}
			if n := testutil.ToFloat64(fired) - before; n != 1 {
				t.Errorf("detections_total{binding,revoke} grew by %v, want 1", n)
			}
			if err := log.Flush(); err != nil {
				t.Fatal(err)
			}
			evs, _, err := log.Events(audit.EventQuery{TokenID: "https://idp#" + jti})
			if err != nil || len(evs) != 1 || evs[0].Detector != "binding" || evs[0].Revocation == "" {
				t.Fatalf("events = %+v %v, want one binding event with its revocation", evs, err)
			}
			if c.block == "detect {\n  binding revoke\n }" {
				return // the owner cannot prove possession here either
			}
			// The owner, with a valid proof, now meets the revocation.
			_, _, repl, err = serve(h, dpopRequest("DPoP "+tok, alice.proof(t, "GET", apiURL, tok)))
			if got, _ := repl.GetString("http.auth.jwt.error"); err == nil || got != "revoked" {
				t.Fatalf("after the revocation: code %q, want revoked (%v)", got, err)
			}
		})
	}

	// Unbound tokens and valid proofs do not fire it.
	store, err := revocation.Open(t.TempDir(), revocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop required\n detect {\n  binding reject\n }\n}", store)
	withAudit(t, h, store)
	alice := newDPoPKey(t)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "quiet", "cnf": map[string]any{"jkt": alice.jkt}})
	unbound := sign(t, jwt.MapClaims{"sub": "bob", "iss": "https://idp", "jti": "quiet-2"})
	rejects := metrics.detections.WithLabelValues("binding", "reject")
	before := testutil.ToFloat64(rejects)
	serve(h, dpopRequest("DPoP "+unbound, alice.proof(t, "GET", apiURL, unbound)))
	serve(h, dpopRequest("Bearer "+unbound))
	if _, up, _, err := serve(h, dpopRequest("DPoP "+bound, alice.proof(t, "GET", apiURL, bound))); err != nil || !up.called {
		t.Fatalf("valid proof refused: %v", err)
	}
	if n := testutil.ToFloat64(rejects) - before; n != 0 {
		t.Errorf("binding fired %v times on unbound tokens and a valid proof", n)
	}
}

// clientCert makes a self-signed client certificate and its x5t#S256.
func clientCert(t testing.TB, cn string) (*x509.Certificate, string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return cert, base64.RawURLEncoding.EncodeToString(sum[:])
}

// fromProxy marks a request as Caddy does one from a trusted proxy.
func fromProxy(r *http.Request, trusted bool) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: trusted}))
}

// TestMTLS: a certificate-bound token passes only from the client holding
// that certificate: the TLS connection's, or the Client-Cert header of a
// trusted proxy, which nobody else can set.
func TestMTLS(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n mtls\n}")
	hReq := newHandler(t, "jwtguard {\n secret "+testSecret+"\n mtls required\n}")
	hHdr := newHandler(t, "jwtguard {\n secret "+testSecret+"\n mtls {\n  header Client-Cert\n }\n}")
	hNone := newHandler(t, "jwtguard {\n secret "+testSecret+"\n}")
	aliceCert, aliceX5T := clientCert(t, "alice")
	otherCert, _ := clientCert(t, "mallory")
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"x5t#S256": aliceX5T}})
	unbound := sign(t, jwt.MapClaims{"sub": "bob"})
	req := func(tok string, cert *x509.Certificate) *http.Request {
		r := dpopRequest("Bearer " + tok)
		if cert != nil {
			r.TLS.PeerCertificates = []*x509.Certificate{cert}
		}
		return r
	}
	withHeader := func(r *http.Request, cert *x509.Certificate) *http.Request {
		r.Header.Set("Client-Cert", ":"+base64.StdEncoding.EncodeToString(cert.Raw)+":")
		return r
	}
	cases := []struct {
		name    string
		h       *Handler
		req     *http.Request
		code    string
		binding string
	}{
		{"its certificate", h, req(bound, aliceCert), "", "mtls"},
		{"no certificate", h, req(bound, nil), "binding", ""},
		{"another certificate", h, req(bound, otherCert), "binding", ""},
		{"unbound token", h, req(unbound, nil), "", ""},
		{"required: unbound token", hReq, req(unbound, aliceCert), "binding", ""},
		{"required: its certificate", hReq, req(bound, aliceCert), "", "mtls"},
		{"without mtls", hNone, req(bound, aliceCert), "binding", ""},
		{"header from a trusted proxy", hHdr, fromProxy(withHeader(req(bound, nil), aliceCert), true), "", "mtls"},
		{"header from a trusted proxy, the proxy's own certificate ignored", hHdr, fromProxy(withHeader(req(bound, otherCert), aliceCert), true), "", "mtls"},
		{"trusted proxy, no header: not its connection's certificate", hHdr, fromProxy(req(bound, aliceCert), true), "binding", ""},
		{"header from a trusted proxy, another certificate", hHdr, fromProxy(withHeader(req(bound, nil), otherCert), true), "binding", ""},
		{"header from anyone else", hHdr, fromProxy(withHeader(req(bound, nil), aliceCert), false), "binding", ""},
		{"header from anyone else, without the vars", hHdr, withHeader(req(bound, nil), aliceCert), "binding", ""},
		{"direct client with its certificate", hHdr, fromProxy(req(bound, aliceCert), false), "", "mtls"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, up, repl, err := serve(c.h, c.req)
			if c.code == "" {
				wantPassed(t, err, up, repl, c.binding)
				return
			}
			got, _ := repl.GetString("http.auth.jwt.error")
			if err == nil || up.called || got != c.code {
				t.Fatalf("code %q, want %q (%v)", got, c.code, err)
			}
		})
	}

	// The header of an untrusted sender never reaches the upstream, even
	// on a request that passes; a trusted proxy's does.
	r := fromProxy(withHeader(req(unbound, nil), aliceCert), false)
	r.Header["Client-Cert"] = append(r.Header["Client-Cert"], ":AAAA:")
	if _, up, _, err := serve(hHdr, r); err != nil || !up.called {
		t.Fatalf("unbound token refused: %v", err)
	} else if v, ok := up.req.Header["Client-Cert"]; ok {
		t.Errorf("Client-Cert of an untrusted client passed on: %q", v)
	}
	if _, up, _, err := serve(hHdr, fromProxy(withHeader(req(bound, nil), aliceCert), true)); err != nil || up.req.Header.Get("Client-Cert") == "" {
		t.Errorf("trusted proxy's Client-Cert not passed on: %v", err)
	}
	// Two Client-Cert headers from the proxy: ambiguous, no certificate.
	r = fromProxy(withHeader(req(bound, nil), aliceCert), true)
	r.Header.Add("Client-Cert", ":"+base64.StdEncoding.EncodeToString(aliceCert.Raw)+":")
	if _, _, _, err := serve(hHdr, r); err == nil {
		t.Error("two Client-Cert headers accepted")
	}
}

func TestParseClientCert(t *testing.T) {
	for in, want := range map[string]string{
		":AQID:":   "\x01\x02\x03",
		" :AQID: ": "\x01\x02\x03",
		"AQID":     "",
		":AQID":    "",
		"::":       "",
		":AQ*D:":   "",
		":AQI=:":   "\x01\x02",
		":AQI:":    "", // RFC 8941 byte sequences are padded
	} {
		if got := string(parseClientCert(in)); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
