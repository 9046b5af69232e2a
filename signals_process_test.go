package jwtguard_test

import (
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	jwtguard "github.com/jwtguard/caddy-jwtguard"
	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
	"github.com/jwtguard/caddy-jwtguard/signals"
)

// Crash tests of jwtguard_signals with the built binary, on ports
// 18111-18119 and admin ports 12111-12119.

const procSignalsAudience = "https://api.test/signals"

// procIdP is an identity provider on 127.0.0.1: a Shared Signals
// transmitter and an OpenID provider with one key, and a poll endpoint.
type procIdP struct {
	srv *httptest.Server
	key *ecdsa.PrivateKey

	mu   sync.Mutex
	poll func(n int, ack []string, r *http.Request) map[string]string // SETs for the n-th poll (from 1)
	acks [][]string                                                   // the ack of each poll
}

func newProcIdP(t *testing.T) *procIdP {
	t.Helper()
	p := &procIdP{}
	var mux *http.ServeMux
	p.key, mux = jwtguard.NewSignalsTestIdP(t, func() string { return p.srv.URL })
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Ack []string `json:"ack"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.mu.Lock()
		p.acks = append(p.acks, req.Ack)
		n, script := len(p.acks), p.poll
		p.mu.Unlock()
		sets := map[string]string{}
		if script != nil {
			sets = script(n, req.Ack, r)
		}
		if sets == nil { // the script gave up on this request
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"sets": sets})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *procIdP) polls() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.acks)
}

func (p *procIdP) sign(t *testing.T, typ string, claims jwt.MapClaims) string {
	t.Helper()
	return jwtguard.SignSignalsTestToken(t, p.key, typ, claims)
}

func (p *procIdP) accessToken(t *testing.T, sub string, extra jwt.MapClaims) string {
	now := time.Now()
	c := jwt.MapClaims{"iss": p.srv.URL, "sub": sub, "iat": now.Add(-10 * time.Second).Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return p.sign(t, "", c)
}

func (p *procIdP) set(t *testing.T, jti, event string, subject map[string]any, extra map[string]any) string {
	ev := map[string]any{"subject": subject}
	for k, v := range extra {
		ev[k] = v
	}
	return p.sign(t, "secevent+jwt", jwt.MapClaims{"iss": p.srv.URL, "aud": procSignalsAudience, "iat": time.Now().Unix(), "jti": jti,
		"events": map[string]any{event: ev}})
}

// newSignalsSite is a site whose / is guarded by jwtguard with the IdP's
// keys, and whose /signals takes its signals (pushed, and polled when
// poll is set).
func newSignalsSite(t *testing.T, sitePort, adminPort int, idp *procIdP, poll bool) procSite {
	t.Helper()
	storage := filepath.Join(t.TempDir(), "store")
	pollLine := ""
	if poll {
		pollLine = "poll " + idp.srv.URL + "/poll 1s"
	}
	return procSiteAt(t, sitePort, adminPort, func(adminAddr string) string {
		return procGlobals(adminAddr, storage) + fmt.Sprintf(`
http://127.0.0.1:%d {
	jwtguard_signals /signals {
		audience %s
		transmitter %s {
			authorization "Bearer push-credential"
			%s
		}
		oidc %s
	}
	jwtguard {
		oidc %s
	}
	respond "ok {http.auth.user.id}"
	handle_errors {
		respond "{http.error.status_code} {http.auth.jwt.error}"
	}
}
`, sitePort, procSignalsAudience, idp.srv.URL, pollLine, idp.srv.URL, idp.srv.URL)
	})
}

// signal POSTs a push or logout body to /signals until the keys have
// loaded, and returns the status as soon as it has arrived.
func (s procSite) signal(t *testing.T, contentType, body string) (status int) {
	t.Helper()
	while503(func() int {
		req, _ := http.NewRequest(http.MethodPost, s.siteURL+"signals", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("Authorization", "Bearer push-credential")
		resp, err := e2etest.FreshClient.Do(req)
		if err != nil {
			t.Fatalf("POST /signals: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		return status
	})
	return status
}

// waitAccepted is wantAccepted, ending the test on a failure: what
// follows depends on it.
func (s procSite) waitAccepted(t *testing.T, what, token, sub string) {
	t.Helper()
	if status, _, body := s.settled(t, token); status != http.StatusOK || body != "ok "+sub {
		t.Fatalf("%s: got %d %q, want 200 %q", what, status, body, "ok "+sub)
	}
}

// unrevoke deletes a revocation through the admin API, as an
// administrator would.
func (s procSite) unrevoke(t *testing.T, id string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, s.adminURL+"/jwtguard/revocations/"+id, nil)
	resp, err := e2etest.FreshClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %v %v", err, resp)
	}
	resp.Body.Close()
}

// TestSignalsCrashDurability pushes a SET or a logout token, kills Caddy
// with SIGKILL the moment the 202 (or 200) is in, restarts it on the same
// store, and checks that the token is still refused; over the kinds of
// entry signals make. Then a redelivery of each changes nothing, even for
// an entry an administrator deleted: the jtis survived the crashes too.
func TestSignalsCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy; skipped with -short")
	}
	bin := e2etest.Build(t)
	home := t.TempDir()
	idp := newProcIdP(t)
	site := newSignalsSite(t, 18111, 12111, idp, false)

	type revoked struct {
		what, token string
		signal      func() int // sends the signal again
	}
	var refused []revoked
	const rounds = 6
	for i := range rounds {
		caddy := site.start(t, bin, home)
		for _, r := range refused {
			site.wantRevoked(t, r.what+", after restart", r.token)
		}
		sub := fmt.Sprintf("crash-user-%d", i)
		var token, ctype, body, what string
		switch i % 3 {
		case 0: // a password change: every token of the user
			token = idp.accessToken(t, sub, nil)
			ctype, what = "application/secevent+jwt", "credential-change for "+sub
			body = idp.set(t, fmt.Sprintf("set-%d", i), signals.EventCredentialChange,
				map[string]any{"format": "iss_sub", "iss": idp.srv.URL, "sub": sub}, map[string]any{"change_type": "update", "event_timestamp": time.Now().Unix()})
		case 1: // one token, by its jti
			jti := fmt.Sprintf("access-%d", i)
			token = idp.accessToken(t, sub, jwt.MapClaims{"jti": jti})
			ctype, what = "application/secevent+jwt", "session-revoked of token "+jti
			body = idp.set(t, fmt.Sprintf("set-%d", i), signals.EventSessionRevoked,
				map[string]any{"format": "jwt_id", "iss": idp.srv.URL, "jti": jti}, nil)
		case 2: // a back-channel logout of one session
			sid := fmt.Sprintf("sess-%d", i)
			token = idp.accessToken(t, sub, jwt.MapClaims{"sid": sid})
			ctype, what = "application/x-www-form-urlencoded", "back-channel logout of "+sid
			now := time.Now()
			body = url.Values{"logout_token": {idp.sign(t, "logout+jwt", jwt.MapClaims{"iss": idp.srv.URL, "aud": procSignalsAudience,
				"iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "jti": fmt.Sprintf("logout-%d", i), "sid": sid,
				"events": map[string]any{signals.EventBackchannelLogout: map[string]any{}}})}}.Encode()
		}
		site.waitAccepted(t, what+", before", token, sub)
		want := http.StatusAccepted
		if i%3 == 2 {
			want = http.StatusOK
		}
		status := site.signal(t, ctype, body)
		caddy.Kill(t) // the moment the answer is in
		if status != want {
			t.Fatalf("%s: answered %d, want %d", what, status, want)
		}
		refused = append(refused, revoked{what, token, func() int { return site.signal(t, ctype, body) }})
		if t.Failed() {
			break
		}
	}

	caddy := site.start(t, bin, home)
	for _, r := range refused {
		site.wantRevoked(t, r.what+", after the last restart", r.token)
	}
	entries := site.list(t)
	if len(entries) != rounds {
		t.Fatalf("the admin API lists %d revocations, want %d", len(entries), rounds)
	}
	// Redelivered, each is answered as before and stores nothing more.
	for _, r := range refused {
		if st := r.signal(); st != http.StatusAccepted && st != http.StatusOK {
			t.Errorf("%s, redelivered: %d", r.what, st)
		}
	}
	if got := site.list(t); len(got) != rounds {
		t.Fatalf("after redelivery %d revocations, want %d", len(got), rounds)
	}
	// An entry an administrator deleted stays deleted when its signal is
	// replayed.
	site.unrevoke(t, entries[0].ID)
	refused[0].signal()
	site.wantAccepted(t, refused[0].what+", deleted and replayed", refused[0].token, "crash-user-0")
	site.wantAccepted(t, "a bystander", idp.accessToken(t, "bystander", nil), "bystander")
	caddy.Stop(t)
}

// TestSignalsPollCrash kills Caddy after it applied a polled SET and while
// its ack is on its way: after the restart the transmitter, which never
// took the ack, delivers the SET again; jwtguard acknowledges it and
// changes nothing (the entry, deleted meanwhile by an administrator, is
// not stored again). Before the redelivery, the token is already refused:
// the revocation was on disk before the ack was sent.
func TestSignalsPollCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy; skipped with -short")
	}
	bin := e2etest.Build(t)
	home := t.TempDir()
	idp := newProcIdP(t)
	site := newSignalsSite(t, 18112, 12112, idp, true)
	token := idp.accessToken(t, "pat", nil)
	set := idp.set(t, "poll-1", signals.EventAccountDisabled, map[string]any{"format": "iss_sub", "iss": idp.srv.URL, "sub": "pat"}, map[string]any{"event_timestamp": time.Now().Unix()})

	ackInFlight := make(chan struct{})
	var once sync.Once
	release := make(chan struct{}) // lets the redelivery go
	// The handler reads the script on requests from another process.
	idp.mu.Lock()
	idp.poll = func(n int, ack []string, r *http.Request) map[string]string {
		switch {
		case n == 1:
			return map[string]string{"poll-1": set}
		case slices.Contains(ack, "poll-1") && n == 2:
			// The ack is here, and is never taken: Caddy dies first.
			once.Do(func() { close(ackInFlight) })
			<-r.Context().Done()
			return nil
		case n == 3: // the first poll after the restart
			select {
			case <-release:
			case <-r.Context().Done():
				return nil
			}
			return map[string]string{"poll-1": set}
		}
		return map[string]string{}
	}
	idp.mu.Unlock()

	caddy := site.start(t, bin, home)
	select {
	case <-ackInFlight:
	case <-time.After(30 * time.Second):
		t.Fatalf("no ack arrived; polls: %v", idp.polls())
	}
	caddy.Kill(t)

	caddy = site.start(t, bin, home)
	site.wantRevoked(t, "pat after the crash, before any redelivery", token)
	entries := site.list(t)
	if len(entries) != 1 || entries[0].Subject != "pat" {
		t.Fatalf("revocations %+v", entries)
	}
	site.unrevoke(t, entries[0].ID)
	close(release)

	if !e2etest.Eventually(30*time.Second, func() bool {
		polls := idp.polls()
		return len(polls) >= 4 && slices.Contains(polls[3], "poll-1")
	}) {
		t.Fatalf("the redelivered SET was never acknowledged; polls: %v", idp.polls())
	}
	if polls := idp.polls(); len(polls[2]) != 0 {
		t.Fatalf("the first poll after the restart acknowledges %v: acks are not kept across a crash", polls[2])
	}
	if got := site.list(t); len(got) != 0 {
		t.Fatalf("the redelivery stored %+v again", got)
	}
	site.wantAccepted(t, "pat, un-revoked by the administrator", token, "pat")
	t.Logf("polls (their acks): %v", idp.polls())
	caddy.Stop(t)
}

// TestSignalsValidateDoesNotPoll: `caddy validate` of a config with a
// polled transmitter polls nothing, and succeeds beside a running server
// of the same config, whose store (locked by the server) it does not
// open. (That poll loops wait for a started app is TestWaitForApp's.)
func TestSignalsValidateDoesNotPoll(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy; skipped with -short")
	}
	bin := e2etest.Build(t)
	idp := newProcIdP(t)
	site := newSignalsSite(t, 18113, 12113, idp, true)

	out := e2etest.Run(t, bin, "validate", "--config", site.cfg, "--adapter", "caddyfile")
	time.Sleep(200 * time.Millisecond) // a poll validate sent before it exited would have arrived by now
	if n := len(idp.polls()); n != 0 {
		t.Fatalf("caddy validate polled %d times; output: %s", n, out)
	}

	caddy := site.start(t, bin, "")
	if !e2etest.Eventually(30*time.Second, func() bool { return len(idp.polls()) > 0 }) {
		t.Fatal("the running server never polled")
	}
	res := caddy.TryCLI(t, "validate", "--config", site.cfg, "--adapter", "caddyfile")
	if res.ExitCode != 0 || !strings.Contains(res.Stdout+res.Stderr, "Valid configuration") {
		t.Fatalf("caddy validate beside the server: exit %d\n%s\n%s", res.ExitCode, res.Stdout, res.Stderr)
	}
	caddy.Stop(t)
}
