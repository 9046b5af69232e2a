package jwtguard

import (
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
	"github.com/jwtguard/caddy-jwtguard/signals"
)

const signalsAudience = "https://api.test/signals"

// sigIdP is an identity provider on 127.0.0.1 for the signals tests: a
// Shared Signals transmitter and an OpenID provider with one ES256 key,
// which signs access tokens, SETs and logout tokens alike, and a poll
// endpoint a test scripts.
type sigIdP struct {
	srv *httptest.Server
	key *ecdsa.PrivateKey

	mu   sync.Mutex
	poll func(n int, req sigPollRequest) any // the answer to the n-th poll request (from 1)
	reqs []sigPollRequest
	auth []string
}

type sigPollRequest struct {
	MaxEvents         int                          `json:"maxEvents"`
	ReturnImmediately bool                         `json:"returnImmediately"`
	Ack               []string                     `json:"ack"`
	SetErrs           map[string]map[string]string `json:"setErrs"`
}

func newSigIdP(t testing.TB) *sigIdP {
	t.Helper()
	p := &sigIdP{}
	var mux *http.ServeMux
	p.key, mux = NewSignalsTestIdP(t, func() string { return p.srv.URL })
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		var req sigPollRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.reqs = append(p.reqs, req)
		p.auth = append(p.auth, r.Header.Get("Authorization"))
		n, script := len(p.reqs), p.poll
		p.mu.Unlock()
		answer := any(map[string]any{"sets": map[string]string{}})
		if script != nil {
			answer = script(n, req)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *sigIdP) iss() string { return p.srv.URL }

func (p *sigIdP) requests() []sigPollRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reqs)
}

func (p *sigIdP) sign(t testing.TB, typ string, claims jwt.MapClaims) string {
	t.Helper()
	return SignSignalsTestToken(t, p.key, typ, claims)
}

// accessToken is an access token of sub issued 10 s ago, with sid when
// given.
func (p *sigIdP) accessToken(t testing.TB, sub, sid string) string {
	now := time.Now()
	c := jwt.MapClaims{"iss": p.iss(), "sub": sub, "iat": now.Add(-10 * time.Second).Unix(), "exp": now.Add(time.Hour).Unix()}
	if sid != "" {
		c["sid"] = sid
	}
	return p.sign(t, "at+jwt", c)
}

// set is a SET with one event about the user sub of this IdP.
func (p *sigIdP) set(t testing.TB, jti, event, sub string, extra map[string]any) string {
	payload := map[string]any{"subject": map[string]any{"format": "iss_sub", "iss": p.iss(), "sub": sub}, "event_timestamp": time.Now().Unix()}
	for k, v := range extra {
		payload[k] = v
	}
	return p.sign(t, "secevent+jwt", jwt.MapClaims{"iss": p.iss(), "aud": signalsAudience, "iat": time.Now().Unix(), "jti": jti,
		"events": map[string]any{event: payload}})
}

func (p *sigIdP) logoutToken(t testing.TB, jti string, claims jwt.MapClaims) string {
	now := time.Now()
	c := jwt.MapClaims{"iss": p.iss(), "aud": signalsAudience, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "jti": jti,
		"events": map[string]any{signals.EventBackchannelLogout: map[string]any{}}}
	for k, v := range claims {
		c[k] = v
	}
	return p.sign(t, "logout+jwt", c)
}

// sigSite is the caddytest server of these tests.
type sigSite struct {
	t      *testing.T
	tester *caddytest.Tester
}

// startSignalsSite runs a real Caddy in-process: jwtguard_signals on
// /signals (idp pushes with an Authorization, poller is polled, idp is
// also the oidc provider), and /api/* guarded by jwtguard with idp's keys.
func startSignalsSite(t *testing.T, idp, poller *sigIdP) *sigSite {
	tester := startCaddy(t, `
	http://localhost:9080 {
		jwtguard_signals /signals {
			audience `+signalsAudience+`
			transmitter `+idp.iss()+` {
				authorization "Bearer push-credential"
			}
			transmitter `+poller.iss()+` {
				poll `+poller.iss()+`/poll 1s
				poll_authorization "Bearer poll-credential"
			}
			oidc `+idp.iss()+`
		}
		handle /api/* {
			jwtguard {
				oidc `+idp.iss()+`
			}
			respond "ok {http.auth.user.id}"
		}
		handle_errors {
			respond "{http.error.status_code} {http.auth.jwt.error}"
		}
	}
	`)
	s := &sigSite{t: t, tester: tester}
	// The keys load in the background once the config runs.
	probe := idp.accessToken(t, "probe", "")
	waitUntil(t, "the site's keys", func() bool { st, _ := s.api(probe); return st == http.StatusOK })
	return s
}

