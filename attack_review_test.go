package jwtguard

// Attack review of the detection, revocation and audit work since ea96c45.
// Each test here demonstrates a weakness: it fails on the code it was
// written against and passes once the weakness is fixed. Handler-level
// only (no caddytest, no ports).

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/jwtguard/caddy-jwtguard/audit"
	"github.com/jwtguard/caddy-jwtguard/detect/detecttest"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// attackGet sends tok from ip with User-Agent ua and returns the status
// (0 when the request went upstream) and the error code.
func attackGet(t *testing.T, h *Handler, tok, ip, ua string) (int, string) {
	t.Helper()
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = ip + ":40000"
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("User-Agent", ua)
	_, up, repl, err := serve(h, r)
	code, _ := repl.GetString("http.auth.jwt.error")
	if err == nil && !up.called {
		t.Fatalf("no error and no upstream call")
	}
	return status(err), code
}

func attackStore(t *testing.T, grace time.Duration) *revocation.Store {
	t.Helper()
	store, err := revocation.Open(t.TempDir(), revocation.Options{Grace: grace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store
}

// A handler with leeway accepts a token up to leeway past its exp, and the
// store keeps entries that long past their expires_at (Grace). But a token
// entry for such a token cannot be made: Add (normalize) and the admin API
// (revokeRequest.entry) refuse an expires_at that is not after now. So
// detection's revoke action fails on it (logged, the request refused as
// suspicious) and the thief's next request passes; an operator's POST
// {"token": ...} answers 400 "it cannot be used any more" while it can.
func TestAttackRevokeInsideLeeway(t *testing.T) {
	store := attackStore(t, time.Minute)
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n leeway 60s\n detect {\n  agent revoke\n }\n}", store)
	withAudit(t, h, store)
	tok := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "late",
		"exp": time.Now().Add(-5 * time.Second).Unix()}) // past exp, inside the leeway

	if code, _ := attackGet(t, h, tok, "203.0.113.5", "victim/1"); code != 0 {
		t.Fatalf("victim's request: %d, want it to pass (inside the leeway)", code)
	}
	if code, ec := attackGet(t, h, tok, "203.0.113.5", "thief/1"); code != 401 {
		t.Fatalf("thief's request: %d %s, want 401", code, ec)
	}
	// The agent rule's action was revoke: the token must be revoked now,
	// whatever User-Agent comes next.
	code, ec := attackGet(t, h, tok, "203.0.113.5", "victim/1")
	if code != 401 || ec != "revoked" {
		t.Errorf("after agent revoke, the token still passes: status %d code %q, want 401 revoked", code, ec)
	}

	// The store and the admin API refuse the entry outright.
	exp := time.Now().Add(-5 * time.Second)
	if _, _, err := store.Add(revocation.Entry{TokenID: "https://idp#late2", ExpiresAt: &exp}); err != nil {
		t.Errorf("store.Add of a token entry inside the grace period: %v", err)
	}
	tok2 := sign(t, jwt.MapClaims{"sub": "alice", "exp": exp.Unix()})
	if _, err := (&revokeRequest{Token: &tok2}).entry(time.Now().Add(-store.Grace())); err != nil { // as create() calls it
		t.Errorf("admin API, POST {\"token\"} for a token the leeway still accepts: %v", err)
	}
}

// revoke_subject stores a subject entry with before = now, truncated to
// the second, which matches tokens with iat < before. The token that fired
// the rule is not covered when its iat is not before that second: issued
// in the same second, or by an issuer whose clock runs ahead (accepted
// thanks to leeway). The firing request is answered "revoked", yet the
// same token goes on passing.
func TestAttackRevokeSubjectSparesTheFiringToken(t *testing.T) {
	store := attackStore(t, 30*time.Second)
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n leeway 30s\n detect {\n  agent revoke_subject\n }\n}", store)
	withAudit(t, h, store)
	// The identity provider's clock is 3 s ahead: iat is in the future,
	// well inside the leeway.
	tok := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "fresh",
		"iat": time.Now().Add(3 * time.Second).Unix()})

	if code, _ := attackGet(t, h, tok, "203.0.113.5", "victim/1"); code != 0 {
		t.Fatalf("victim's request: %d", code)
	}
	if code, ec := attackGet(t, h, tok, "198.51.100.7", "thief/1"); code != 401 || ec != "revoked" {
		t.Fatalf("thief's request: %d %q, want 401 revoked", code, ec)
	}
	// The thief copies the victim's User-Agent.
	code, ec := attackGet(t, h, tok, "198.51.100.7", "victim/1")
	if code != 401 || ec != "revoked" {
		t.Errorf("the token that fired revoke_subject still passes: status %d code %q, want 401 revoked", code, ec)
	}
}

