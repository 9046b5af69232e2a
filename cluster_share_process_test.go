package jwtguard_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/detect/detecttest"
	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
	"github.com/jwtguard/caddy-jwtguard/internal/redistest"
)

// Stolen-token detection shared by built Caddy processes on one real
// Redis: events listed by every node, sightings of networks and travel
// across nodes, and Redis away. Clients come from anywhere without
// leaving 127.0.0.1: the nodes trust 127.0.0.0/8 as proxies and the test
// sends X-Forwarded-For with documentation addresses, which the test
// geoip database places in Paris (203.0.113.0/24) and Tokyo
// (198.51.100.0/24).

const (
	paris = "203.0.113.7"
	tokyo = "198.51.100.7"
)

// hookRecorder is every node's detection webhook: /<node name>.
type hookRecorder struct {
	*httptest.Server
	mu    sync.Mutex
	posts map[string][]string // node -> event ids, in order
}

func newHookRecorder(t *testing.T) *hookRecorder {
	h := &hookRecorder{posts: map[string][]string{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			ID string `json:"id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&ev)
		h.mu.Lock()
		h.posts[strings.TrimPrefix(r.URL.Path, "/")] = append(h.posts[strings.TrimPrefix(r.URL.Path, "/")], ev.ID)
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookRecorder) posted(node string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.posts[node])
}

// shareNode is a cluster node (its start, wait and stop) whose site
// routes detect.
type shareNode struct {
	clusterNode
}

// newShareNode writes a node's config: /travel/ (travel 1000 revoke),
// /networks/ (networks 1 1h revoke) and /log/ (networks 1 1h, logged),
// each posting its events to the node's webhook.
func newShareNode(t *testing.T, name string, sitePort, adminPort int, redisURL, geoip, hooks string) *shareNode {
	t.Helper()
	route := func(path, rules string) string {
		return fmt.Sprintf(`
	handle /%s/* {
		jwtguard {
			secret %s
			detect {
				%s
				geoip %s
				webhook %s/%s
			}
		}
		respond "ok {http.auth.user.id}"
	}`, path, procSecret, rules, geoip, hooks, name)
	}
	s := procSiteAt(t, sitePort, adminPort, func(adminAddr string) string {
		return fmt.Sprintf(`{
	admin %s
	servers {
		trusted_proxies static 127.0.0.0/8
		client_ip_headers X-Forwarded-For
	}
	jwtguard {
		storage_dir %q
		cluster redis %s {
			prefix share
			sync_timeout 5s
			node %s
		}
	}
}

http://127.0.0.1:%d {%s%s%s
	handle_errors {
		respond "{http.error.status_code} {http.auth.jwt.error}"
	}
}
`, adminAddr, filepath.Join(t.TempDir(), "store"), redisURL, name, sitePort,
			route("travel", "travel 1000 revoke"), route("networks", "networks 1 1h revoke"), route("log", "networks 1 1h"))
	})
	return &shareNode{clusterNode{procSite: s, name: name}}
}

// use sends tok to path from ip; it returns the body ("ok <sub>", or
// "401 revoked") and how long the answer took.
func (n *shareNode) use(t *testing.T, path, tok, ip string) (string, time.Duration) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, n.siteURL+path+"/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Forwarded-For", ip)
	req.Header.Set("User-Agent", "share-test/1")
	start := time.Now()
	resp, err := e2etest.FreshClient.Do(req)
	if err != nil {
		t.Fatalf("node %s: GET %s: %v", n.name, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), time.Since(start)
}

type sharedEvent struct {
	ID         string `json:"id"`
	Detector   string `json:"detector"`
	Action     string `json:"action"`
	TokenID    string `json:"token_id"`
	ClientIP   string `json:"client_ip"`
	Detail     string `json:"detail"`
	Revocation string `json:"revocation"`
}

// events lists the node's events of a token.
func (n *shareNode) events(t *testing.T, tokenID string) []sharedEvent {
	t.Helper()
	resp, err := e2etest.FreshClient.Get(n.adminURL + "/jwtguard/events?token_id=" + url.QueryEscape(tokenID))
	if err != nil {
		t.Fatalf("node %s: events: %v", n.name, err)
	}
	defer resp.Body.Close()
	var page struct {
		Events []sharedEvent `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatalf("node %s: events: %v", n.name, err)
	}
	return page.Events
}

// waitEvents waits until the node lists want events of the token, and
// then a little more for any it should not have.
func (n *shareNode) waitEvents(t *testing.T, tokenID string, want int) []sharedEvent {
	t.Helper()
	if !e2etest.Eventually(10*time.Second, func() bool { return len(n.events(t, tokenID)) >= want }) {
		t.Fatalf("node %s lists %d events of %s, want %d", n.name, len(n.events(t, tokenID)), tokenID, want)
	}
	time.Sleep(300 * time.Millisecond)
	got := n.events(t, tokenID)
	if len(got) != want {
		t.Fatalf("node %s lists %d events of %s, want %d: %+v", n.name, len(got), tokenID, want, got)
	}
	return got
}

func (n *shareNode) eventually(t *testing.T, what, path, tok, ip, want string) {
	t.Helper()
	var got string
	if !e2etest.Eventually(10*time.Second, func() bool { got, _ = n.use(t, path, tok, ip); return got == want }) {
		t.Fatalf("%s: node %s answers %q, want %q", what, n.name, got, want)
	}
}

func TestClusterSharesDetection(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy and Redis; skipped with -short")
	}
	top := t
	bin := e2etest.Build(t)
	home := t.TempDir()
	geoip := detecttest.DB(t)
	hooks := newHookRecorder(t)
	rds := redistest.Start(t, false)
	a := newShareNode(t, "a", 18095, 12095, rds.URL(), geoip, hooks.URL)
	b := newShareNode(t, "b", 18096, 12096, rds.URL(), geoip, hooks.URL)
	a.up(t, bin, home)
	b.up(t, bin, home)
	n := 0
	user := func() (string, string) {
		n++
		jti := fmt.Sprintf("share-%d", n)
		return "https://idp#" + jti, procSign(t, jwt.MapClaims{"sub": fmt.Sprintf("user-%d", n), "iss": "https://idp", "jti": jti})
	}
	sent := func(what string, body string) {
		t.Helper()
		if !strings.HasPrefix(body, "ok ") {
			t.Fatalf("%s: %q", what, body)
		}
	}

	t.Run("an event recorded on A is listed by B, once, and posted by A's webhook only", func(t *testing.T) {
		var delays []time.Duration
		var ids []string
		for range 20 {
			id, tok := user()
			body, _ := a.use(t, "log", tok, paris)
			sent("Paris on A", body)
			body, _ = a.use(t, "log", tok, tokyo) // fires networks, logged
			sent("Tokyo on A", body)
			fired := time.Now()
			for len(b.events(t, id)) == 0 {
				if time.Since(fired) > 10*time.Second {
					t.Fatalf("B never listed A's event of %s", id)
				}
				time.Sleep(2 * time.Millisecond)
			}
			delays = append(delays, time.Since(fired))
			ids = append(ids, id)
		}
		sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
		t.Logf("from A's answer to B's listing, 20 events: p50 %v, max %v", delays[len(delays)/2], delays[len(delays)-1])
		time.Sleep(300 * time.Millisecond) // for any second copy
		for _, id := range ids {
			onA, onB := a.events(t, id), b.events(t, id)
			if len(onA) != 1 || len(onB) != 1 || onA[0] != onB[0] || onA[0].Detector != "networks" || onA[0].ClientIP != tokyo {
				t.Fatalf("A lists %+v, B %+v: want one networks event each, the same", onA, onB)
			}
		}
		if got := hooks.posted("b"); len(got) != 0 {
			t.Errorf("B's webhook posted %v: events A recorded", got)
		}
		if got := hooks.posted("a"); len(got) != len(ids) {
			t.Errorf("A's webhook posted %d events, want %d", len(got), len(ids))
		}
	})

	t.Run("Paris on A, Tokyo on B: travel fires on B; the token is refused on both", func(t *testing.T) {
		id, tok := user()
		body, _ := a.use(t, "travel", tok, paris)
		sent("Paris on A", body)
		time.Sleep(300 * time.Millisecond) // the sighting reaches B
		if got, _ := b.use(t, "travel", tok, tokyo); got != "401 revoked" {
			t.Fatalf("Tokyo on B: %q, want 401 revoked", got)
		}
		a.eventually(t, "revoked on B", "travel", tok, paris, "401 revoked")
		evs := a.waitEvents(t, id, 1)
		if e := evs[0]; e.Detector != "travel" || e.Action != "revoke" || e.Revocation == "" ||
			!strings.HasPrefix(e.Detail, "Paris, FR -> Tokyo, JP: 9712 km in") {
			t.Errorf("the event: %+v", e)
		}
		b.waitEvents(t, id, 1)
	})

	t.Run("networks likewise", func(t *testing.T) {
		id, tok := user()
		body, _ := a.use(t, "networks", tok, paris)
		sent("Paris on A", body)
		time.Sleep(300 * time.Millisecond)
		if got, _ := b.use(t, "networks", tok, tokyo); got != "401 revoked" {
			t.Fatalf("Tokyo on B: %q, want 401 revoked", got)
		}
		a.eventually(t, "revoked on B", "networks", tok, paris, "401 revoked")
		a.waitEvents(t, id, 1)
		b.waitEvents(t, id, 1)
		// Another handler's rules are another scope: a use on /log/
		// reaches /log/ only.
		id2, tok2 := user()
		body, _ = a.use(t, "log", tok2, paris)
		sent("Paris on A's /log/", body)
		time.Sleep(300 * time.Millisecond)
		body, _ = b.use(t, "networks", tok2, tokyo)
		sent("Tokyo on B's /networks/", body)
		time.Sleep(300 * time.Millisecond)
		if evs := b.events(t, id2); len(evs) != 0 {
			t.Fatalf("the /log/ sighting reached /networks/: %+v", evs)
		}
	})

	t.Run("a node that did not know the first use: the nodes that did fire, one event", func(t *testing.T) {
		travelID, travelTok := user()
		netID, netTok := user()
		for _, u := range []struct{ path, tok string }{{"travel", travelTok}, {"networks", netTok}} {
			body, _ := a.use(t, u.path, u.tok, paris)
			sent("Paris on A", body)
		}
		time.Sleep(300 * time.Millisecond)
		// C joins after those sightings: it only sees its own use.
		c := newShareNode(t, "c", 18097, 12097, rds.URL(), geoip, hooks.URL)
		c.up(top, bin, home)
		defer c.stop(t)
		for _, u := range []struct{ path, tok string }{{"travel", travelTok}, {"networks", netTok}} {
			body, _ := c.use(t, u.path, u.tok, tokyo)
			sent("Tokyo on C, its first use there", body)
		}
		c.eventually(t, "revoked by A and B on C's sighting", "travel", travelTok, tokyo, "401 revoked")
		c.eventually(t, "revoked by A and B on C's sighting", "networks", netTok, tokyo, "401 revoked")
		for _, id := range []string{travelID, netID} {
			for _, node := range []*shareNode{a, b, c} {
				evs := node.waitEvents(t, id, 1)
				if !strings.HasSuffix(evs[0].Detail, "(sighted on node c)") || evs[0].Action != "revoke" {
					t.Errorf("node %s's event: %+v", node.name, evs[0])
				}
			}
		}
		if got := hooks.posted("c"); len(got) != 0 {
			t.Errorf("C's webhook posted %v: events A and B recorded", got)
		}
	})

	t.Run("Redis away: requests are not slowed; events reach B when it is back", func(t *testing.T) {
		id, tok := user()
		check := func(what string, took time.Duration) {
			t.Helper()
			if took > 300*time.Millisecond {
				t.Errorf("%s took %v", what, took)
			}
		}
		rds.Pause()
		for i, ip := range []string{paris, "192.0.2.7", tokyo} {
			body, took := a.use(t, "log", tok, ip)
			sent("with Redis paused", body)
			check(fmt.Sprintf("request %d from a new network with Redis paused", i), took)
		}
		rds.Resume()
		b.waitEvents(t, id, 1) // sent once Redis answered again
		rds.Kill()
		id2, tok2 := user()
		for i, ip := range []string{paris, tokyo} {
			body, took := a.use(t, "travel", tok2, ip)
			check(fmt.Sprintf("request %d with Redis down", i), took)
			if i == 1 && body != "401 revoked" {
				t.Fatalf("Tokyo on A, Redis down: %q", body)
			}
		}
		rds.Start() // empty: no AOF
		b.waitEvents(t, id2, 1)
		b.eventually(t, "revoked on A while Redis was down", "travel", tok2, paris, "401 revoked")
		for _, node := range []*shareNode{a, b} {
			if got, _ := node.use(t, "log", tok, paris); !strings.HasPrefix(got, "ok ") && got != "401 suspicious" {
				t.Errorf("node %s after Redis returned: %q", node.name, got)
			}
		}
	})

	a.stop(t)
	b.stop(t)
	for _, node := range []*shareNode{a, b} {
		for _, l := range node.proc.Lines() {
			if strings.Contains(l, "panic") {
				t.Errorf("node %s logged a panic: %s", node.name, l)
			}
			if strings.Contains(l, "eyJ") {
				t.Errorf("node %s logged something like a token: %s", node.name, l)
			}
		}
	}
}