// api requests /api/x with the token as a Bearer token.
func (s *sigSite) api(token string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, "http://localhost:9080/api/x", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return s.do(req)
}

func (s *sigSite) do(req *http.Request) (int, string) {
	s.t.Helper()
	resp, err := s.tester.Client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// push POSTs a SET until the transmitter's keys have loaded (503 before).
func (s *sigSite) push(set, authorization string) (int, string) {
	s.t.Helper()
	var status int
	var body string
	waitUntil(s.t, "an answer other than 503", func() bool {
		req, _ := http.NewRequest(http.MethodPost, "http://localhost:9080/signals", strings.NewReader(set))
		req.Header.Set("Content-Type", "application/secevent+jwt")
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		status, body = s.do(req)
		return status != http.StatusServiceUnavailable
	})
	return status, body
}

func (s *sigSite) logout(token string) (int, http.Header, string) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://localhost:9080/signals", strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.tester.Client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (s *sigSite) wantAPI(what, token string, status int, body string) {
	s.t.Helper()
	if st, b := s.api(token); st != status || b != body {
		s.t.Errorf("%s: got %d %q, want %d %q", what, st, b, status, body)
	}
}

// revocations lists the store through the admin API.
func revocations(t testing.TB) []map[string]any {
	t.Helper()
	resp, err := e2etest.AdminClient.Get("http://localhost:2999/jwtguard/revocations?limit=1000")
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	var page struct {
		Revocations []map[string]any `json:"revocations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Error(err)
	}
	return page.Revocations
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !e2etest.Eventually(15*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestSignalsPushRevokes: a SET pushed to jwtguard_signals (a password
// change at the IdP) is answered 202 once durable, and the next request
// with the user's token, on a jwtguard route, is 401 revoked; other users
// are untouched. The metric counts it.
func TestSignalsPushRevokes(t *testing.T) {
	idp, poller := newSigIdP(t), newSigIdP(t)
	site := startSignalsSite(t, idp, poller)
	alice, bob := idp.accessToken(t, "alice", ""), idp.accessToken(t, "bob", "")
	site.wantAPI("alice before", alice, 200, "ok alice")

	set := idp.set(t, "pw-1", signals.EventCredentialChange, "alice", map[string]any{"change_type": "update", "credential_type": "password"})
	if st, body := site.push(set, "Bearer push-credential"); st != http.StatusAccepted || body != "" {
		t.Fatalf("push: %d %q", st, body)
	}
	site.wantAPI("alice after the password change", alice, 401, "401 revoked")
	site.wantAPI("bob", bob, 200, "ok bob")
	// Logged in again after the change: a new token works.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	fresh := idp.sign(t, "", jwt.MapClaims{"iss": idp.iss(), "sub": "alice", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	site.wantAPI("alice's new token", fresh, 200, "ok alice")

	// Wrong credential: nothing happens.
	set2 := idp.set(t, "pw-2", signals.EventAccountDisabled, "bob", nil)
	if st, body := site.push(set2, "Bearer nope"); st != http.StatusBadRequest || !strings.Contains(body, `"err":"authentication_failed"`) {
		t.Fatalf("push with a wrong credential: %d %q", st, body)
	}
	site.wantAPI("bob after a refused SET", bob, 200, "ok bob")
	// Redelivered: 202, nothing more.
	if st, _ := site.push(set, "Bearer push-credential"); st != http.StatusAccepted {
		t.Fatalf("redelivery: %d", st)
	}
	if n := len(revocations(t)); n != 1 {
		t.Fatalf("%d revocations, want 1", n)
	}

	resp, err := e2etest.AdminClient.Get("http://localhost:2999/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`caddy_jwtguard_signals_total{event="credential-change",result="applied"} 1`,
		`caddy_jwtguard_signals_total{event="credential-change",result="ignored"} 1`,
		`caddy_jwtguard_signals_total{event="account-disabled",result="authentication_failed"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestSignalsBackchannelLogout: a logout token with sid revokes the
// tokens carrying that sid (a session entry) and no other; with sub only,
// every token of the subject issued before it.
func TestSignalsBackchannelLogout(t *testing.T) {
	idp, poller := newSigIdP(t), newSigIdP(t)
	site := startSignalsSite(t, idp, poller)
	inSession := idp.accessToken(t, "bob", "sess-1")
	otherSession := idp.accessToken(t, "bob", "sess-2")
	carol := idp.accessToken(t, "carol", "sess-3")
	for _, tok := range []string{inSession, otherSession} {
		site.wantAPI("bob before", tok, 200, "ok bob")
	}

	// The provider's keys load in the background too.
	var st int
	var hdr http.Header
	var body string
	waitUntil(t, "the logout answer", func() bool {
		st, hdr, body = site.logout(idp.logoutToken(t, "lo-1", jwt.MapClaims{"sid": "sess-1", "sub": "bob"}))
		return st != http.StatusServiceUnavailable
	})
	if st != http.StatusOK || body != "" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("logout: %d %q, Cache-Control %q", st, body, hdr.Get("Cache-Control"))
	}
	site.wantAPI("bob's token of the ended session", inSession, 401, "401 revoked")
	site.wantAPI("bob's token of another session", otherSession, 200, "ok bob")
	if rs := revocations(t); len(rs) != 1 || rs[0]["kind"] != "session" || rs[0]["sid"] != "sess-1" || rs[0]["iss"] != idp.iss() {
		t.Fatalf("revocations %v", rs)
	}

	st, _, _ = site.logout(idp.logoutToken(t, "lo-2", jwt.MapClaims{"sub": "carol"}))
	if st != http.StatusOK {
		t.Fatalf("logout by sub: %d", st)
	}
	site.wantAPI("carol", carol, 401, "401 revoked")
	site.wantAPI("bob, still", otherSession, 200, "ok bob")

	st, hdr, body = site.logout(idp.logoutToken(t, "lo-3", jwt.MapClaims{"sub": "bob", "nonce": "n"}))
	if st != http.StatusBadRequest || hdr.Get("Cache-Control") != "no-store" || !strings.Contains(body, `"error":"invalid_request"`) {
		t.Fatalf("a logout token with a nonce: %d %q", st, body)
	}
	site.wantAPI("bob after a refused logout", otherSession, 200, "ok bob")
}

// TestSignalsPoll: SETs polled from a transmitter are applied, the ack of
// one reaches the transmitter only once its revocation is on disk (the
// admin API lists it when the ack arrives), a bad SET comes back in
// setErrs, and a redelivery of an acknowledged SET changes nothing.
func TestSignalsPoll(t *testing.T) {
	idp, poller := newSigIdP(t), newSigIdP(t)
	// The transmitter speaks of a user of the provider whose tokens the
	// route accepts.
	good := poller.set(t, "p-1", signals.EventAccountDisabled, "dave",
		map[string]any{"subject": map[string]any{"format": "iss_sub", "iss": idp.iss(), "sub": "dave"}})
	forged := idp.sign(t, "secevent+jwt", jwt.MapClaims{"iss": poller.iss(), "aud": signalsAudience, "iat": time.Now().Unix(), "jti": "p-forged",
		"events": map[string]any{signals.EventAccountDisabled: map[string]any{"subject": map[string]any{"format": "opaque", "id": "erin"}}}})
	var mu sync.Mutex
	listed := map[int]int{} // revocations the admin API listed when poll n came
	poller.poll = func(n int, req sigPollRequest) any {
		k := len(revocations(t))
		mu.Lock()
		listed[n] = k
		mu.Unlock()
		switch n {
		case 1:
			return map[string]any{"sets": map[string]string{"p-1": good, "p-forged": forged}, "moreAvailable": false}
		case 2:
			return map[string]any{"sets": map[string]string{"p-1": good}} // the ack got lost
		}
		return map[string]any{"sets": map[string]string{}}
	}
	site := startSignalsSite(t, idp, poller)
	dave := idp.accessToken(t, "dave", "")
	waitUntil(t, "three polls", func() bool { return len(poller.requests()) >= 3 })

	reqs := poller.requests()
	if len(reqs[0].Ack) != 0 {
		t.Fatalf("the first poll acknowledges %v", reqs[0].Ack)
	}
	if !slices.Equal(reqs[1].Ack, []string{"p-1"}) || reqs[1].SetErrs["p-forged"]["err"] != "invalid_key" || len(reqs[1].SetErrs) != 1 {
		t.Fatalf("the second poll: %+v", reqs[1])
	}
	if !slices.Equal(reqs[2].Ack, []string{"p-1"}) || len(reqs[2].SetErrs) != 0 {
		t.Fatalf("the third poll: %+v", reqs[2])
	}
	for i, a := range poller.auth[:3] {
		if a != "Bearer poll-credential" || !reqs[i].ReturnImmediately || reqs[i].MaxEvents <= 0 {
			t.Fatalf("poll %d: Authorization %q, %+v", i+1, a, reqs[i])
		}
	}
	mu.Lock()
	if listed[1] != 0 || listed[2] != 1 {
		t.Fatalf("the admin API listed %d revocations at the first poll, %d when the ack arrived", listed[1], listed[2])
	}
	mu.Unlock()
	rs := revocations(t)
	if len(rs) != 1 || rs[0]["sub"] != "dave" || rs[0]["reason"] != "signal account-disabled from "+poller.iss() {
		t.Fatalf("revocations %v", rs)
	}
	site.wantAPI("dave", dave, 401, "401 revoked")
	site.wantAPI("erin (forged SET)", idp.accessToken(t, "erin", ""), 200, "ok erin")
}

// TestSignalsNotAccessTokens: a SET and a logout token, signed with keys
// a jwtguard route trusts, are refused there as access tokens: 401 type.
func TestSignalsNotAccessTokens(t *testing.T) {
	idp, poller := newSigIdP(t), newSigIdP(t)
	site := startSignalsSite(t, idp, poller)
	set := idp.set(t, "a-1", signals.EventSessionRevoked, "alice", nil)
	site.wantAPI("a SET", set, 401, "401 type")
	site.wantAPI("a logout token", idp.logoutToken(t, "a-2", jwt.MapClaims{"sub": "alice"}), 401, "401 type")
	// With exp and sub, and no typ: the events claim alone gives it away.
	site.wantAPI("a SET without typ", idp.sign(t, "", jwt.MapClaims{"iss": idp.iss(), "sub": "alice", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "jti": "a-3",
		"events": map[string]any{signals.EventSessionRevoked: map[string]any{}}}), 401, "401 type")
	if rs := revocations(t); len(rs) != 0 {
		t.Fatalf("revocations %v", rs)
	}
}

// TestSignalsReload reloads a config with a polled transmitter again and
// again while the transmitter always has more: never two polls at once
// (the old config's loop hands over to the new one's), and none after the
// config is unloaded (no loop left behind).
func TestSignalsReload(t *testing.T) {
	poller := newSigIdP(t)
	var inFlight, most atomic.Int32
	poller.poll = func(n int, req sigPollRequest) any {
		k := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); k > m && !most.CompareAndSwap(m, k); m = most.Load() {
		}
		time.Sleep(2 * time.Millisecond)
		return map[string]any{"sets": map[string]string{}, "moreAvailable": true}
	}
	storage := t.TempDir()
	config := func(v int) string {
		return testGlobals(storage, "", "") + fmt.Sprintf(`
		http://localhost:9080 {
			jwtguard_signals /signals {
				audience %s
				transmitter %s {
					poll %s/poll
				}
			}
			respond "v%d"
		}`, signalsAudience, poller.iss(), poller.iss(), v)
	}
	tester := caddytest.NewTester(t)
	t.Cleanup(func() { unloadConfig(t) })
	tester.InitServer(config(0), "caddyfile")
	waitUntil(t, "a poll", func() bool { return len(poller.requests()) > 0 })
	for i := 1; i <= 10; i++ {
		before := len(poller.requests())
		resp, err := e2etest.AdminClient.Post("http://localhost:2999/load", "text/caddyfile", strings.NewReader(config(i)))
		if err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("reload %d: %d %s", i, resp.StatusCode, b)
		}
		waitUntil(t, "polls after the reload", func() bool { return len(poller.requests()) > before+5 })
	}
	if m := most.Load(); m != 1 {
		t.Fatalf("%d polls at once across reloads", m)
	}
	unloadConfig(t)
	time.Sleep(100 * time.Millisecond) // a poll already on its way
	after := len(poller.requests())
	time.Sleep(300 * time.Millisecond)
	if n := len(poller.requests()); n != after {
		t.Fatalf("%d polls after the config was unloaded", n-after)
	}
}
