package jwtguard_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
)

// The secret the example reads from JWTGUARD_SECRET, as make run sets it.
const exampleSecret = "demo-secret-change-me-0123456789abcdef"

const whoamiURL = "http://localhost:8080/api/whoami"

// TestEndToEnd builds Caddy with jwtguard, serves example/Caddyfile, and
// checks what clients, the upstream and the access log see.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy; skipped with -short")
	}
	bin := e2etest.Build(t)
	// The site, the example upstream and the admin endpoint, as the
	// example binds them.
	e2etest.RequirePortsFree(t, ":8080", "127.0.0.1:9090", "127.0.0.1:9091", "localhost:2019")
	caddy := e2etest.Start(t, bin, e2etest.Options{
		Args: []string{"run", "--config", "example/Caddyfile", "--adapter", "caddyfile"},
		Env:  []string{"JWTGUARD_SECRET=" + exampleSecret},
	})
	caddy.WaitReady(t, "http://localhost:8080/", 30*time.Second)

	token := e2etest.Run(t, bin, "jwtguard", "sign", "--secret", exampleSecret, "--sub", "alice",
		"--claim", "email=alice@example.com", "--claim", `roles=["admin","dev"]`)
	otherKeyToken := e2etest.Run(t, bin, "jwtguard", "sign", "--secret", "another-secret-entirely-0123456789abcdef", "--sub", "alice")
	expiredToken := mintExpired(t)
	// Every real token sent; none may show up in Caddy's logs.
	tokens := map[string]string{"valid": token, "other key": otherKeyToken, "expired": expiredToken}

	wantAlice := map[string]string{
		"X-User-Id":     "alice",
		"X-User-Email":  "alice@example.com",
		"X-User-Roles":  "admin, dev",
		"X_User_Id":     "",
		"Authorization": "", // strip_token
	}

	t.Run("claims reach the upstream", func(t *testing.T) {
		status, hdr, body := getWhoami(t, bearer(token), nil)
		if status != http.StatusOK {
			t.Fatalf("status %d, want 200; WWW-Authenticate %q; body:\n%s", status, hdr.Get("WWW-Authenticate"), body)
		}
		checkUpstreamSaw(t, body, wantAlice)
	})

	t.Run("forged claim headers are dropped", func(t *testing.T) {
		// Set directly: Header.Set would canonicalize every spelling to
		// X-User-Id, and the point is to send them as written.
		forged := http.Header{
			"X-User-Id":    {"mallory"},
			"X_User_Id":    {"mallory"},
			"x-user-id":    {"mallory"},
			"X-User-Email": {"mallory@example.com"},
			"X_User_Roles": {"mallory"},
		}
		status, _, body := getWhoami(t, bearer(token), forged)
		if status != http.StatusOK {
			t.Fatalf("status %d, want 200; body:\n%s", status, body)
		}
		checkUpstreamSaw(t, body, wantAlice)
		if strings.Contains(body, "mallory") {
			t.Errorf("a forged header reached the upstream:\n%s", body)
		}

		// Without a token the request must stop at the guard.
		status, _, body = getWhoami(t, "", http.Header{"X-User-Email": {"mallory@example.com"}})
		if status != http.StatusUnauthorized {
			t.Errorf("no token, forged X-User-Email: status %d, want 401; body:\n%s", status, body)
		}
		if strings.Contains(body, "upstream saw") || strings.Contains(body, "mallory") {
			t.Errorf("no token, forged X-User-Email: request reached the upstream:\n%s", body)
		}
	})

	t.Run("no token", func(t *testing.T) {
		status, hdr, body := getWhoami(t, "", nil)
		if status != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401; body:\n%s", status, body)
		}
		if got, want := hdr.Values("WWW-Authenticate"), []string{`Bearer realm="jwtguard"`}; !slices.Equal(got, want) {
			t.Errorf("WWW-Authenticate = %q, want %q", got, want)
		}
	})

	t.Run("invalid tokens", func(t *testing.T) {
		for name, auth := range map[string]string{
			"garbage":   "Bearer abc.def.ghi",
			"other key": bearer(otherKeyToken),
		} {
			t.Run(name, func(t *testing.T) {
				status, hdr, body := getWhoami(t, auth, nil)
				if status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401; body:\n%s", status, body)
				}
				checkInvalidToken(t, hdr, "")
			})
		}
	})

	t.Run("expired token", func(t *testing.T) {
		status, hdr, body := getWhoami(t, bearer(expiredToken), nil)
		if status != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401; body:\n%s", status, body)
		}
		checkInvalidToken(t, hdr, "expired")
	})

	t.Run("logout revokes", func(t *testing.T) {
		// A token of its own: the others must stay valid for the rest.
		mine := e2etest.Run(t, bin, "jwtguard", "sign", "--secret", exampleSecret, "--sub", "alice", "--claim", "sid=e2e-logout")
		if status, _, body := getWhoami(t, bearer(mine), nil); status != http.StatusOK {
			t.Fatalf("before logout: status %d; body:\n%s", status, body)
		}
		req, _ := http.NewRequest("GET", "http://localhost:8080/logout", nil)
		req.Header.Set("Authorization", bearer(mine))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "alice") {
			t.Fatalf("logout: %d %q", resp.StatusCode, b)
		}
		status, hdr, body := getWhoami(t, bearer(mine), nil)
		if status != http.StatusUnauthorized {
			t.Fatalf("after logout: status %d, want 401; body:\n%s", status, body)
		}
		checkInvalidToken(t, hdr, "revoked")
		if status, _, _ := getWhoami(t, bearer(token), nil); status != http.StatusOK {
			t.Fatalf("logout of one token refused another: %d", status)
		}
		// The CLI's --sid makes a session entry the running server applies.
		sess := e2etest.Run(t, bin, "jwtguard", "sign", "--secret", exampleSecret, "--sub", "bob", "--claim", "sid=e2e-session")
		if status, _, _ := getWhoami(t, bearer(sess), nil); status != http.StatusOK {
			t.Fatalf("session token before revoke: %d", status)
		}
		out := e2etest.Run(t, bin, "jwtguard", "revoke", "--sid", "e2e-session", "--reason", "e2e")
		if !strings.Contains(out, `"kind": "session"`) && !strings.Contains(out, `"kind":"session"`) {
			t.Fatalf("revoke --sid printed %s", out)
		}
		if status, _, _ := getWhoami(t, bearer(sess), nil); status != http.StatusUnauthorized {
			t.Fatalf("session token after revoke --sid: %d, want 401", status)
		}
	})

	// Last: it stops Caddy so that every log line has been written.
	t.Run("access log", func(t *testing.T) {
		// Its own requests, so it also passes when run alone: alice
		// accepted, then alice's expired token (a verified signature, so
		// a careless handler could still set user_id) and no token.
		for _, tc := range []struct {
			auth string
			want int
		}{{bearer(token), 200}, {bearer(expiredToken), 401}, {"", 401}} {
			if status, _, body := getWhoami(t, tc.auth, nil); status != tc.want {
				t.Fatalf("status %d, want %d; body:\n%s", status, tc.want, body)
			}
		}
		caddy.Stop(t)
		lines := caddy.Lines()

		var aliceOK, rejected int
		for _, line := range lines {
			var e accessEntry
			if json.Unmarshal([]byte(line), &e) != nil || !strings.HasPrefix(e.Logger, "http.log.access") || e.Request.URI != "/api/whoami" {
				continue
			}
			switch {
			case e.Status == http.StatusOK && e.UserID == "alice":
				aliceOK++
			case e.Status == http.StatusUnauthorized:
				rejected++
				if e.UserID != "" {
					t.Errorf("a 401 access log line carries user_id %q:\n%s", e.UserID, line)
				}
			}
		}
		if aliceOK == 0 {
			t.Errorf(`no access log line for /api/whoami with status 200 and "user_id":"alice"`)
		}
		if rejected == 0 {
			t.Errorf("no access log line for a 401 on /api/whoami")
		}

		all := strings.Join(lines, "\n")
		for name, tok := range tokens {
			if strings.Contains(all, tok) {
				t.Errorf("the raw %s token appears in Caddy's stderr", name)
			}
		}
	})
}

