package jwtguard_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
)

// Tests of the built Caddy as a process: crashes, the revocation CLI
// against a running server, and `caddy validate` beside one. Each test
// has its own ports (none of the example's 8080/9090/2019), so they can
// run beside TestEndToEnd.

const procSecret = "process-test-secret-0123456789abcdef"

// procSite is one Caddy config of these tests: a site guarded by jwtguard
// on siteAddr, the admin API on adminAddr, the store in storageDir.
type procSite struct {
	cfg       string // path of the Caddyfile
	siteURL   string // http://127.0.0.1:<port>/
	adminAddr string // localhost:<port>
	adminURL  string // http://localhost:<port>
}

// newProcSite writes the Caddyfile into a temp dir. The site answers
// "ok <sub>", and a rejected request "<status> <error code>", so the
// body shows {http.auth.jwt.error}. leeway 5s lets a token issued a
// couple of seconds in the future through (see TestCLIAgainstRunningCaddy).
func newProcSite(t *testing.T, sitePort, adminPort int, storageDir string) procSite {
	t.Helper()
	return procSiteAt(t, sitePort, adminPort, func(adminAddr string) string {
		return procGlobals(adminAddr, storageDir) + fmt.Sprintf(`
http://127.0.0.1:%d {
	jwtguard {
		secret %s
		claim_header sub X-User-Id
		leeway 5s
	}
	respond "ok {http.auth.user.id}"
	handle_errors {
		respond "{http.error.status_code} {http.auth.jwt.error}"
	}
}
`, sitePort, procSecret)
	})
}

// procGlobals is the global options block of a process test's Caddyfile:
// the admin address and the revocation store's directory.
func procGlobals(adminAddr, storageDir string) string {
	return fmt.Sprintf("{\n\tadmin %s\n\tjwtguard {\n\t\tstorage_dir %q\n\t}\n}\n", adminAddr, storageDir)
}

