package jwtguard

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
)

// TestLogoutRevokes runs jwtguard_logout and session revocations through a
// real Caddy: the logout request itself passes, and the very next request
// with the token (or, with everywhere, any older token of the subject) is
// refused; a request without a token revokes nothing.
func TestLogoutRevokes(t *testing.T) {
	tester := startCaddy(t, `
	http://localhost:9080 {
		handle /api/* {
			jwtguard {
				secret `+testSecret+`
			}
			respond "api {http.auth.user.id}"
		}
		handle /logout {
			# Written before jwtguard: the directive order puts it after.
			jwtguard_logout
			jwtguard {
				secret `+testSecret+`
			}
			respond "bye {http.auth.user.id}"
		}
		route /logout/everywhere {
			jwtguard {
				secret `+testSecret+`
			}
			jwtguard_logout everywhere
			respond "bye everywhere"
		}
		route /logout/maybe {
			jwtguard {
				secret `+testSecret+`
				optional
			}
			jwtguard_logout
			respond "maybe"
		}
		handle_errors {
			respond "{http.error.status_code} {http.auth.jwt.error}"
		}
	}
	`)

	get := func(path, tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://localhost:9080"+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := tester.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	want := func(path, tok string, code int, body string) {
		t.Helper()
		if c, b := get(path, tok); c != code || b != body {
			t.Fatalf("GET %s: %d %q, want %d %q", path, c, b, code, body)
		}
	}
	const iss = "https://idp.example"
	old := time.Now().Add(-time.Minute).Unix()
	tokA := sign(t, jwt.MapClaims{"sub": "alice", "iss": iss, "jti": "a1", "iat": old})
	tokB := sign(t, jwt.MapClaims{"sub": "alice", "iss": iss, "jti": "a2", "iat": old})
	tokC := sign(t, jwt.MapClaims{"sub": "alice", "iss": iss, "jti": "a3", "iat": old})
	tokBob := sign(t, jwt.MapClaims{"sub": "bob", "iss": iss, "jti": "b1", "iat": old})

	want("/api/x", tokA, 200, "api alice")
	want("/logout", tokA, 200, "bye alice")
	want("/api/x", tokA, 401, "401 revoked")
	want("/logout", tokA, 401, "401 revoked")
	want("/api/x", tokB, 200, "api alice") // plain logout is this token only

	// Optional without a token: passes and revokes nothing.
	n := len(revocations(t))
	want("/logout/maybe", "", 200, "maybe")
	if got := len(revocations(t)); got != n {
		t.Fatalf("a logout without a token stored %d entries", got-n)
	}

	want("/logout/everywhere", tokB, 200, "bye everywhere")
	want("/api/x", tokB, 401, "401 revoked")
	want("/api/x", tokC, 401, "401 revoked") // another alice token, issued before
	want("/api/x", tokBob, 200, "api bob")

	// A session revocation through the admin API refuses the tokens of
	// that session only.
	tokS1 := sign(t, jwt.MapClaims{"sub": "carol", "iss": iss, "sid": "sess-1"})
	tokS2 := sign(t, jwt.MapClaims{"sub": "carol", "iss": iss, "sid": "sess-2"})
	tokOther := sign(t, jwt.MapClaims{"sub": "carol", "iss": "https://other.example", "sid": "sess-1"})
	want("/api/x", tokS1, 200, "api carol")
	resp, err := e2etest.AdminClient.Post("http://localhost:2999/jwtguard/revocations", "application/json",
		strings.NewReader(`{"sid":"sess-1","iss":"`+iss+`","reason":"back-channel logout"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("POST session entry: %d", resp.StatusCode)
	}
	want("/api/x", tokS1, 401, "401 revoked")
	want("/api/x", tokS2, 200, "api carol")
	want("/api/x", tokOther, 200, "api carol")
}

func TestLogoutCaddyfile(t *testing.T) {
	for _, c := range []struct {
		in, err    string
		everywhere bool
	}{
		{"jwtguard_logout", "", false},
		{"jwtguard_logout everywhere", "", true},
		{"jwtguard_logout somewhere", `unknown argument "somewhere"`, false},
		{"jwtguard_logout everywhere now", `unexpected argument "now"`, false},
		{"jwtguard_logout {\n everywhere\n}", "takes no block", false},
	} {
		var l Logout
		err := l.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.in))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.in, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want %q", c.in, err, c.err)
		case c.err == "" && l.Everywhere != c.everywhere:
			t.Errorf("%q: everywhere %v", c.in, l.Everywhere)
		}
	}
}
