package cluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// node is one jwtguard node in a test: a store in its own directory and
// the engine replicating it.
type node struct {
	t     *testing.T
	name  string
	dir   string
	srv   *redisServer
	opts  Options
	wait  time.Duration // Sync's timeout in open; default 5s
	store *revocation.Store
	eng   *Redis
}

// testOptions are fast for tests: short reads and backoffs.
func testOptions(srv *redisServer, name string) Options {
	var urls []string
	if srv != nil {
		urls = []string{srv.URL()}
	}
	return Options{
		URLs:          urls,
		Node:          name,
		Timeout:       time.Second,
		Block:         200 * time.Millisecond,
		MinBackoff:    20 * time.Millisecond,
		MaxBackoff:    200 * time.Millisecond,
		CheckInterval: 200 * time.Millisecond,
	}
}

func newNode(t *testing.T, srv *redisServer, name string, tweak func(*Options)) *node {
	t.Helper()
	n := &node{t: t, name: name, dir: t.TempDir(), srv: srv, opts: testOptions(srv, name)}
	if tweak != nil {
		tweak(&n.opts)
	}
	if err := n.open(nil); err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	t.Cleanup(n.close)
	return n
}

// open opens the store with a new engine as its journal, starts the
// engine and waits for it to catch up (up to 5s). before runs between
// NewRedis and Start.
func (n *node) open(before func(*Redis)) error {
	n.t.Helper()
	o := n.opts
	o.Logger = zaptest.NewLogger(n.t, zaptest.Level(zap.InfoLevel)).Named(n.name)
	eng, err := NewRedis(o)
	if err != nil {
		n.t.Fatal(err)
	}
	st, err := revocation.Open(n.dir, revocation.Options{Journal: eng, Logger: zap.NewNop()})
	if err != nil {
		n.t.Fatal(err)
	}
	if before != nil {
		before(eng)
	}
	if err := eng.Start(st); err != nil {
		n.t.Fatal(err)
	}
	n.store, n.eng = st, eng
	wait := n.wait
	if wait == 0 {
		wait = 5 * time.Second
	}
	return eng.Sync(context.Background(), wait)
}

// close stops the engine, then the store (the order the app must use).
func (n *node) close() {
	if n.eng == nil {
		return
	}
	if err := n.eng.Close(); err != nil {
		n.t.Errorf("node %s: closing engine: %v", n.name, err)
	}
	if err := n.store.Close(); err != nil {
		n.t.Errorf("node %s: closing store: %v", n.name, err)
	}
	n.eng, n.store = nil, nil
}

func (n *node) add(e revocation.Entry) revocation.Entry {
	n.t.Helper()
	got, _, err := n.store.Add(e)
	if err != nil {
		n.t.Fatalf("node %s: add: %v", n.name, err)
	}
	return got
}

func (n *node) del(id string) {
	n.t.Helper()
	if _, ok, err := n.store.Delete(id); err != nil || !ok {
		n.t.Fatalf("node %s: delete %s: ok=%v err=%v", n.name, id, ok, err)
	}
}

func (n *node) has(id string) bool {
	n.t.Helper()
	_, ok, err := n.store.Get(id)
	if err != nil {
		n.t.Fatalf("node %s: get: %v", n.name, err)
	}
	return ok
}

// ids lists the ids of the live entries, sorted.
func (n *node) ids() []string {
	n.t.Helper()
	var out []string
	cursor := ""
	for {
		es, next, err := n.store.List("", cursor, 1000)
		if err != nil {
			n.t.Fatal(err)
		}
		for _, e := range es {
			out = append(out, e.ID)
		}
		if next == "" {
			sort.Strings(out)
			return out
		}
		cursor = next
	}
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSame waits until every node holds exactly the ids want holds.
func waitSame(t *testing.T, d time.Duration, want *node, nodes ...*node) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		w, diff := fmt.Sprint(want.ids()), ""
		for _, n := range nodes {
			if got := fmt.Sprint(n.ids()); got != w {
				diff = fmt.Sprintf("%s holds %s, %s holds %s", want.name, w, n.name, got)
				break
			}
		}
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the nodes still differ: %s", d, diff)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hours(h int) *time.Time {
	x := time.Now().Add(time.Duration(h) * time.Hour).Truncate(time.Second)
	return &x
}

func isNotSynced(err error) bool { return errors.Is(err, ErrNotSynced) }
