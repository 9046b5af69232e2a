package jwtguard

// Attack review of the session kind and jwtguard_logout (9616bbc..fc0c2f1).
// Each TestAttack* here demonstrated a weakness when it was written: it
// failed on that code and passes with the fix committed with it.
// Handler-level only (no caddytest, no ports), except where noted.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

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