// procSiteAt is a site on 127.0.0.1:sitePort with its admin API on
// localhost:adminPort, both checked free, and the Caddyfile config makes
// for that admin address, written into a temp dir.
func procSiteAt(t *testing.T, sitePort, adminPort int, config func(adminAddr string) string) procSite {
	t.Helper()
	s := procSite{
		siteURL:   fmt.Sprintf("http://127.0.0.1:%d/", sitePort),
		adminAddr: fmt.Sprintf("localhost:%d", adminPort),
	}
	s.adminURL = "http://" + s.adminAddr
	e2etest.RequirePortsFree(t, fmt.Sprintf("127.0.0.1:%d", sitePort), s.adminAddr)
	s.cfg = filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(s.cfg, []byte(config(s.adminAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs Caddy on the config with HOME home and waits until the site
// answers.
func (s procSite) start(t *testing.T, bin, home string) *e2etest.Process {
	t.Helper()
	p := e2etest.Start(t, bin, e2etest.Options{
		Args: []string{"run", "--config", s.cfg, "--adapter", "caddyfile"},
		Home: home,
	})
	p.WaitReady(t, s.siteURL, 30*time.Second)
	return p
}

// get requests the site with the token as a Bearer token.
func (s procSite) get(t *testing.T, token string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.siteURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e2etest.FreshClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", s.siteURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", s.siteURL, err)
	}
	return resp.StatusCode, resp.Header, strings.TrimSpace(string(body))
}

// while503 calls send again while it answers 503, for up to 30 s: just
// after a start, the keys from a JWK Set or discovery and the revocation
// store may not be there yet, and jwtguard (the handler, the admin API,
// jwtguard_signals) fails closed with 503 and Retry-After meanwhile.
func while503(send func() int) {
	for deadline := time.Now().Add(30 * time.Second); send() == http.StatusServiceUnavailable && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
}

// settled is get, sent again while the answer is 503 (while503).
func (s procSite) settled(t *testing.T, token string) (status int, hdr http.Header, body string) {
	t.Helper()
	while503(func() int {
		status, hdr, body = s.get(t, token)
		return status
	})
	return status, hdr, body
}

// wantAccepted checks that the token gets 200 and reaches the site as sub.
func (s procSite) wantAccepted(t *testing.T, what, token, sub string) {
	t.Helper()
	status, hdr, body := s.settled(t, token)
	if status != http.StatusOK || body != "ok "+sub {
		t.Errorf("%s: got %d %q (WWW-Authenticate %q), want 200 %q", what, status, body, hdr.Get("WWW-Authenticate"), "ok "+sub)
	}
}

// wantRevoked checks that the token is refused as revoked: 401, an RFC
// 6750 invalid_token challenge saying so, and {http.auth.jwt.error} =
// revoked.
func (s procSite) wantRevoked(t *testing.T, what, token string) {
	t.Helper()
	const challenge = `Bearer realm="jwtguard", error="invalid_token", error_description="token revoked"`
	status, hdr, body := s.settled(t, token)
	if status != http.StatusUnauthorized || body != "401 revoked" {
		t.Errorf("%s: got %d %q, want 401 %q", what, status, body, "401 revoked")
	}
	if got := hdr.Values("WWW-Authenticate"); len(got) != 1 || got[0] != challenge {
		t.Errorf("%s: WWW-Authenticate = %q, want [%q]", what, got, challenge)
	}
}

// revoke POSTs a revocation to the admin API and returns the status and
// body as soon as they have arrived.
func (s procSite) revoke(t *testing.T, entry map[string]string) (int, string) {
	t.Helper()
	data, err := json.Marshal(entry)
	if err != nil {
		t.Fatal(err)
	}
	url := s.adminURL + "/jwtguard/revocations"
	resp, err := e2etest.FreshClient.Post(url, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("POST %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// list returns every revocation, through the admin API.
func (s procSite) list(t *testing.T) []procEntry {
	t.Helper()
	url := s.adminURL + "/jwtguard/revocations?limit=1000"
	var resp *http.Response
	while503(func() int {
		if resp != nil {
			resp.Body.Close()
		}
		var err error
		if resp, err = e2etest.AdminClient.Get(url); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		return resp.StatusCode
	})
	defer resp.Body.Close()
	var page struct {
		Revocations []procEntry `json:"revocations"`
		NextCursor  string      `json:"next_cursor"`
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if page.NextCursor != "" {
		t.Fatalf("GET %s: more than one page", url)
	}
	return page.Revocations
}

// procEntry is a revocation entry as the admin API and the CLI print it.
type procEntry struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	JTI       string     `json:"jti"`
	Issuer    string     `json:"iss"`
	TokenID   string     `json:"token_id"`
	Subject   string     `json:"sub"`
	Before    *time.Time `json:"before"`
	KeyID     string     `json:"kid"`
	Reason    string     `json:"reason"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// procSign signs claims with procSecret, adding exp = now + 1h if absent.
func procSign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(procSecret))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// procExp reads a token's exp without verifying it.
func procExp(t *testing.T, token string) time.Time {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		t.Fatal(err)
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		t.Fatalf("token has no exp: %v", err)
	}
	return exp.Time
}

// TestCrashDurability revokes a token, kills Caddy with SIGKILL the moment
// the admin API has answered 201, restarts it on the same store, and
// checks that the token, and every one revoked before, is still refused;
// 20 times, over the kinds of entry.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy; skipped with -short")
	}
	bin := e2etest.Build(t)
	home := t.TempDir()
	site := newProcSite(t, 18081, 12019, filepath.Join(t.TempDir(), "store"))

	type revokedToken struct{ what, token string }
	var refused []revokedToken
	began := time.Now()
	const rounds = 20
	for i := range rounds {
		round := time.Now()
		caddy := site.start(t, bin, home)
		for _, r := range refused {
			site.wantRevoked(t, r.what+", after restart", r.token)
		}

		sub := fmt.Sprintf("crash-user-%d", i)
		var token string
		var entry map[string]string
		switch i % 3 {
		case 0: // the token itself
			token = e2etest.Run(t, bin, "jwtguard", "sign", "--secret", procSecret, "--sub", sub)
			entry = map[string]string{"token": token}
		case 1: // jti and iss
			jti := fmt.Sprintf("crash-jti-%d", i)
			token = e2etest.Run(t, bin, "jwtguard", "sign", "--secret", procSecret, "--sub", sub,
				"--iss", "https://idp.example", "--claim", "jti="+jti)
			entry = map[string]string{"jti": jti, "iss": "https://idp.example"}
		case 2: // the subject, for tokens issued before a time
			now := time.Now()
			token = procSign(t, jwt.MapClaims{"sub": sub, "iat": now.Unix()})
			before := now.Add(2 * time.Second).Truncate(time.Second)
			entry = map[string]string{"sub": sub, "before": before.UTC().Format(time.RFC3339)}
		}
		what := fmt.Sprintf("round %d, %s revoked by %v", i, sub, entry)
		if _, hasTok := entry["token"]; hasTok {
			what = fmt.Sprintf("round %d, %s revoked by its token", i, sub)
		}
		site.wantAccepted(t, what+", before revocation", token, sub)

		status, body := site.revoke(t, entry)
		caddy.Kill(t) // the moment the answer is in
		if status != http.StatusCreated {
			t.Fatalf("%s: POST answered %d, want 201: %s", what, status, body)
		}
		refused = append(refused, revokedToken{what, token})
		t.Logf("round %d (%s): %v", i, strings.Join(procEntryFields(entry), "+"), time.Since(round).Round(time.Millisecond))
		if t.Failed() {
			break
		}
	}

	// One more restart: everything is still refused, the list holds every
	// entry, and a token nobody revoked still gets through.
	caddy := site.start(t, bin, home)
	for _, r := range refused {
		site.wantRevoked(t, r.what+", after the last restart", r.token)
	}
	if got := len(site.list(t)); got != len(refused) {
		t.Errorf("the admin API lists %d revocations, want %d", got, len(refused))
	}
	site.wantAccepted(t, "a token never revoked", procSign(t, jwt.MapClaims{"sub": "bystander", "iat": time.Now().Unix()}), "bystander")
	caddy.Stop(t)
	t.Logf("%d crash rounds and a last restart in %v", len(refused), time.Since(began).Round(time.Millisecond))
}

func procEntryFields(m map[string]string) []string {
	var ks []string
	for _, k := range []string{"token", "jti", "iss", "sub", "before"} {
		if _, ok := m[k]; ok {
			ks = append(ks, k)
		}
	}
	return ks
}

// TestCLIAgainstRunningCaddy drives `caddy jwtguard revoke|list|unrevoke`
// against a running Caddy's admin API and checks what they print, what
// the guarded site then does, and how they fail.
func TestCLIAgainstRunningCaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy; skipped with -short")
	}
	bin := e2etest.Build(t)
	site := newProcSite(t, 18082, 12020, filepath.Join(t.TempDir(), "store"))
	caddy := site.start(t, bin, "")
	addr := []string{"--address", site.adminAddr}

	// cli runs `caddy jwtguard <args> --address <admin>` and requires
	// success.
	cli := func(args ...string) string {
		t.Helper()
		res := caddy.TryCLI(t, append(append([]string{"jwtguard"}, args...), addr...)...)
		if res.ExitCode != 0 {
			t.Fatalf("caddy jwtguard %s: exit %d\nstderr: %s", strings.Join(args, " "), res.ExitCode, res.Stderr)
		}
		return res.Stdout
	}
	entryOf := func(what, out string) procEntry {
		t.Helper()
		var e procEntry
		dec := json.NewDecoder(strings.NewReader(out))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil || e.ID == "" {
			t.Fatalf("%s: stdout is not an entry as JSON (%v):\n%s", what, err, out)
		}
		return e
	}
	listIDs := func(args ...string) map[string]procEntry {
		t.Helper()
		out := cli(append([]string{"list", "--json"}, args...)...)
		var page map[string][]procEntry
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatalf("list --json %s: stdout is not JSON (%v):\n%s", strings.Join(args, " "), err, out)
		}
		revs, ok := page["revocations"]
		if !ok || len(page) != 1 {
			t.Fatalf(`list --json %s: want {"revocations":[...]}, got:%s`, strings.Join(args, " "), out)
		}
		ids := map[string]procEntry{}
		for _, e := range revs {
			ids[e.ID] = e
		}
		return ids
	}

	jtiToken := e2etest.Run(t, bin, "jwtguard", "sign", "--secret", procSecret, "--sub", "bob",
		"--iss", "https://idp", "--claim", "jti=j1")
	site.wantAccepted(t, "jti j1 token before revoke", jtiToken, "bob")

	// revoke --jti
	var jtiEntry procEntry
	t.Run("revoke jti", func(t *testing.T) {
		out := cli("revoke", "--jti", "j1", "--iss", "https://idp", "--reason", "test")
		jtiEntry = entryOf("revoke --jti", out)
		if jtiEntry.Kind != "jti" || jtiEntry.JTI != "j1" || jtiEntry.Issuer != "https://idp" || jtiEntry.Reason != "test" || jtiEntry.CreatedAt.IsZero() {
			t.Errorf("revoke --jti printed %+v, want kind jti, jti j1, iss https://idp, reason test and a creation time", jtiEntry)
		}
		site.wantRevoked(t, "jti j1 token after revoke", jtiToken)
	})
	if jtiEntry.ID == "" {
		t.FailNow()
	}

	t.Run("list table", func(t *testing.T) {
		out := cli("list")
		lines := strings.Split(out, "\n")
		if h := strings.Fields(lines[0]); strings.Join(h, " ") != "ID KIND MATCHES REASON EXPIRES" {
			t.Errorf("list: header %q, want ID KIND MATCHES REASON EXPIRES", lines[0])
		}
		var row string
		for _, l := range lines[1:] {
			if f := strings.Fields(l); len(f) > 0 && f[0] == jtiEntry.ID {
				row = l
			}
		}
		if row == "" {
			t.Fatalf("list: no row for %s:\n%s", jtiEntry.ID, out)
		}
		f := strings.Fields(row)
		if len(f) < 4 || f[1] != "jti" || !strings.Contains(row, "jti=j1") || !strings.Contains(row, "iss=https://idp") || !strings.Contains(row, " test ") {
			t.Errorf("list: row %q, want kind jti, jti=j1, iss=https://idp and reason test", row)
		}
	})

	t.Run("list json and kind", func(t *testing.T) {
		if e, ok := listIDs()[jtiEntry.ID]; !ok || e.Kind != "jti" || e.JTI != "j1" {
			t.Errorf("list --json: no jti entry %s (got %+v)", jtiEntry.ID, e)
		}
		if _, ok := listIDs("--kind", "jti")[jtiEntry.ID]; !ok {
			t.Errorf("list --json --kind jti: entry %s missing", jtiEntry.ID)
		}
		if got := listIDs("--kind", "key"); len(got) != 0 {
			t.Errorf("list --json --kind key: got %v, want none", got)
		}
		out := cli("list", "--kind", "key")
		if strings.Contains(out, jtiEntry.ID) {
			t.Errorf("list --kind key shows the jti entry:\n%s", out)
		}
	})

	t.Run("revoke token", func(t *testing.T) {
		tok := e2etest.Run(t, bin, "jwtguard", "sign", "--secret", procSecret, "--sub", "carol", "--ttl", "90m")
		site.wantAccepted(t, "carol's token before revoke", tok, "carol")
		e := entryOf("revoke --token", cli("revoke", "--token", tok))
		exp := procExp(t, tok)
		if e.Kind != "token" || e.ExpiresAt == nil || !e.ExpiresAt.Equal(exp) || !strings.HasPrefix(e.TokenID, "sha256:") {
			t.Errorf("revoke --token printed %+v, want kind token, a sha256: token_id and expires_at = the token's exp %s", e, exp.UTC().Format(time.RFC3339))
		}
		site.wantRevoked(t, "carol's token after revoke", tok)
		if strings.Contains(cli("list"), tok) {
			t.Errorf("list shows the raw token")
		}
	})

	t.Run("revoke sub", func(t *testing.T) {
		now := time.Now()
		old := procSign(t, jwt.MapClaims{"sub": "alice", "iat": now.Add(-10 * time.Second).Unix()})
		site.wantAccepted(t, "alice's token before log-out", old, "alice")
		e := entryOf("revoke --sub", cli("revoke", "--sub", "alice"))
		if e.Kind != "subject" || e.Subject != "alice" || e.Before == nil || e.Before.Before(now.Add(-2*time.Second)) || e.Before.After(time.Now()) {
			t.Errorf("revoke --sub alice printed %+v, want kind subject, sub alice, before = about now", e)
		}
		site.wantRevoked(t, "alice's token after log-out", old)
		// A token issued after the log-out (iat 2 s ahead, within the
		// site's 5 s leeway, rather than sleeping).
		fresh := procSign(t, jwt.MapClaims{"sub": "alice", "iat": time.Now().Add(2 * time.Second).Unix()})
		site.wantAccepted(t, "alice's token issued after log-out", fresh, "alice")
	})

	t.Run("unrevoke", func(t *testing.T) {
		e := entryOf("unrevoke", cli("unrevoke", jtiEntry.ID))
		if e.ID != jtiEntry.ID || e.Kind != "jti" || e.JTI != "j1" {
			t.Errorf("unrevoke printed %+v, want the removed entry %s", e, jtiEntry.ID)
		}
		site.wantAccepted(t, "jti j1 token after unrevoke", jtiToken, "bob")
		if _, ok := listIDs()[jtiEntry.ID]; ok {
			t.Errorf("list --json still shows %s after unrevoke", jtiEntry.ID)
		}
	})

	t.Run("errors", func(t *testing.T) {
		before := len(listIDs())
		free := freeAddr(t)
		for _, tc := range []struct {
			name string
			args []string // after "jwtguard"; --address is added unless it is there
			want []string // in stderr, case-insensitively
		}{
			{"revoke nothing", []string{"revoke"}, []string{"--jti", "--token", "--sub", "--kid"}},
			{"revoke two kinds", []string{"revoke", "--jti", "x", "--kid", "y"}, []string{"400", "jti", "kid", "cannot be combined"}},
			{"revoke bad expires", []string{"revoke", "--jti", "x", "--expires", "yesterday"}, []string{"expires", "yesterday", "rfc 3339"}},
			{"unrevoke unknown", []string{"unrevoke", "nonexistent-id"}, []string{"404", "nonexistent-id"}},
			{"list no server", []string{"list", "--address", free}, []string{free, "connection refused"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := append([]string{"jwtguard"}, tc.args...)
				if !strings.Contains(strings.Join(tc.args, " "), "--address") {
					args = append(args, addr...)
				}
				res := caddy.TryCLI(t, args...)
				if res.ExitCode == 0 {
					t.Fatalf("caddy %s: exit 0, want non-zero; stdout:\n%s", strings.Join(args, " "), res.Stdout)
				}
				for _, w := range tc.want {
					if !strings.Contains(strings.ToLower(res.Stderr), strings.ToLower(w)) {
						t.Errorf("caddy %s: exit %d; stderr does not mention %q:\n%s", strings.Join(args, " "), res.ExitCode, w, res.Stderr)
					}
				}
				if strings.Contains(res.Stdout, "{") {
					t.Errorf("caddy %s failed but printed JSON on stdout:\n%s", strings.Join(args, " "), res.Stdout)
				}
			})
		}
		if after := len(listIDs()); after != before {
			t.Errorf("the failed commands changed the list: %d entries, want %d", after, before)
		}
	})
	caddy.Stop(t)
}

// freeAddr returns a localhost address where nothing listens.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	return fmt.Sprintf("localhost:%d", addr.Port)
}

// TestValidateWhileRunning runs `caddy validate` on the config a running
// Caddy serves: it must not need the store the server holds (Badger locks
// its directory), and must leave the server's store alone.
func TestValidateWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy; skipped with -short")
	}
	bin := e2etest.Build(t)
	site := newProcSite(t, 18083, 12021, filepath.Join(t.TempDir(), "store"))
	caddy := site.start(t, bin, "")

	tok := procSign(t, jwt.MapClaims{"sub": "dave", "iat": time.Now().Unix()})
	site.wantAccepted(t, "dave's token before validate", tok, "dave")

	began := time.Now()
	res := caddy.TryCLI(t, "validate", "--config", site.cfg, "--adapter", "caddyfile")
	t.Logf("validate took %v", time.Since(began).Round(time.Millisecond))
	out := res.Stdout + "\n" + res.Stderr
	if res.ExitCode != 0 {
		t.Errorf("caddy validate: exit %d, want 0; output:\n%s", res.ExitCode, out)
	}
	for _, bad := range []string{"lock", "revocation store"} {
		if strings.Contains(strings.ToLower(out), bad) {
			t.Errorf("caddy validate output mentions %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(out, "Valid configuration") {
		t.Errorf("caddy validate did not say %q:\n%s", "Valid configuration", out)
	}

	// The server still has its store: a revocation is taken and enforced.
	if status, body := site.revoke(t, map[string]string{"sub": "dave", "before": time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339)}); status != http.StatusCreated {
		t.Fatalf("revocation after validate: %d %s, want 201", status, body)
	}
	site.wantRevoked(t, "dave's token after validate and revoke", tok)
	caddy.Stop(t)
}
