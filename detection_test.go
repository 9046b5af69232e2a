package jwtguard

// Stolen-token detection through a real Caddy. Clients come "from
// anywhere" without leaving 127.0.0.1: the server trusts 127.0.0.0/8 as
// proxies and the tests send X-Forwarded-For with documentation addresses,
// so Caddy's client IP is what the test chooses.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/jwtguard/caddy-jwtguard/detect/detecttest"
	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
)

// detectServers takes the client's address from X-Forwarded-For, which
// the tests set, when the connection comes from this machine.
const detectServers = `trusted_proxies static 127.0.0.0/8 ::1/128
			client_ip_headers X-Forwarded-For`

func detectConfig(storage, geoip string) string {
	route := func(path, rules string) string {
		return fmt.Sprintf(`
		handle /%s/* {
			jwtguard {
				secret %s
				detect {
					%s
				}
			}
			respond "ok"
		}`, path, testSecret, rules)
	}
	return testGlobals(storage, detectServers, "") + `
	http://localhost:9080 {` +
		route("rate", "rate 3 1m reject") +
		route("networks", "networks 1 10m revoke") +
		route("travel", "travel 1000 revoke_subject\n geoip "+geoip) +
		route("agent", "agent reject") +
		route("log", "networks 1 10m") +
		route("quiet", "rate 20 1m reject\n networks 1 10m reject\n agent reject\n trust 10.9.0.0/16") +
		route("quiet-travel", "travel 1000 reject\n geoip "+geoip) +
		"\n}"
}

