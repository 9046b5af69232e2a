package jwtguard

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
)

// TestIntegration runs a real Caddy in-process (caddytest) with jwtguard
// in front of a handler that echoes what it received.
func TestIntegration(t *testing.T) {
	tester := startCaddy(t, `
	http://localhost:9080 {
		handle /api/* {
			jwtguard {
				secret `+testSecret+`
				issuer https://idp.example
				claim_header sub X-User-Id
				claim_header roles X-Roles
			}
			respond "id={http.request.header.X-User-Id} roles={http.request.header.X-Roles} forged={http.request.header.X_User_Id} email={http.auth.user.email} tid={http.auth.jwt.token_id}"
		}
		handle /page/* {
			jwtguard {
				secret `+testSecret+`
				from cookie session
			}
			respond "page for {http.auth.user.id}"
		}
		handle_errors {
			@browser expression `+"`{http.error.status_code} == 401 && {http.request.uri.path}.startsWith('/page/')`"+`
			redir @browser /login?why={http.auth.jwt.error}
			respond "{http.error.status_code} {http.auth.jwt.error}"
		}
	}
	`)

	tok := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp.example", "jti": "t1", "email": "a@example.com", "roles": []string{"r1", "r2"}})

	req, _ := http.NewRequest("GET", "http://localhost:9080/api/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header["X_User_Id"] = []string{"mallory"}
	tester.AssertResponse(req, 200, "id=alice roles=r1, r2 forged= email=a@example.com tid=https://idp.example#t1")

	// handle_errors sees the status and the error code
	req, _ = http.NewRequest("GET", "http://localhost:9080/api/x", nil)
	resp, _ := tester.AssertResponse(req, 401, "401 missing")
	if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="jwtguard"` {
		t.Errorf("WWW-Authenticate %q", got)
	}

	expired := sign(t, jwt.MapClaims{"sub": "alice", "iss": "https://idp.example", "exp": time.Now().Add(-time.Hour).Unix()})
	req, _ = http.NewRequest("GET", "http://localhost:9080/api/x", nil)
	req.Header.Set("Authorization", "Bearer "+expired)
	resp, _ = tester.AssertResponse(req, 401, "401 expired")
	if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q", got)
	}

	// browsers on /page/ are sent to the login page
	tester.AssertRedirect("http://localhost:9080/page/home", "http://localhost:9080/login?why=missing", http.StatusFound)

	req, _ = http.NewRequest("GET", "http://localhost:9080/page/home", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: tok})
	resp, err := tester.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "page for alice" {
		t.Fatalf("cookie token: %d %q", resp.StatusCode, b)
	}
}

// unloadConfig replaces the running test config with an empty one, so the
// revocation store is closed before its temporary directory is removed.
func unloadConfig(t *testing.T) {
	resp, err := e2etest.AdminClient.Post("http://localhost:2999/load", "application/json",
		strings.NewReader(`{"admin":{"listen":"localhost:2999"}}`))
	if err != nil {
		t.Logf("unloading test config: %v", err)
		return
	}
	resp.Body.Close()
	// caddytest's own requests keep connections in the default pool, and
	// send each once: the admin server they went to has just been
	// replaced, and the old one may still take a new connection.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	e2etest.Reloaded(t, "http://localhost:2999/config/")
}

// testGlobals is the global options block of the in-process Caddy these
// tests start: the admin endpoint unloadConfig posts to, the fixed ports,
// and jwtguard's store in storage. servers and jwtguard are added inside
// the servers and jwtguard blocks ("" for none).
func testGlobals(storage, servers, jwtguard string) string {
	s := `
	{
		skip_install_trust
		admin localhost:2999
		http_port 9080
		https_port 9443
		grace_period 1ns`
	if servers != "" {
		s += `
		servers {
			` + servers + `
		}`
	}
	return s + `
		jwtguard {
			storage_dir ` + storage + `
			` + jwtguard + `
		}
	}
	`
}

// startCaddy runs an in-process Caddy with testGlobals (on a fresh store)
// and sites, and unloads it when t ends, before the store's directory is
// removed.
func startCaddy(t *testing.T, sites string) *caddytest.Tester {
	t.Helper()
	storage := t.TempDir()
	tester := caddytest.NewTester(t)
	t.Cleanup(func() { unloadConfig(t) })
	tester.InitServer(testGlobals(storage, "", "")+sites, "caddyfile")
	return tester
}
