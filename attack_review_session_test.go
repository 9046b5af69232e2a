package jwtguard

// Attack review of the session kind and jwtguard_logout (9616bbc..fc0c2f1).
// Each TestAttack* here demonstrated a weakness when it was written: it
// failed on that code and passes with the fix committed with it.
// Handler-level only (no caddytest, no ports), except where noted.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// sessionChain runs handlers in order, as a Caddy route would, ending in
// an upstream that records whether it was reached.
type sessionChain []caddyhttp.MiddlewareHandler

func (c sessionChain) serve(t *testing.T, tok string, vars map[string]any) (code int, up *upstream) {
	t.Helper()
	r := httptest.NewRequest("GET", "/logout", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	if vars == nil {
		vars = map[string]any{}
	}
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, vars)
	r = r.WithContext(ctx)
	up = &upstream{}
	var next caddyhttp.Handler = up
	for i := len(c) - 1; i >= 0; i-- {
		h, n := c[i], next
		next = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return h.ServeHTTP(w, r, n) })
	}
	err := next.ServeHTTP(httptest.NewRecorder(), r)
	return status(err), up
}

func testLogout(store *revocation.Store, everywhere bool) *Logout {
	logoutInUse.Store(true)
	return &Logout{Everywhere: everywhere, app: testApp(store), logger: zap.NewNop()}
}

// A token without iss can say nothing about which issuer's subject it
// speaks for. `jwtguard_logout everywhere` still stored a subject entry
// for its sub with no iss, which matches that sub from every issuer: in a
// store shared by several sites (one per Caddy, SPEC "Modules"), a user of
// a site that signs its own iss-less tokens (jwtguard sign, a service key)
// logged out every namesake at every identity provider, "alice" or a
// numeric user id alike. The fix refuses the any-issuer entry: the token
// itself is revoked, and the request fails (500, so nobody is told "logged
// out everywhere") instead of logging out strangers.
func TestAttackLogoutEverywhereWithoutIssuer(t *testing.T) {
	store := attackStore(t, 0)
	local := newHandler(t, "jwtguard {\n secret "+testSecret+"\n}", store) // iss-less tokens, e.g. from jwtguard sign
	idp := newHandler(t, "jwtguard {\n secret "+testSecret+"\n issuer https://idp.example\n}", store)
	old := time.Now().Add(-time.Minute).Unix()
	mine := sign(t, jwt.MapClaims{"sub": "alice", "iat": old})
	victim := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp.example", "jti": "v1", "iat": old})

	if code, up := (sessionChain{idp}).serve(t, victim, nil); code != 0 || !up.called {
		t.Fatalf("victim's token before: %d", code)
	}
	code, up := (sessionChain{local, testLogout(store, true)}).serve(t, mine, nil)
	if code, up := (sessionChain{idp}).serve(t, victim, nil); code != 0 || !up.called {
		t.Errorf("another issuer's alice is refused (%d) after an iss-less alice logged out everywhere", code)
	}
	// The logout itself: its own token is revoked either way, and it is
	// not answered as a success it was not.
	if c, _ := (sessionChain{local}).serve(t, mine, nil); c != http.StatusUnauthorized {
		t.Errorf("the logged-out token still passes: %d", c)
	}
	if up.called || code != http.StatusInternalServerError {
		t.Errorf("logout everywhere of an iss-less token: status %d, next handler ran %v; want 500 and not run", code, up.called)
	}
	for _, e := range mustList(t, store, revocation.KindSubject) {
		if e.Issuer == "" {
			t.Errorf("an any-issuer subject entry was stored: %+v", e)
		}
	}

	// With iss, everywhere stays within that issuer (sound before the fix).
	mine2 := sign(t, jwt.MapClaims{"sub": "bob", "iss": "https://idp.example", "iat": old})
	other := newHandler(t, "jwtguard {\n secret "+testSecret+"\n issuer https://other.example\n}", store)
	otherBob := sign(t, jwt.MapClaims{"sub": "bob", "iss": "https://other.example", "iat": old})
	if code, up := (sessionChain{idp, testLogout(store, true)}).serve(t, mine2, nil); code != 0 || !up.called {
		t.Fatalf("logout everywhere with iss: %d", code)
	}
	if code, _ := (sessionChain{other}).serve(t, otherBob, nil); code != 0 {
		t.Errorf("bob of another issuer refused after an idp bob logged out everywhere: %d", code)
	}
	if code, _ := (sessionChain{idp}).serve(t, sign(t, jwt.MapClaims{"sub": "bob", "iss": "https://idp.example", "iat": old}), nil); code != http.StatusUnauthorized {
		t.Errorf("an older idp bob token passes after logout everywhere: %d", code)
	}
}

