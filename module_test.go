package jwtguard

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/revocation"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// testApp is an App holding an already open store (nil: none).
func testApp(s *revocation.Store) *App {
	a := &App{hold: new(hold)}
	if s != nil {
		a.hold.store.Store(s)
	} else {
		a.hold.cleaned = true // answers errNoStore
	}
	return a
}

// runApp makes app the running config's app, as App.Start does, until t
// ends.
func runApp(t testing.TB, app *App) {
	app.markRunning()
	t.Cleanup(app.leaveRunning)
}

const testSecret = "unit-test-secret-0123456789abcdefghij"

// newHandler provisions a handler from a Caddyfile block, as Caddy would,
// with revocation off unless a store is given.
func newHandler(t testing.TB, block string, store ...*revocation.Store) *Handler {
	t.Helper()
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(block)); err != nil {
		t.Fatalf("parsing: %v", err)
	}
	if len(store) > 0 {
		h.app = testApp(store[0])
	} else {
		h.DisableRevocation = true
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provisioning: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("validating: %v", err)
	}
	return &h
}

func sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	if claims["exp"] == nil {
		delete(claims, "exp")
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// upstream records what reached the next handler.
type upstream struct {
	called bool
	req    *http.Request
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.called = true
	u.req = r
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// serve runs one request through the handler with a fresh replacer.
func serve(h *Handler, r *http.Request) (*httptest.ResponseRecorder, *upstream, *caddy.Replacer, error) {
	repl := caddy.NewReplacer()
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	w := httptest.NewRecorder()
	up := &upstream{}
	err := h.ServeHTTP(w, r, up)
	return w, up, repl, err
}

func status(err error) int {
	var he caddyhttp.HandlerError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	return 0
}

func TestHandlerPassesClaimsUpstream(t *testing.T) {
	h := newHandler(t, `jwtguard {
		secret `+testSecret+`
		claim_header sub X-User-Id
		claim_header realm.roles X-Roles
		claim_header email X-Email
	}`)
	tok := sign(t, jwt.MapClaims{"sub": "alice", "jti": "j1", "iss": "https://idp", "realm": map[string]any{"roles": []string{"a", "b"}}, "n": 1767225600, "admin": true})
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header["X_user_id"] = []string{"forged"}
	r.Header["X-Email"] = []string{"forged@example.com"}
	r.Header["X.roles"] = []string{"forged"}
	_, up, repl, err := serve(h, r)
	if err != nil || !up.called {
		t.Fatalf("valid token rejected: %v", err)
	}
	got := up.req.Header
	if got.Get("X-User-Id") != "alice" || got.Get("X-Roles") != "a, b" {
		t.Fatalf("claim headers: %v", got)
	}
	for _, forged := range []string{"X_user_id", "X-Email", "X.roles"} {
		if v, ok := got[forged]; ok {
			t.Errorf("forged header %s reached the upstream: %v", forged, v)
		}
	}
	if got.Get("Authorization") == "" {
		t.Error("token stripped without strip_token")
	}
	for key, want := range map[string]string{
		"http.auth.user.id":       "alice",
		"http.auth.user.sub":      "alice",
		"http.auth.user.n":        "1767225600",
		"http.auth.user.admin":    "true",
		"http.auth.user.realm":    `{"roles":["a","b"]}`,
		"http.auth.jwt.token_id":  "https://idp#j1",
		"http.auth.user.no_claim": "",
	} {
		if v, _ := repl.GetString(key); v != want {
			t.Errorf("{%s} = %q, want %q", key, v, want)
		}
	}
	if _, ok := repl.Get("http.auth.user.no_claim"); ok {
		t.Error("an absent claim set a placeholder")
	}
}

func TestHandlerStripsForgedHeadersOnRejectedRequests(t *testing.T) {
	h := newHandler(t, `jwtguard {
		secret `+testSecret+`
		claim_header sub X-User-Id
		optional
	}`)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header["X-User-Id"] = []string{"forged"}
	r.Header["X_User_Id"] = []string{"forged"}
	_, up, repl, err := serve(h, r)
	if err != nil || !up.called {
		t.Fatalf("optional without token: %v", err)
	}
	if len(up.req.Header) != 0 {
		t.Fatalf("forged headers passed through an anonymous request: %v", up.req.Header)
	}
	if _, ok := repl.Get("http.auth.user.id"); ok {
		t.Fatal("anonymous request has a user id")
	}
	// a bad token is still rejected when optional
	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer not.a.token")
	if _, up, _, err := serve(h, r); status(err) != 401 || up.called {
		t.Fatalf("bad token with optional: status %d, upstream called %v", status(err), up.called)
	}
}

func TestHandlerFailures(t *testing.T) {
	h := newHandler(t, `jwtguard {
		secret `+testSecret+`
		issuer https://idp
		claim_header sub X-User-Id
	}`)
	cases := []struct {
		name, auth, code, challenge string
	}{
		{"no token", "", "missing", `Bearer realm="jwtguard"`},
		{"empty bearer", "Bearer ", "missing", `Bearer realm="jwtguard"`},
		{"other scheme", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "missing", `Bearer realm="jwtguard"`},
		{"garbage", "Bearer abc", "malformed", `Bearer realm="jwtguard", error="invalid_token", error_description="token is not three base64url segments"`},
		{"expired", "Bearer " + sign(t, jwt.MapClaims{"iss": "https://idp", "exp": time.Now().Add(-time.Minute).Unix()}), "expired", `Bearer realm="jwtguard", error="invalid_token", error_description="token expired"`},
		{"wrong issuer", "Bearer " + sign(t, jwt.MapClaims{"iss": "https://evil"}), "issuer", `Bearer realm="jwtguard", error="invalid_token", error_description="issuer not accepted"`},
		{"control character in a header claim", "Bearer " + sign(t, jwt.MapClaims{"iss": "https://idp", "sub": "a\r\nX-Admin: 1"}), "claims", `Bearer realm="jwtguard", error="invalid_token", error_description="claim holds a control character"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if c.auth != "" {
				r.Header.Set("Authorization", c.auth)
			}
			w, up, repl, err := serve(h, r)
			if status(err) != http.StatusUnauthorized || up.called {
				t.Fatalf("status %d (%v), upstream called %v", status(err), err, up.called)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != c.challenge {
				t.Errorf("WWW-Authenticate = %s, want %s", got, c.challenge)
			}
			if got, _ := repl.GetString("http.auth.jwt.error"); got != c.code {
				t.Errorf("{http.auth.jwt.error} = %q, want %q", got, c.code)
			}
		})
	}
}

func TestHandlerSources(t *testing.T) {
	h := newHandler(t, `jwtguard {
		secret `+testSecret+`
		from header X-Token
		from cookie session
		from query access_token
		strip_token
	}`)
	tok := sign(t, jwt.MapClaims{"sub": "bob"})

	r := httptest.NewRequest("GET", "/p?a=1&access_token="+tok+"&b=2", nil)
	_, up, _, err := serve(h, r)
	if err != nil || up.req.URL.RawQuery != "a=1&b=2" {
		t.Fatalf("query source: %v, query upstream %q", err, up.req.URL.RawQuery)
	}

	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "theme=dark; session="+tok+"; lang=en")
	_, up, _, err = serve(h, r)
	if err != nil || up.req.Header.Get("Cookie") != "theme=dark; lang=en" {
		t.Fatalf("cookie source: %v, cookies upstream %q", err, up.req.Header.Get("Cookie"))
	}

	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Token", tok)
	r.Header.Set("Authorization", "Bearer "+tok) // not a configured source: left alone
	_, up, _, err = serve(h, r)
	if err != nil || up.req.Header.Get("X-Token") != "" || up.req.Header.Get("Authorization") == "" {
		t.Fatalf("header source: %v, headers upstream %v", err, up.req.Header)
	}

	// Authorization alone is not a configured source here.
	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if _, _, _, err := serve(h, r); status(err) != 401 {
		t.Fatalf("unconfigured source accepted: %v", err)
	}
}

func TestHandlerPublicKeyAndBase64Secret(t *testing.T) {
	dir := t.TempDir()
	// An Ed25519 public key, written as a PEM file.
	const pubPEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"
	path := filepath.Join(dir, "ed.pem")
	if err := os.WriteFile(path, []byte(pubPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, `jwtguard {
		public_key `+path+`
		secret base64:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY
	}`)
	if got := h.verifier.Algorithms().String(); got != "HS256, EdDSA" {
		t.Fatalf("allow-list %s", got)
	}
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "c", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("0123456789abcdef0123456789abcdef"))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	if _, _, _, err := serve(h, r); err != nil {
		t.Fatalf("base64 secret: %v", err)
	}
}

func TestHandlerSecretFromEnvAndFile(t *testing.T) {
	t.Setenv("JWTGUARD_TEST_SECRET", testSecret)
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, value := range []string{"{env.JWTGUARD_TEST_SECRET}", "{file." + file + "}"} {
		h := newHandler(t, "jwtguard {\n secret "+value+"\n}")
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+sign(t, jwt.MapClaims{"sub": "d"}))
		if _, _, _, err := serve(h, r); err != nil {
			t.Fatalf("secret %s: %v", value, err)
		}
	}
	// an unset variable is a provisioning error, not an empty key
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwtguard {\n secret {env.JWTGUARD_UNSET_VARIABLE}\n}")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("unset secret variable: %v", err)
	}
}

func TestHandlerMetrics(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n}")
	before := testutilCount(t, "ok") + testutilCount(t, "missing")
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+sign(t, jwt.MapClaims{"sub": "m"}))
	serve(h, r)
	serve(h, httptest.NewRequest("GET", "/", nil))
	if after := testutilCount(t, "ok") + testutilCount(t, "missing"); after-before != 2 {
		t.Fatalf("requests_total moved by %v, want 2", after-before)
	}
}

func TestHandlerRevocation(t *testing.T) {
	store, err := revocation.Open(t.TempDir(), revocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n}", store)
	get := func(tok string) (int, string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w, _, repl, err := serve(h, r)
		code, _ := repl.GetString("http.auth.jwt.error")
		if err == nil {
			return 200, code
		}
		if w.Header().Get("Retry-After") == "" && status(err) == 503 {
			t.Error("503 without Retry-After")
		}
		return status(err), code
	}
	now := time.Now()
	alice := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "a1", "iat": now.Add(-time.Minute).Unix()})
	bob := sign(t, jwt.MapClaims{"sub": "bob", "iss": "https://idp", "iat": now.Add(-time.Minute).Unix()})
	keyed, _ := func() (string, error) {
		tk := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "carol", "exp": now.Add(time.Hour).Unix()})
		tk.Header["kid"] = "k-2026"
		return tk.SignedString([]byte(testSecret))
	}()
	for _, tok := range []string{alice, bob, keyed} {
		if s, c := get(tok); s != 200 {
			t.Fatalf("before revocation: %d %s", s, c)
		}
	}
	// The cache must not hide a revocation: each token above is cached now.
	if _, _, err := store.Add(revocation.Entry{JTI: "a1", Issuer: "https://idp"}); err != nil {
		t.Fatal(err)
	}
	before := now.Truncate(time.Second)
	if _, _, err := store.Add(revocation.Entry{Subject: "bob", Before: &before}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Add(revocation.Entry{KeyID: "k-2026"}); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"jti": alice, "subject": bob, "key": keyed} {
		if s, c := get(tok); s != 401 || c != "revoked" {
			t.Errorf("%s revoked: got %d %s", name, s, c)
		}
	}
	// A new token for bob, issued after the revocation, works.
	fresh := sign(t, jwt.MapClaims{"sub": "bob", "iss": "https://idp", "iat": now.Add(2 * time.Second).Unix(), "nbf": now.Add(-time.Second).Unix()})
	h.verifier = mustVerifierWithLeeway(t, h, 5*time.Second)
	if s, c := get(fresh); s != 200 {
		t.Errorf("bob's new token: %d %s", s, c)
	}
	// A store that cannot answer fails closed.
	store.Close()
	if s, c := get(fresh); s != 503 || c != "store_unavailable" {
		t.Errorf("closed store: got %d %s", s, c)
	}
	h.app = testApp(nil)
	if s, c := get(fresh); s != 503 || c != "store_unavailable" {
		t.Errorf("no store: got %d %s", s, c)
	}
}

// mustVerifierWithLeeway rebuilds h's verifier with a leeway, so a token
// issued a moment in the future counts as issued now.
func mustVerifierWithLeeway(t *testing.T, h *Handler, leeway time.Duration) *verifier.Verifier {
	h.Leeway = caddy.Duration(leeway)
	v, err := h.newVerifier()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLogsNeverCarryTheToken: at debug level every refusal is logged with
// its token_id, and no log field holds the raw token.
func TestLogsNeverCarryTheToken(t *testing.T) {
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n issuer https://idp\n}")
	core, logs := observer.New(zapcore.DebugLevel)
	h.logger = zap.New(core)
	tokens := []string{
		sign(t, jwt.MapClaims{"sub": "a", "iss": "https://evil"}),                                          // issuer
		sign(t, jwt.MapClaims{"sub": "a", "iss": "https://idp", "exp": time.Now().Add(-time.Hour).Unix()}), // expired
		otherKeyToken(t), // signature
	}
	for _, tok := range tokens {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		if _, _, _, err := serve(h, r); status(err) != 401 {
			t.Fatalf("want 401, got %v", err)
		}
	}
	entries := logs.All()
	if len(entries) != len(tokens) {
		t.Fatalf("%d log entries, want %d", len(entries), len(tokens))
	}
	for i, e := range entries {
		fields := e.ContextMap()
		if id, _ := fields["token_id"].(string); !strings.HasPrefix(id, "sha256:") {
			t.Errorf("entry %d has no token_id: %v", i, fields)
		}
		for k, v := range fields {
			for _, tok := range tokens {
				if s, _ := v.(string); strings.Contains(s, tok) || strings.Contains(e.Message, tok) {
					t.Errorf("entry %d field %s holds a raw token", i, k)
				}
			}
		}
	}
}

// otherKeyToken is a well-formed token signed with a secret the handler
// does not know.
func otherKeyToken(t *testing.T) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "a", "iss": "https://idp",
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("some-other-secret-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestHandlerRefusesEventAndBoundTokens: a SET or logout token is never an
// access token (type), and a token bound to a key or certificate is never
// a plain bearer token (binding), whatever token_type allows.
func TestHandlerRefusesEventAndBoundTokens(t *testing.T) {
	h := newHandler(t, `jwtguard {
		secret `+testSecret+`
		token_type JWT secevent+jwt logout+jwt
		claim_header sub X-User-Id
	}`)
	signTyp := func(typ string, claims jwt.MapClaims) string {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		tk := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
		tk.Header["typ"] = typ
		s, err := tk.SignedString([]byte(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	logout := jwt.MapClaims{"sub": "alice", "sid": "s1", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	cases := []struct {
		name, token, code, reason string
	}{
		{"SET", signTyp("secevent+jwt", jwt.MapClaims{"sub": "alice"}), "type", "security event and logout tokens are not access tokens"},
		{"logout token typ", signTyp("application/logout+jwt", jwt.MapClaims{"sub": "alice"}), "type", "security event and logout tokens are not access tokens"},
		{"logout token claims, typ JWT", signTyp("JWT", logout), "type", "security event and logout tokens are not access tokens"},
		{"cnf.jkt", signTyp("JWT", jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}), "binding", "token is bound to a key or certificate"},
		{"cnf x5t#S256", signTyp("JWT", jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}), "binding", "token is bound to a key or certificate"},
		{"cnf not an object", signTyp("JWT", jwt.MapClaims{"sub": "alice", "cnf": "x"}), "claims", "cnf claim is not an object"},
	}
	for _, c := range cases {
		for i := 0; i < 3; i++ { // the verified-token cache must not change the answer
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", "Bearer "+c.token)
			w, up, repl, err := serve(h, r)
			code, _ := repl.GetString("http.auth.jwt.error")
			if status(err) != 401 || up.called || code != c.code {
				t.Fatalf("%s, try %d: status %d, code %q, upstream called %v; want 401 %s", c.name, i, status(err), code, up.called, c.code)
			}
			want := `Bearer realm="jwtguard", error="invalid_token", error_description="` + c.reason + `"`
			if got := w.Header().Get("WWW-Authenticate"); got != want {
				t.Fatalf("%s: WWW-Authenticate %s, want %s", c.name, got, want)
			}
		}
	}
}