// from sends one request with tok, as a client at ip with User-Agent ua.
func from(t *testing.T, path, tok, ip, ua string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://localhost:9080"+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Forwarded-For", ip)
	req.Header.Set("User-Agent", ua)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

func adminGet(t *testing.T, path string, into any) int {
	t.Helper()
	resp, err := e2etest.AdminClient.Get("http://localhost:2999" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

type eventsPage struct {
	Events []struct {
		Detector, Action, TokenID, Sub, ClientIP, UserAgent, Detail, Revocation string
	} `json:"events"`
	NextCursor string `json:"next_cursor"`
}

func (p *eventsPage) UnmarshalJSON(b []byte) error {
	var raw struct {
		Events []map[string]string `json:"events"`
		Next   string              `json:"next_cursor"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	p.NextCursor, p.Events = raw.Next, nil
	for _, e := range raw.Events {
		p.Events = append(p.Events, struct {
			Detector, Action, TokenID, Sub, ClientIP, UserAgent, Detail, Revocation string
		}{e["detector"], e["action"], e["token_id"], e["sub"], e["client_ip"], e["user_agent"], e["detail"], e["revocation"]})
	}
	return nil
}

func eventsFor(t *testing.T, tokenID string) eventsPage {
	t.Helper()
	var page eventsPage
	// Events that revoked nothing reach the disk within a second.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if code := adminGet(t, "/jwtguard/events?token_id="+urlQuery(tokenID), &page); code != 200 {
			t.Fatalf("events: %d", code)
		}
		if len(page.Events) > 0 || time.Now().After(deadline) {
			return page
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func urlQuery(s string) string { return url.QueryEscape(s) }

func token(t *testing.T, sub, jti string) (string, string) {
	return sign(t, jwt.MapClaims{"sub": sub, "iss": "https://idp", "jti": jti, "iat": time.Now().Unix() - 5}), "https://idp#" + jti
}

func TestDetectionThroughCaddy(t *testing.T) {
	storage := t.TempDir()
	geo := detecttest.DB(t)
	tester := caddytest.NewTester(t)
	t.Cleanup(func() { unloadConfig(t) })
	tester.InitServer(detectConfig(storage, geo), "caddyfile")

	t.Run("rate fires on the count+1-th request and rejects only over the rate", func(t *testing.T) {
		tok, id := token(t, "alice", "rate-1")
		for i := 1; i <= 3; i++ {
			if code, _ := from(t, "/rate/x", tok, "203.0.113.5", "curl/8"); code != 200 {
				t.Fatalf("request %d under the rate: %d", i, code)
			}
		}
		code, ch := from(t, "/rate/x", tok, "203.0.113.5", "curl/8")
		if code != 401 || !strings.Contains(ch, "suspicious") {
			t.Fatalf("4th request within a minute: %d %q, want 401 suspicious", code, ch)
		}
		if code, _ := from(t, "/rate/x", tok, "203.0.113.5", "curl/8"); code != 401 {
			t.Fatalf("5th request: %d, want still refused", code)
		}
		page := eventsFor(t, id)
		if len(page.Events) != 1 || page.Events[0].Detector != "rate" || page.Events[0].Action != "reject" || page.Events[0].Sub != "alice" || page.Events[0].ClientIP != "203.0.113.5" {
			t.Fatalf("events = %+v, want one rate/reject event", page.Events)
		}
		other, _ := token(t, "alice", "rate-2")
		if code, _ := from(t, "/rate/x", other, "203.0.113.5", "curl/8"); code != 200 {
			t.Fatalf("another token of the same user: %d", code)
		}
	})

	t.Run("networks revokes on the first request from one network too many", func(t *testing.T) {
		tok, id := token(t, "bob", "net-1")
		if code, _ := from(t, "/networks/x", tok, "203.0.113.5", "app/1"); code != 200 {
			t.Fatalf("first network: %d", code)
		}
		if code, _ := from(t, "/networks/x", tok, "203.0.113.77", "app/1"); code != 200 {
			t.Fatalf("same /24: %d", code)
		}
		code, ch := from(t, "/networks/x", tok, "198.51.100.7", "app/1")
		if code != 401 || !strings.Contains(ch, "revoked") {
			t.Fatalf("second network: %d %q, want 401 revoked", code, ch)
		}
		if code, ch := from(t, "/networks/x", tok, "203.0.113.5", "app/1"); code != 401 || !strings.Contains(ch, "revoked") {
			t.Fatalf("back from the first network: %d %q, want revoked for good", code, ch)
		}
		page := eventsFor(t, id)
		if len(page.Events) != 1 || page.Events[0].Revocation == "" {
			t.Fatalf("events = %+v, want one with its revocation", page.Events)
		}
		var entry map[string]any
		if code := adminGet(t, "/jwtguard/revocations/"+page.Events[0].Revocation, &entry); code != 200 {
			t.Fatalf("the event's revocation: %d", code)
		}
		if entry["kind"] != "token" || entry["token_id"] != id || !strings.HasPrefix(entry["reason"].(string), "detect networks: ") || entry["expires_at"] == nil {
			t.Fatalf("revocation = %v", entry)
		}
	})

	t.Run("travel from Paris to Tokyo in seconds logs the user out everywhere", func(t *testing.T) {
		tok, id := token(t, "carol", "travel-1")
		sibling, _ := token(t, "carol", "travel-2") // issued before, never used from Tokyo
		if code, _ := from(t, "/travel/x", tok, "203.0.113.5", "app/1"); code != 200 {
			t.Fatalf("from Paris: %d", code)
		}
		code, ch := from(t, "/travel/x", tok, "198.51.100.7", "app/1")
		if code != 401 || !strings.Contains(ch, "revoked") {
			t.Fatalf("from Tokyo seconds later: %d %q, want 401 revoked", code, ch)
		}
		if code, _ := from(t, "/travel/x", sibling, "203.0.113.5", "app/1"); code != 401 {
			t.Fatalf("the subject's other token: %d, want revoked", code)
		}
		page := eventsFor(t, id)
		if len(page.Events) != 1 || page.Events[0].Detector != "travel" || !strings.Contains(page.Events[0].Detail, "Paris, FR -> Tokyo, JP") {
			t.Fatalf("events = %+v", page.Events)
		}
		var entry map[string]any
		adminGet(t, "/jwtguard/revocations/"+page.Events[0].Revocation, &entry)
		if entry["kind"] != "subject" || entry["sub"] != "carol" || entry["iss"] != "https://idp" {
			t.Fatalf("revocation = %v, want a subject entry for carol", entry)
		}
	})

	t.Run("agent rejects the other User-Agent only", func(t *testing.T) {
		tok, id := token(t, "dave", "agent-1")
		if code, _ := from(t, "/agent/x", tok, "203.0.113.5", "Firefox/140"); code != 200 {
			t.Fatalf("first agent: %d", code)
		}
		if code, _ := from(t, "/agent/x", tok, "203.0.113.5", "python-requests/2"); code != 401 {
			t.Fatalf("other agent: %d, want 401", code)
		}
		if code, _ := from(t, "/agent/x", tok, "203.0.113.5", "Firefox/140"); code != 200 {
			t.Fatalf("first agent again: %d, want 200", code)
		}
		if code, _ := from(t, "/agent/x", tok, "203.0.113.5", "python-requests/2"); code != 401 {
			t.Fatalf("other agent again: %d, want 401", code)
		}
		page := eventsFor(t, id)
		if len(page.Events) != 1 || page.Events[0].UserAgent != "python-requests/2" {
			t.Fatalf("events = %+v, want one, with the new User-Agent", page.Events)
		}
	})

	t.Run("log records and lets the request through", func(t *testing.T) {
		tok, id := token(t, "erin", "log-1")
		from(t, "/log/x", tok, "203.0.113.5", "app/1")
		if code, _ := from(t, "/log/x", tok, "198.51.100.7", "app/1"); code != 200 {
			t.Fatalf("log action refused: %d", code)
		}
		if page := eventsFor(t, id); len(page.Events) != 1 || page.Events[0].Action != "log" {
			t.Fatalf("events = %+v", page.Events)
		}
	})

	// The false-positive table: each must stay quiet (200, no event).
	quiet := []struct {
		name, path string
		reqs       [][2]string // ip, user agent
	}{
		{"a steady user under the rate", "/quiet/x", repeat([2]string{"203.0.113.5", "app/1"}, 20)},
		{"two addresses in one /24", "/quiet/x", [][2]string{{"203.0.113.5", "app/1"}, {"203.0.113.200", "app/1"}}},
		{"IPv6 addresses within one /56", "/quiet/x", [][2]string{{"2001:db8:1:100::1", "app/1"}, {"2001:db8:1:1ff:ffff::9", "app/1"}}},
		{"a trusted range", "/quiet/x", [][2]string{{"203.0.113.5", "app/1"}, {"10.9.1.1", "app/1"}, {"10.9.200.1", "other/2"}, {"203.0.113.5", "app/1"}}},
		{"Paris to Versailles (inside the accuracy radii)", "/quiet-travel/x", [][2]string{{"203.0.113.5", "app/1"}, {"192.0.2.9", "app/1"}, {"203.0.113.6", "app/1"}}},
		{"an address the database does not know", "/quiet-travel/x", [][2]string{{"203.0.113.5", "app/1"}, {"2001:db8:ff::1", "app/1"}, {"10.1.2.3", "app/1"}}},
	}
	for i, c := range quiet {
		t.Run("quiet: "+c.name, func(t *testing.T) {
			tok, id := token(t, "frank", fmt.Sprintf("quiet-%d", i))
			for j, r := range c.reqs {
				if code, ch := from(t, c.path, tok, r[0], r[1]); code != 200 {
					t.Fatalf("request %d from %s: %d %q", j+1, r[0], code, ch)
				}
			}
			time.Sleep(1100 * time.Millisecond) // events reach the disk within a second
			var page eventsPage
			adminGet(t, "/jwtguard/events?token_id="+urlQuery(id), &page)
			if len(page.Events) != 0 {
				t.Fatalf("events = %+v, want none", page.Events)
			}
		})
	}

	t.Run("usage shows where and how the token was used", func(t *testing.T) {
		tok, id := token(t, "grace", "usage-1")
		from(t, "/travel/x", tok, "203.0.113.5", "curl/8.5.0")
		from(t, "/travel/x", tok, "203.0.113.5", "curl/8.5.0")
		from(t, "/travel/x", tok, "192.0.2.9", "Firefox/140")
		var usage struct {
			Tokens []struct {
				TokenID  string `json:"token_id"`
				Sub      string `json:"sub"`
				Requests int    `json:"requests"`
				Revoked  bool   `json:"revoked"`
				Clients  []struct {
					IP, Country, UserAgent string
					Requests               int
				} `json:"clients"`
			} `json:"tokens"`
		}
		if code := adminGet(t, "/jwtguard/usage?token_id="+urlQuery(id), &usage); code != 200 {
			t.Fatalf("usage: %d", code)
		}
		u := usage.Tokens[0]
		if u.TokenID != id || u.Sub != "grace" || u.Requests != 3 || u.Revoked || len(u.Clients) != 2 || u.Clients[0].IP != "203.0.113.5" || u.Clients[0].Requests != 2 {
			t.Fatalf("usage = %+v", u)
		}
		if code := adminGet(t, "/jwtguard/usage?sub=grace&iss=https://idp", &usage); code != 200 || len(usage.Tokens) != 1 {
			t.Fatalf("usage by subject: %d %+v", code, usage)
		}
		for q, want := range map[string]int{"": 400, "?iss=x": 400, "?token_id=nope": 404, "?token_id=a&sub=b": 400} {
			if code := adminGet(t, "/jwtguard/usage"+q, nil); code != want {
				t.Errorf("usage%s: %d, want %d", q, code, want)
			}
		}
		// The revoked token of the networks case says so.
		if code := adminGet(t, "/jwtguard/usage?token_id="+urlQuery("https://idp#net-1"), &usage); code != 200 || !usage.Tokens[0].Revoked {
			t.Fatalf("usage of a revoked token: %d %+v", code, usage)
		}
	})

	t.Run("CLI usage and events", func(t *testing.T) {
		run := func(cmd *cobra.Command, args ...string) string {
			var out bytes.Buffer
			cmd.SetArgs(append(args, "--address", "localhost:2999"))
			cmd.SetOut(&out)
			cmd.SetErr(io.Discard)
			if err := cmd.Execute(); err != nil {
				t.Fatalf("%s %v: %v", cmd.Name(), args, err)
			}
			return out.String()
		}
		out := run(usageCommand(), "--sub", "grace")
		for _, want := range []string{"token https://idp#usage-1  sub=grace  valid", "3 requests from", "203.0.113.5", "FR", "curl/8.5.0", "Firefox/140"} {
			if !strings.Contains(out, want) {
				t.Errorf("usage table lacks %q:\n%s", want, out)
			}
		}
		if out := run(usageCommand(), "--token-id", "https://idp#net-1"); !strings.Contains(out, "REVOKED") {
			t.Errorf("usage of a revoked token:\n%s", out)
		}
		out = run(eventsCommand(), "--detector", "travel")
		if !strings.Contains(out, "DETECTOR") || !strings.Contains(out, "revoke_subject") || !strings.Contains(out, "Paris, FR -> Tokyo, JP") || strings.Contains(out, "networks") {
			t.Errorf("events table:\n%s", out)
		}
		var js struct {
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal([]byte(run(eventsCommand(), "--sub", "bob", "--json")), &js); err != nil || len(js.Events) != 1 || js.Events[0]["detector"] != "networks" {
			t.Errorf("events --json: %v %+v", err, js)
		}
		cmd := usageCommand()
		cmd.SetArgs([]string{"--address", "localhost:2999"})
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--sub") {
			t.Errorf("usage without --sub or --token-id: %v", err)
		}
	})

	t.Run("events API", func(t *testing.T) {
		var page eventsPage
		if code := adminGet(t, "/jwtguard/events?detector=rate", &page); code != 200 || len(page.Events) != 1 {
			t.Fatalf("events by detector: %d %+v", code, page)
		}
		if code := adminGet(t, "/jwtguard/events?limit=1", &page); code != 200 || len(page.Events) != 1 || page.NextCursor == "" {
			t.Fatalf("first page: %d %+v", code, page)
		}
		for q, want := range map[string]int{"?detector=nope": 400, "?limit=0": 400, "?cursor=bogus": 400} {
			if code := adminGet(t, "/jwtguard/events"+q, nil); code != want {
				t.Errorf("events%s: %d, want %d", q, code, want)
			}
		}
	})
}

func repeat(r [2]string, n int) [][2]string {
	out := make([][2]string, n)
	for i := range out {
		out[i] = r
	}
	return out
}

// A webhook that answers 500 at first still gets every event, in order;
// an event not yet delivered when Caddy stops is delivered after it starts
// again; usage and events survive the restart.
func TestDetectionWebhookAndRestart(t *testing.T) {
	var (
		mu       sync.Mutex
		got      []string // token ids, in arrival order
		failures = 2      // answer 500 to this many posts first
		down     bool
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		if r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&ev) != nil {
			t.Errorf("webhook got a post that is not JSON")
		}
		mu.Lock()
		defer mu.Unlock()
		if down || failures > 0 {
			failures--
			w.WriteHeader(500)
			return
		}
		got = append(got, ev["token_id"].(string))
	}))
	defer hook.Close()
	delivered := func(n int) []string {
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			out := slices.Clone(got)
			mu.Unlock()
			if len(out) >= n || time.Now().After(deadline) {
				return out
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	storage := t.TempDir()
	config := testGlobals(storage, "trusted_proxies static 127.0.0.0/8", "") + fmt.Sprintf(`
	http://localhost:9080 {
		handle /log/* {
			jwtguard {
				secret %s
				detect {
					networks 1 10m
					webhook %s
				}
			}
			respond "ok"
		}
	}`, testSecret, hook.URL)
	tester := caddytest.NewTester(t)
	t.Cleanup(func() { unloadConfig(t) })
	tester.InitServer(config, "caddyfile")

	var want []string
	for i := 0; i < 3; i++ {
		tok, id := token(t, "henry", fmt.Sprintf("hook-%d", i))
		from(t, "/log/x", tok, "203.0.113.5", "app/1")
		from(t, "/log/x", tok, "198.51.100.7", "app/1")
		want = append(want, id)
	}
	if out := dedupe(delivered(3)); !slices.Equal(out, want) {
		t.Fatalf("webhook got %v, want %v in that order", out, want)
	}

	// One more event while the webhook is down, then a stop.
	mu.Lock()
	down = true
	mu.Unlock()
	tok, id := token(t, "henry", "hook-late")
	from(t, "/log/x", tok, "203.0.113.5", "app/1")
	from(t, "/log/x", tok, "198.51.100.7", "app/1")
	want = append(want, id)
	time.Sleep(1200 * time.Millisecond) // on disk within a second
	unloadConfig(t)
	mu.Lock()
	down = false
	mu.Unlock()

	tester.InitServer(config, "caddyfile")
	if out := dedupe(delivered(4)); !slices.Equal(out, want) {
		t.Fatalf("after a restart the webhook got %v, want %v", out, want)
	}
	var page eventsPage
	if adminGet(t, "/jwtguard/events?sub=henry", &page); len(page.Events) != 4 {
		t.Fatalf("events after restart: %+v", page.Events)
	}
	var usage struct {
		Tokens []struct {
			Requests int `json:"requests"`
		} `json:"tokens"`
	}
	if code := adminGet(t, "/jwtguard/usage?sub=henry", &usage); code != 200 || len(usage.Tokens) != 4 || usage.Tokens[0].Requests != 2 {
		t.Fatalf("usage after restart: %d %+v", code, usage)
	}
}

// dedupe drops repeats of the previous value: delivery is at least once,
// and an answer lost in a failure may bring one event twice in a row.
func dedupe(s []string) []string {
	return slices.Compact(slices.Clone(s))
}