// The detector forgets a token at its exp (Sweep drops blocks whose hExp
// has passed), but a handler with leeway accepts it for leeway longer.
// Every sweep inside that window wipes the token's state: agent's first
// User-Agent, networks' networks, travel's reference; the thief's next
// request is then the token's "first".
func TestAttackDetectStateSweptInsideLeeway(t *testing.T) {
	store := attackStore(t, 5*time.Minute)
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n leeway 5m\n detect {\n  agent reject\n  networks 1 10m reject\n }\n}", store)
	withAudit(t, h, store)
	tok := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "lee",
		"exp": time.Now().Add(-5 * time.Second).Unix()})

	if code, _ := attackGet(t, h, tok, "203.0.113.5", "victim/1"); code != 0 {
		t.Fatalf("victim's request: %d", code)
	}
	h.detector.Sweep() // the once-a-minute sweep comes by
	code, ec := attackGet(t, h, tok, "198.51.100.7", "thief/1")
	if code != 401 || ec != "suspicious" {
		t.Errorf("another network and User-Agent inside the leeway, after a sweep: status %d code %q, want 401 suspicious", code, ec)
	}
}

// With `revocation off`, a detect rule whose action is revoke would store
// an entry and answer the firing request "revoked", but the handler never
// consults the list: the token would go on passing on that route. The
// config is refused.
func TestAttackRevokeActionWithRevocationOff(t *testing.T) {
	for _, block := range []string{"agent revoke", "rate 5 1m revoke_subject\n  agent reject"} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwtguard {\n secret " + testSecret + "\n revocation off\n detect {\n  " + block + "\n }\n}")); err != nil {
			t.Fatal(err)
		}
		err := h.Validate()
		if err == nil || !strings.Contains(err.Error(), "revocation off") {
			t.Errorf("%q with revocation off: %v, want a config error", block, err)
		}
	}
	var h Handler
	h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwtguard {\n secret " + testSecret + "\n revocation off\n detect {\n  agent reject\n }\n}"))
	if err := h.Validate(); err != nil {
		t.Errorf("reject with revocation off: %v", err)
	}
}

// The CLI tables pass token-chosen strings (sub, and the token id, which
// is <iss>#<jti>) to the terminal as they are: a token whose sub holds an
// escape sequence (a username-as-sub IdP, an HS256 app that signs what it
// is given) writes to the operator's terminal, and a tab breaks the
// columns. oneLine is applied to the User-Agent and the detail only.
func TestAttackCLITablesPassControlCharacters(t *testing.T) {
	evil := "alice\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2K\tadmin"
	var b bytes.Buffer
	err := printEvents(&b, []audit.Event{{
		Time: time.Now(), Detector: "agent", Action: "log", TokenID: "https://idp#" + evil,
		Subject: evil, Detail: "User-Agent changed",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\x1b\x07") {
		t.Errorf("caddy jwtguard events prints control characters from the token: %q", b.String())
	}
	b.Reset()
	if err := printUsage(&b, []audit.Usage{{TokenID: "https://idp#" + evil, Subject: evil}}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\x1b\x07") {
		t.Errorf("caddy jwtguard usage prints control characters from the token: %q", b.String())
	}
}

// Usage keeps h.country, a closure over the handler's geoip reader, in
// each pending token and calls it at flush time (up to 10 s later). A
// config reload runs the old handler's Cleanup, which closes the reader:
// the usage of the last seconds before every reload is flushed without a
// country. (The flusher can also run Locate while Close runs: a data race
// on the reader's buffer, which may panic in the decoder, in a goroutine
// without recover.)
func TestAttackUsageCountryLostAcrossReload(t *testing.T) {
	store := attackStore(t, 0)
	geo := detecttest.DB(t)
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n detect {\n  geoip "+geo+"\n }\n}", store)
	log := withAudit(t, h, store)
	tok := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "geo"})
	if code, _ := attackGet(t, h, tok, "203.0.113.5", "victim/1"); code != 0 {
		t.Fatalf("request: %d", code)
	}
	if err := h.Cleanup(); err != nil { // the config is reloaded
		t.Fatal(err)
	}
	if err := log.Flush(); err != nil {
		t.Fatal(err)
	}
	u, found, err := log.Usage("https://idp#geo")
	if err != nil || !found || len(u.Clients) != 1 {
		t.Fatalf("usage: %v %v %+v", err, found, u)
	}
	if u.Clients[0].Country != "FR" {
		t.Errorf("country of 203.0.113.5 flushed after the handler's cleanup: %q, want FR", u.Clients[0].Country)
	}
}

