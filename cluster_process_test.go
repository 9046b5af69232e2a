package jwtguard_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
	"github.com/jwtguard/caddy-jwtguard/internal/redistest"
)

// Several built Caddy processes on one real Redis: the fault table of the
// cluster issue. Each node has its own store, site and admin ports.

type clusterNode struct {
	procSite
	name string
	proc *e2etest.Process
}

func newClusterNode(t *testing.T, name string, sitePort, adminPort int, redisURL, prefix string) *clusterNode {
	t.Helper()
	s := procSiteAt(t, sitePort, adminPort, func(adminAddr string) string {
		return fmt.Sprintf(`{
	admin %s
	jwtguard {
		storage_dir %q
		cluster redis %s {
			prefix %s
			sync_timeout 5s
			node %s
		}
	}
}

http://127.0.0.1:%d {
	jwtguard {
		secret %s
	}
	respond "ok {http.auth.user.id}"
	handle_errors {
		respond "{http.error.status_code} {http.auth.jwt.error}"
	}
}
`, adminAddr, filepath.Join(t.TempDir(), "store"), redisURL, prefix, name, sitePort, procSecret)
	})
	return &clusterNode{procSite: s, name: name}
}

// up starts the node for the rest of top, the whole test: a process
// started with a subtest's t would be stopped when that subtest ends.
func (n *clusterNode) up(top *testing.T, bin, home string) {
	top.Helper()
	n.proc = n.start(top, bin, home)
	n.waitAdmin(top)
}

func (n *clusterNode) waitAdmin(top *testing.T) {
	top.Helper()
	// The site answers as soon as the http app runs; the jwtguard app
	// (and with it the admin routes) once it has caught up, which Caddy
	// may start after.
	var err error
	if !e2etest.Eventually(15*time.Second, func() bool {
		var resp *http.Response
		if resp, err = e2etest.FreshClient.Get(n.adminURL + "/jwtguard/cluster"); err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		top.Fatalf("node %s: the jwtguard admin routes did not come up: %v", n.name, err)
	}
}

func (n *clusterNode) stop(t *testing.T) { n.proc.Stop(t) }
func (n *clusterNode) kill(t *testing.T) { n.proc.Kill(t) }

// answer is the node's answer to the token: "ok <sub>" or "401 revoked".
func (n *clusterNode) answer(t *testing.T, token string) string {
	t.Helper()
	_, _, body := n.get(t, token)
	return body
}

// eventually waits up to 10 s for the node to answer want.
func (n *clusterNode) eventually(t *testing.T, what, token, want string) {
	t.Helper()
	var got string
	if !e2etest.Eventually(10*time.Second, func() bool { got = n.answer(t, token); return got == want }) {
		t.Fatalf("%s: node %s answers %q, want %q", what, n.name, got, want)
	}
}

func (n *clusterNode) mustRevoke(t *testing.T, entry map[string]string) string {
	t.Helper()
	status, body := n.revoke(t, entry)
	if status != http.StatusCreated {
		t.Fatalf("revoking %v on %s: %d %s", entry, n.name, status, body)
	}
	i := strings.Index(body, `"id":"`)
	return body[i+6 : i+6+strings.IndexByte(body[i+6:], '"')]
}

func (n *clusterNode) unrevoke(t *testing.T, id string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, n.adminURL+"/jwtguard/revocations/"+id, nil)
	resp, err := e2etest.FreshClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s on %s: %d", id, n.name, resp.StatusCode)
	}
}

func TestClusterOfProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Caddy and Redis; skipped with -short")
	}
	top := t
	bin := e2etest.Build(t)
	home := t.TempDir()
	rds := redistest.Start(t, true) // AOF: a restart keeps the log
	a := newClusterNode(t, "a", 18091, 12091, rds.URL(), "jwtguard")
	b := newClusterNode(t, "b", 18092, 12092, rds.URL(), "jwtguard")
	a.up(t, bin, home)
	b.up(t, bin, home)
	n := 0
	user := func() (string, string) {
		n++
		sub := fmt.Sprintf("user-%d", n)
		return sub, procSign(t, jwt.MapClaims{"sub": sub, "iss": "https://idp", "jti": fmt.Sprintf("jti-%d", n), "iat": time.Now().Unix() - 5})
	}

	t.Run("every kind made on A is refused by B; a delete on B is accepted again by A", func(t *testing.T) {
		sub1, t1 := user()
		_, t2 := user()
		sub3, t3 := user()
		kidTok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "k", "exp": time.Now().Add(time.Hour).Unix()})
		kidTok.Header["kid"] = "leaked-key"
		t4, _ := kidTok.SignedString([]byte(procSecret))
		b.eventually(t, "before", t1, "ok "+sub1)
		ids := []string{
			a.mustRevoke(t, map[string]string{"jti": "jti-1", "iss": "https://idp"}),
			a.mustRevoke(t, map[string]string{"token": t2}),
			a.mustRevoke(t, map[string]string{"sub": sub3, "iss": "https://idp"}),
			a.mustRevoke(t, map[string]string{"kid": "leaked-key"}),
		}
		for i, tok := range []string{t1, t2, t3, t4} {
			b.eventually(t, fmt.Sprintf("kind %d revoked on A", i), tok, "401 revoked")
		}
		if got := len(b.list(t)); got != 4 {
			t.Errorf("B lists %d entries, want 4", got)
		}
		for _, e := range b.list(t) {
			if !strings.Contains(strings.Join(ids, " "), e.ID) {
				t.Errorf("B's entry %s has an id A did not give", e.ID)
			}
		}
		b.unrevoke(t, ids[0])
		a.eventually(t, "deleted on B", t1, "ok "+sub1)
	})

	t.Run("a node that was down refuses on its first request", func(t *testing.T) {
		for _, crash := range []bool{false, true} {
			if crash {
				b.kill(t)
			} else {
				b.stop(t)
			}
			_, tok := user()
			a.mustRevoke(t, map[string]string{"token": tok})
			// The first request goes in the moment the site answers, before
			// the jwtguard app may have started: it waits for the catch-up.
			b.proc = b.start(top, bin, home)
			if got := b.answer(t, tok); got != "401 revoked" {
				t.Fatalf("B (crashed: %v) answers %q on its first request, want 401 revoked", crash, got)
			}
			b.waitAdmin(top)
		}
	})

	t.Run("Redis down: nodes answer, writes are queued and arrive when it returns", func(t *testing.T) {
		sub, tok := user()
		rds.Kill()
		b.eventually(t, "with Redis down", tok, "ok "+sub)
		start := time.Now()
		a.mustRevoke(t, map[string]string{"token": tok})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("a revocation with Redis down took %v", d)
		}
		if got := a.answer(t, tok); got != "401 revoked" {
			t.Fatalf("A with Redis down: %q", got)
		}
		// A is killed with the write still queued, and comes back.
		_, tok2 := user()
		a.mustRevoke(t, map[string]string{"token": tok2})
		a.kill(t)
		a.up(top, bin, home)
		rds.Start()
		b.eventually(t, "queued on A while Redis was down", tok, "401 revoked")
		b.eventually(t, "queued on A, A killed, Redis back", tok2, "401 revoked")
	})

	t.Run("Redis paused: no request waits, replication resumes", func(t *testing.T) {
		sub, tok := user()
		rds.Pause()
		start := time.Now()
		for range 5 {
			if got := b.answer(t, tok); got != "ok "+sub {
				t.Fatalf("B with Redis paused: %q", got)
			}
		}
		a.mustRevoke(t, map[string]string{"token": tok})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("requests and a revocation with Redis paused took %v", d)
		}
		rds.Resume()
		b.eventually(t, "revoked while Redis was paused", tok, "401 revoked")
	})

	t.Run("Redis restarted empty: entries are published again; a fresh node gets them all", func(t *testing.T) {
		_, tok := user()
		a.mustRevoke(t, map[string]string{"token": tok})
		b.eventually(t, "before the wipe", tok, "401 revoked")
		want := len(a.list(t))
		rds.Wipe()
		c := newClusterNode(t, "c", 18093, 12093, rds.URL(), "jwtguard")
		deadline := time.Now().Add(15 * time.Second)
		for {
			// A and B notice the new epoch and publish what they hold.
			time.Sleep(500 * time.Millisecond)
			c.up(t, bin, home)
			got := len(c.list(t))
			if got >= want || time.Now().After(deadline) {
				if got < want {
					t.Fatalf("fresh node C holds %d entries, want %d", got, want)
				}
				if ans := c.answer(t, tok); ans != "401 revoked" {
					t.Fatalf("fresh node C: %q", ans)
				}
				c.stop(t)
				break
			}
			c.stop(t)
		}
	})

	t.Run("another prefix on the same Redis is another cluster", func(t *testing.T) {
		d := newClusterNode(t, "d", 18094, 12094, rds.URL(), "other")
		d.up(t, bin, home)
		defer d.stop(t)
		if got := len(d.list(t)); got != 0 {
			t.Fatalf("a node of prefix other holds %d of prefix jwtguard's entries", got)
		}
		sub, tok := user()
		d.mustRevoke(t, map[string]string{"token": tok})
		time.Sleep(time.Second)
		if got := a.answer(t, tok); got != "ok "+sub {
			t.Fatalf("A applied an entry of another prefix: %q", got)
		}
	})

	t.Run("status and CLI", func(t *testing.T) {
		out := e2etest.Run(t, bin, "jwtguard", "cluster", "--address", a.adminAddr)
		for _, want := range []string{`"engine": "redis"`, `"node": "a"`, `"connected": true`, `"pending": 0`} {
			if !strings.Contains(out, want) {
				t.Errorf("caddy jwtguard cluster lacks %s:\n%s", want, out)
			}
		}
	})
	a.stop(t)
	b.stop(t)
}