// accessEntry is the part of a Caddy access log line the test reads.
type accessEntry struct {
	Logger  string `json:"logger"`
	Status  int    `json:"status"`
	UserID  string `json:"user_id"`
	Request struct {
		URI string `json:"uri"`
	} `json:"request"`
}

// mintExpired signs a token for alice with the example's secret that
// expired an hour ago, far beyond the example's 30s leeway, so the test
// need not wait for a short-lived token to run out.
func mintExpired(t *testing.T) string {
	t.Helper()
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":   "alice",
		"email": "alice@example.com",
		"iat":   now.Add(-2 * time.Hour).Unix(),
		"exp":   now.Add(-time.Hour).Unix(),
	}).SignedString([]byte(exampleSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(token string) string { return "Bearer " + token }

// getWhoami requests /api/whoami with auth as the Authorization header
// (none if empty) and the extra headers as written.
func getWhoami(t *testing.T, auth string, extra http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, whoamiURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, values := range extra {
		req.Header[name] = values
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := e2etest.FreshClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", whoamiURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", whoamiURL, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// checkUpstreamSaw compares the "Name: value" lines the example upstream
// echoes with want.
func checkUpstreamSaw(t *testing.T, body string, want map[string]string) {
	t.Helper()
	if !strings.HasPrefix(body, "upstream saw:") {
		t.Fatalf("body is not the example upstream's echo:\n%s", body)
	}
	saw := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), ":"); ok {
			saw[name] = strings.TrimSpace(value)
		}
	}
	for name, value := range want {
		if got, ok := saw[name]; !ok || got != value {
			t.Errorf("upstream saw %s: %q, want %q; body:\n%s", name, got, value, body)
		}
	}
}

// checkInvalidToken checks an RFC 6750 invalid_token challenge, whose
// error_description contains reason if reason is not empty.
func checkInvalidToken(t *testing.T, hdr http.Header, reason string) {
	t.Helper()
	got := hdr.Values("WWW-Authenticate")
	if len(got) != 1 {
		t.Fatalf("WWW-Authenticate = %q, want one challenge", got)
	}
	c := got[0]
	if !strings.HasPrefix(c, `Bearer realm="jwtguard", `) || !strings.Contains(c, `error="invalid_token"`) {
		t.Errorf(`WWW-Authenticate = %q, want Bearer realm="jwtguard" with error="invalid_token"`, c)
	}
	_, desc, ok := strings.Cut(c, `error_description="`)
	if !ok {
		t.Errorf("WWW-Authenticate = %q has no error_description", c)
		return
	}
	if reason != "" && !strings.Contains(strings.ToLower(desc), reason) {
		t.Errorf("WWW-Authenticate = %q, want an error_description mentioning %q", c, reason)
	}
}