// revoke_subject copies the firing token's iss into the subject entry; a
// token without iss makes an entry without iss, which the list matches
// against every issuer. On a store shared by several handlers, a rule
// firing for an iss-less token (an internal HS256 service, say) with
// sub "alice" logs out every "alice" of every issuer, though they are
// other people. (Theoretical unless sub values of two populations can
// meet; the blast radius is wider than the rule's subject.)
func TestAttackRevokeSubjectWithoutIssCrossesIssuers(t *testing.T) {
	store := attackStore(t, 0)
	internal := newHandler(t, "jwtguard {\n secret "+testSecret+"\n detect {\n  rate 1 1m revoke_subject\n }\n}", store)
	withAudit(t, internal, store)
	idpB := newHandler(t, "jwtguard {\n secret "+testSecret+"\n issuer https://idp-b\n}", store)
	past := time.Now().Add(-time.Minute).Unix()
	other := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp-b", "iat": past})
	if code, _ := attackGet(t, idpB, other, "192.0.2.9", "b/1"); code != 0 {
		t.Fatalf("idp-b's alice before: %d", code)
	}
	noIss := sign(t, jwt.MapClaims{"sub": "alice", "iat": past})
	attackGet(t, internal, noIss, "203.0.113.5", "svc/1")
	if code, ec := attackGet(t, internal, noIss, "203.0.113.5", "svc/1"); code != 401 || ec != "revoked" {
		t.Fatalf("rate revoke_subject did not fire: %d %q", code, ec)
	}
	if code, ec := attackGet(t, idpB, other, "192.0.2.9", "b/1"); code != 0 {
		t.Errorf("a detection on an iss-less token revoked https://idp-b's alice: %d %q", code, ec)
	}
}

// A client cannot choose its address for detection by sending
// X-Forwarded-For: jwtguard reads Caddy's client IP (the connection's,
// unless it comes from a trusted proxy), never the header itself. Two
// networks claimed in the header from one connection are one network.
func TestAttackForwardedForIgnoredWithoutTrustedProxy(t *testing.T) {
	store := attackStore(t, 0)
	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n detect {\n  networks 1 10m reject\n }\n}", store)
	withAudit(t, h, store)
	tok := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp", "jti": "xff"})
	for _, xff := range []string{"203.0.113.5", "198.51.100.7", "192.0.2.1, 10.0.0.1"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "203.0.113.9:40000"
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("X-Forwarded-For", xff)
		if _, _, repl, err := serve(h, r); err != nil {
			code, _ := repl.GetString("http.auth.jwt.error")
			t.Fatalf("X-Forwarded-For %q from one untrusted connection: refused %q; the header moved the client", xff, code)
		}
	}
	// The connection's own address does count.
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "198.51.100.9:40000"
	r.Header.Set("Authorization", "Bearer "+tok)
	if _, _, repl, err := serve(h, r); err == nil {
		t.Fatal("a second network (the connection's) did not fire")
	} else if code, _ := repl.GetString("http.auth.jwt.error"); code != "suspicious" {
		t.Fatalf("second network: %q", code)
	}
}
