package jwtguard

// Regression tests, through a real Caddy, for the revocation findings of
// the second security review (issue #9): a revoked token must not come
// back inside the leeway, and a failed reload must not take the admin API
// away.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
)

// leewayConfig guards one route with a minute of leeway.
func leewayConfig(storage string, httpPort int) string {
	return fmt.Sprintf(`
	{
		skip_install_trust
		admin localhost:2999
		http_port %d
		https_port 9443
		grace_period 1ns
		jwtguard {
			storage_dir %s
		}
	}
	http://localhost:%d {
		jwtguard {
			secret %s
			leeway 60s
		}
		respond "ok"
	}`, httpPort, storage, httpPort, testSecret)
}

func getWithToken(t *testing.T, url, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// A revocation made from a token expires at the token's exp; a route with
// leeway 60s still accepts the token after exp, so the revocation must
// hold past it too.
func TestRevocationHoldsThroughLeeway(t *testing.T) {
	storage := t.TempDir() // removed after the config is unloaded (cleanups run last first)
	tester := caddytest.NewTester(t)
	t.Cleanup(func() { unloadConfig(t) })
	tester.InitServer(leewayConfig(storage, 9080), "caddyfile")

	tok := sign(t, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(2 * time.Second).Unix()})
	if code, body := adminPost(t, "/jwtguard/revocations", `{"token":"`+tok+`"}`); code != 201 {
		t.Fatalf("revoking: %d %s", code, body)
	}
	time.Sleep(3500 * time.Millisecond) // past exp (whole seconds), inside the leeway
	code, challenge := getWithToken(t, "http://localhost:9080/", tok)
	if code != 401 || !strings.Contains(challenge, "revoked") {
		t.Fatalf("revoked token past its exp, inside the leeway: %d %q, want 401 revoked", code, challenge)
	}
	// The same token unrevoked would pass: the leeway is what kept it valid.
	other := sign(t, jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(-2 * time.Second).Unix()})
	if code, _ := getWithToken(t, "http://localhost:9080/", other); code != 200 {
		t.Fatalf("an unrevoked token 2s past exp inside the leeway: %d, want 200", code)
	}
}

// When a reload fails after the new jwtguard app started (here: another
// app cannot bind its port), Caddy stops the new app and the old config
// goes on serving; the admin API must go on answering for it, so that a
// revocation can be made during an incident.
func TestAdminAPISurvivesFailedReload(t *testing.T) {
	storage := t.TempDir()
	tester := caddytest.NewTester(t)
	t.Cleanup(func() { unloadConfig(t) })
	tester.InitServer(leewayConfig(storage, 9080), "caddyfile")

	busy, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	// Caddy starts apps in map order, which Go randomizes: repeating makes
	// it all but certain that the jwtguard app starts before the http app
	// fails in some of the rounds.
	for i := 0; i < 12; i++ {
		resp, err := e2etest.AdminClient.Post("http://localhost:2999/load", "text/caddyfile", strings.NewReader(leewayConfig(storage, busyPort)))
		if err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("reload %d onto a busy port succeeded: %s", i, b)
		}
		tok := sign(t, jwt.MapClaims{"sub": "alice", "jti": fmt.Sprintf("stolen-%d", i)})
		if code, body := adminPost(t, "/jwtguard/revocations", fmt.Sprintf(`{"jti":"stolen-%d"}`, i)); code != 201 {
			t.Fatalf("revoking after failed reload %d: %d %s", i, code, body)
		}
		if code, challenge := getWithToken(t, "http://localhost:9080/", tok); code != 401 || !strings.Contains(challenge, "revoked") {
			t.Fatalf("token revoked after failed reload %d: %d %q, want 401 revoked", i, code, challenge)
		}
	}
}