func mustList(t *testing.T, store *revocation.Store, kind revocation.Kind) []revocation.Entry {
	t.Helper()
	es, _, err := store.List(kind, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// jwtguard_logout passed the request on, revoking nothing, whenever it
// found no verified token in the request's variables. That is what the
// SPEC asks after an `optional` jwtguard let a request through without a
// token, but it also happened when no jwtguard had run at all: in a
// `route` block, where directives keep the order written, `jwtguard_logout`
// written above `jwtguard`; a jwtguard behind a narrower matcher; a `vars`
// directive writing the variable's name. The user then got the logout
// page or redirect while the token stayed valid. Now an anonymous pass
// leaves a marker, and a logout that finds neither it nor a token fails
// (500) without calling the next handler.
func TestAttackLogoutWithoutJwtguardPassesSilently(t *testing.T) {
	store := attackStore(t, 0)
	guard := newHandler(t, "jwtguard {\n secret "+testSecret+"\n}", store)
	tok := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "r1"})

	// route /logout { jwtguard_logout; jwtguard {...}; redir ... }
	code, up := (sessionChain{testLogout(store, false), guard}).serve(t, tok, nil)
	if up.called || code != http.StatusInternalServerError {
		t.Errorf("jwtguard_logout before jwtguard: status %d, next handler ran %v; want 500, not run", code, up.called)
	}
	// `vars jwtguard.verified_token x` (or anything not jwtguard's) in place of the token.
	code, up = (sessionChain{guard, &caddyhttp.VarsMiddleware{verifiedVar: "forged"}, testLogout(store, false)}).serve(t, tok, nil)
	if up.called || code != http.StatusInternalServerError {
		t.Errorf("a vars directive overwrote the verified token: status %d, next handler ran %v; want 500, not run", code, up.called)
	}

	// What still passes: an optional jwtguard without a token (SPEC), and
	// a token verified earlier in the chain with an optional jwtguard
	// that found none in its own source after it.
	opt := newHandler(t, "jwtguard {\n secret "+testSecret+"\n from cookie session\n optional\n}", store)
	n := len(mustList(t, store, ""))
	if code, up := (sessionChain{opt, testLogout(store, false)}).serve(t, "", nil); code != 0 || !up.called {
		t.Errorf("optional without a token: %d, next handler ran %v", code, up.called)
	}
	if got := len(mustList(t, store, "")); got != n {
		t.Errorf("an anonymous logout stored %d entries", got-n)
	}
	if code, up := (sessionChain{guard, opt, testLogout(store, false)}).serve(t, tok, nil); code != 0 || !up.called {
		t.Fatalf("token verified, then optional without its own: %d", code)
	}
	if code, _ := (sessionChain{guard}).serve(t, tok, nil); code != http.StatusUnauthorized {
		t.Errorf("the token verified earlier in the chain was not revoked: %d", code)
	}
	// Two logouts in a chain: the second finds the token revoked already.
	tok2 := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "r2"})
	if code, up := (sessionChain{guard, testLogout(store, false), testLogout(store, false)}).serve(t, tok2, nil); code != 0 || !up.called {
		t.Errorf("two logouts in a chain: %d", code)
	}
}

// The verified token left in the request's variables shows only its id
// through {http.vars.*}, in a log_append field (zap.Any) and as %v text:
// never the raw token nor its claims. This held on the code reviewed.
func TestAttackVerifiedVarShowsOnlyTheID(t *testing.T) {
	store := attackStore(t, 0)
	logoutInUse.Store(true)
	guard := newHandler(t, "jwtguard {\n secret "+testSecret+"\n}", store)
	tok := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "leak-1", "email": "alice@example.com"})
	vars := map[string]any{}
	if code, up := (sessionChain{guard}).serve(t, tok, vars); code != 0 || !up.called {
		t.Fatalf("token refused: %d", code)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
	repl := caddyhttp.NewTestReplacer(r)
	v := vars[verifiedVar]
	enc := zapcore.NewMapObjectEncoder()
	zap.Any("v", v).AddTo(enc)
	for name, got := range map[string]string{
		"placeholder": repl.ReplaceAll("{http.vars."+verifiedVar+"}", ""),
		"zap.Any":     fmt.Sprint(enc.Fields["v"]),
		"%v":          fmt.Sprintf("%v %+v %s", v, v, v),
	} {
		if strings.Contains(got, tok[strings.LastIndexByte(tok, '.')+1:]) || strings.Contains(got, "alice") {
			t.Errorf("%s shows more than the token id: %q", name, got)
		}
		if !strings.Contains(got, "https://idp#leak-1") {
			t.Errorf("%s: %q, want the token id", name, got)
		}
	}
}

func TestNoTokenShowsEmpty(t *testing.T) {
	if got := caddy.ToString(noToken{}); got != "" {
		t.Errorf("the anonymous marker reads %q through a placeholder", got)
	}
}
