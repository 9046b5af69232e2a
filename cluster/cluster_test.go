package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jwtguard/caddy-jwtguard/internal/redistest"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// everyKind is one entry of each kind, and a token each one refuses.
func everyKind() ([]revocation.Entry, []revocation.Token) {
	before := time.Now().Add(time.Minute)
	return []revocation.Entry{
			{JTI: "j-1", Issuer: "https://idp", Reason: "stolen", ExpiresAt: hours(1)},
			{TokenID: "sha256:abc", ExpiresAt: hours(2)},
			{Subject: "alice", Issuer: "https://idp", Before: &before},
			{KeyID: "old-key"},
			{SID: "sess-1", Issuer: "https://idp", Reason: "back-channel logout"},
		}, []revocation.Token{
			{ID: "https://idp#j-1", Issuer: "https://idp", JTI: "j-1"},
			{ID: "sha256:abc"},
			{ID: "sha256:other", Issuer: "https://idp", Subject: "alice", IssuedAt: time.Now().Unix() - 10, HasIssuedAt: true},
			{ID: "sha256:third", KeyID: "old-key"},
			{ID: "sha256:fourth", Issuer: "https://idp", SID: "sess-1"},
		}
}

func revoked(t *testing.T, n *node, tok revocation.Token) bool {
	t.Helper()
	ok, err := n.store.Revoked(&tok)
	if err != nil {
		t.Fatalf("node %s: %v", n.name, err)
	}
	return ok
}

// A revocation of every kind made on A is refused on B under the same id;
// a delete on B reaches A.
func TestReplicatesEveryKind(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)

	entries, tokens := everyKind()
	for i, e := range entries {
		if revoked(t, b, tokens[i]) {
			t.Fatalf("%s: refused on B before being revoked", e.Kind)
		}
		got := a.add(e)
		waitFor(t, 5*time.Second, fmt.Sprintf("B to refuse the %s token", got.Kind), func() bool { return revoked(t, b, tokens[i]) })
		on, ok, err := b.store.Get(got.ID)
		if err != nil || !ok {
			t.Fatalf("%s: B has no entry %s (err %v)", got.Kind, got.ID, err)
		}
		if on.Kind != got.Kind || on.Reason != got.Reason || !sameTime(on.ExpiresAt, got.ExpiresAt) {
			t.Errorf("%s: B has %+v, A made %+v", got.Kind, on, got)
		}
	}

	// A delete on B is accepted again by A.
	first := entries[0]
	id := a.ids()
	b.del(mustID(t, a, first))
	waitFor(t, 5*time.Second, "A to accept the jti token again", func() bool { return !revoked(t, a, tokens[0]) })
	if got := len(a.ids()); got != len(id)-1 {
		t.Errorf("A holds %d entries, want %d", got, len(id)-1)
	}

	// B reads its own delete back from the log too; until it has, it is
	// (a few ms) behind.
	waitFor(t, 5*time.Second, "nothing pending, B caught up", func() bool {
		return a.eng.Pending() == 0 && b.eng.Pending() == 0 && b.eng.Status().LagMS == 0
	})
	st := b.eng.Status()
	if st.Engine != "redis" || st.Node != "b" || !st.Connected || st.Applied == "" || st.Pending != 0 || st.LagMS != 0 {
		t.Errorf("B's status: %+v", st)
	}
	if got := b.eng.AppliedTotal(); got != uint64(len(entries)) {
		t.Errorf("B applied %d changes, want %d (A's five)", got, len(entries))
	}
	if got := a.eng.AppliedTotal(); got != 1 {
		t.Errorf("A applied %d changes, want 1 (B's delete)", got)
	}
	js, _ := json.Marshal(st)
	var m map[string]any
	_ = json.Unmarshal(js, &m)
	for _, k := range []string{"engine", "node", "connected", "pending", "applied", "lag_ms"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status JSON %s lacks %q", js, k)
		}
	}
}

func mustID(t *testing.T, n *node, e revocation.Entry) string {
	t.Helper()
	got, created, err := n.store.Add(e)
	if err != nil || created {
		t.Fatalf("looking up the id of %+v: created=%v err=%v", e, created, err)
	}
	return got.ID
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// A node that was down while entries were made and deleted has them all,
// and lacks the deleted ones, as soon as Sync returns.
func TestCatchesUpOnStart(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)
	gone := a.add(revocation.Entry{JTI: "deleted-while-b-down"})
	waitFor(t, 5*time.Second, "B to have the first entry", func() bool { return b.has(gone.ID) })

	b.close()
	a.del(gone.ID)
	var made []string
	for i := range 20 {
		made = append(made, a.add(revocation.Entry{JTI: fmt.Sprintf("while-down-%d", i)}).ID)
	}
	waitFor(t, 5*time.Second, "A to publish", func() bool { return a.eng.Pending() == 0 })

	if err := b.open(nil); err != nil {
		t.Fatalf("B did not catch up: %v", err)
	}
	for _, id := range made {
		if !b.has(id) {
			t.Fatalf("B lacks %s right after Sync", id)
		}
	}
	if b.has(gone.ID) {
		t.Fatal("B still has the entry A deleted while B was down")
	}
}

// Redis down: writes succeed locally and wait in the outbox; when Redis
// comes back with its data, they reach B in the order they were made.
func TestRedisDownQueuesInOrder(t *testing.T) {
	srv := startRedis(t, true)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)
	before := a.add(revocation.Entry{JTI: "before"})
	waitFor(t, 5*time.Second, "B to have the first entry", func() bool { return b.has(before.ID) })

	srv.Kill()
	// One entry put, deleted and put again; another put and deleted: only
	// the order gets B to the same end.
	x := revocation.Entry{JTI: "x", ExpiresAt: hours(1)}
	y := revocation.Entry{JTI: "y"}
	var slowest time.Duration
	timed := func(f func()) {
		start := time.Now()
		f()
		slowest = max(slowest, time.Since(start))
	}
	var xid, yid string
	later := hours(2)
	timed(func() { xid = a.add(x).ID })
	timed(func() { a.del(xid) })
	timed(func() { a.add(revocation.Entry{JTI: "x", ExpiresAt: later}) })
	timed(func() { yid = a.add(y).ID })
	timed(func() { a.del(yid) })
	timed(func() { a.del(before.ID) })
	if slowest > 500*time.Millisecond {
		t.Errorf("a write with Redis down took %s", slowest)
	}
	if p := a.eng.Pending(); p != 6 {
		t.Errorf("pending = %d, want 6", p)
	}
	waitFor(t, 5*time.Second, "A to notice Redis is down", func() bool { return !a.eng.Connected() })

	srv.Restart()
	waitFor(t, 10*time.Second, "the queued writes to reach B", func() bool {
		return b.has(xid) && !b.has(yid) && !b.has(before.ID)
	})
	e, _, _ := b.store.Get(xid)
	if !sameTime(e.ExpiresAt, later) {
		t.Errorf("B's x expires %v, want the second put's %v", e.ExpiresAt, later)
	}
	waitFor(t, 5*time.Second, "A's outbox to empty", func() bool { return a.eng.Pending() == 0 && a.eng.Connected() })

	// The log has A's changes to x in the order they were made.
	msgs, err := srv.Client().XRange(context.Background(), "{jwtguard}:log", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, m := range msgs {
		var c revocation.Change
		_ = json.Unmarshal([]byte(m.Values["c"].(string)), &c)
		if c.Entry.ID == xid {
			ops = append(ops, map[bool]string{false: "put", true: "del"}[c.Delete])
		}
	}
	if fmt.Sprint(ops) != "[put del put]" {
		t.Errorf("the log has x's changes as %v", ops)
	}
}

// Writes queued while Redis is down survive the node's restart.
func TestOutboxSurvivesRestart(t *testing.T) {
	srv := startRedis(t, true)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)

	srv.Kill()
	var ids []string
	for i := range 3 {
		ids = append(ids, a.add(revocation.Entry{JTI: fmt.Sprintf("queued-%d", i)}).ID)
	}
	a.close()
	a.wait = 300 * time.Millisecond
	err := a.open(nil)
	if !isNotSynced(err) {
		t.Fatalf("opening A with Redis down: Sync returned %v, want ErrNotSynced", err)
	}
	if p := a.eng.Pending(); p != 3 {
		t.Fatalf("pending after restart = %d, want 3", p)
	}
	for _, id := range ids {
		if !a.has(id) {
			t.Fatalf("A lost %s", id)
		}
	}
	srv.Restart()
	waitFor(t, 10*time.Second, "the queued writes to reach B", func() bool {
		for _, id := range ids {
			if !b.has(id) {
				return false
			}
		}
		return true
	})
}

// Redis paused (SIGSTOP): writes never wait on it; replication resumes
// after SIGCONT.
func TestRedisPaused(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)

	srv.Pause()
	var ids []string
	var slowest time.Duration
	for i := range 10 {
		start := time.Now()
		ids = append(ids, a.add(revocation.Entry{JTI: fmt.Sprintf("paused-%d", i)}).ID)
		slowest = max(slowest, time.Since(start))
		time.Sleep(50 * time.Millisecond) // spread over the publisher's blocked call
	}
	start := time.Now()
	_ = a.eng.Status()
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("Status took %s with Redis paused", d)
	}
	t.Logf("slowest Add with Redis paused: %s", slowest)
	if slowest > 500*time.Millisecond {
		t.Errorf("an Add with Redis paused took %s", slowest)
	}
	waitFor(t, 5*time.Second, "A to see Redis not answering", func() bool { return !a.eng.Connected() })
	if b.has(ids[0]) {
		t.Fatal("B got a change through a paused Redis")
	}
	srv.Resume()
	waitFor(t, 10*time.Second, "the writes to reach B after SIGCONT", func() bool {
		for _, id := range ids {
			if !b.has(id) {
				return false
			}
		}
		return true
	})
	waitFor(t, 5*time.Second, "A connected again with nothing pending", func() bool { return a.eng.Connected() && a.eng.Pending() == 0 })
}

// Redis restarted empty: the nodes publish their entries again, queued
// writes go after them, and a new node gets everything.
func TestRedisRestartedEmpty(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)
	var ids []string
	for i := range 5 {
		ids = append(ids, a.add(revocation.Entry{JTI: fmt.Sprintf("a-%d", i)}).ID)
	}
	ids = append(ids, b.add(revocation.Entry{Subject: "bob"}).ID)
	waitSame(t, 5*time.Second, a, b)
	oldEpoch := a.eng.Status().Applied

	srv.Kill()
	queued := a.add(revocation.Entry{KeyID: "queued"}).ID
	a.del(ids[0]) // B still holds it, and must not bring it back
	srv.Restart() // empty

	waitFor(t, 10*time.Second, "B to get the queued write", func() bool { return b.has(queued) && !b.has(ids[0]) })
	waitSame(t, 5*time.Second, a, b)
	if a.eng.Status().Applied == oldEpoch {
		t.Error("A's position did not move to the new log")
	}
	live, err := srv.Client().HLen(context.Background(), "{jwtguard}:live").Result()
	if err != nil || live != 6 {
		t.Errorf("Redis's live set has %d entries (err %v), want 6", live, err)
	}

	c := newNode(t, srv, "c", nil)
	waitSame(t, 5*time.Second, a, c)
	if c.has(ids[0]) || !c.has(queued) || !c.has(ids[5]) {
		t.Errorf("the new node holds %v", c.ids())
	}
}

// A node further behind than the log keeps loads the snapshot: it gets
// every live entry, drops those deleted meanwhile, and keeps its own change
// still in its outbox.
func TestSnapshotWhenTrimmed(t *testing.T) {
	srv := startRedis(t, false)
	small := func(o *Options) { o.MaxLen = 10 }
	a := newNode(t, srv, "a", small)
	b := newNode(t, srv, "b", small)
	var old []string
	for i := range 5 {
		old = append(old, a.add(revocation.Entry{JTI: fmt.Sprintf("old-%d", i)}).ID)
	}
	waitSame(t, 5*time.Second, a, b)

	b.eng.holdPublish.Store(true)
	mine := b.add(revocation.Entry{JTI: "b-pending"}).ID
	b.close()

	a.del(old[0])
	a.del(old[1])
	var made []string
	for i := range 30 {
		made = append(made, a.add(revocation.Entry{JTI: fmt.Sprintf("new-%d", i)}).ID)
	}
	waitFor(t, 5*time.Second, "A to publish", func() bool { return a.eng.Pending() == 0 })
	if n, _ := srv.Client().XLen(context.Background(), "{jwtguard}:log").Result(); n > 10 {
		t.Fatalf("the log keeps %d entries, want at most 10", n)
	}

	if err := b.open(func(e *Redis) { e.holdPublish.Store(true) }); err != nil {
		t.Fatalf("B did not catch up: %v", err)
	}
	if b.eng.snapshots.Load() == 0 {
		t.Error("B did not load the snapshot")
	}
	for _, id := range append(made, old[2:]...) {
		if !b.has(id) {
			t.Fatalf("B lacks %s after the snapshot", id)
		}
	}
	if b.has(old[0]) || b.has(old[1]) {
		t.Error("B kept entries deleted while it was down")
	}
	if !b.has(mine) {
		t.Fatal("the snapshot deleted B's own change still in its outbox")
	}
	b.eng.holdPublish.Store(false)
	wake(b.eng.pubWake)
	waitSame(t, 5*time.Second, b, a)
}

// Two clusters with different prefixes share a Redis without seeing each
// other's entries.
func TestPrefixesSeparateClusters(t *testing.T) {
	srv := startRedis(t, false)
	p1 := func(o *Options) { o.Prefix = "one" }
	p2 := func(o *Options) { o.Prefix = "two" }
	a1, b1 := newNode(t, srv, "a1", p1), newNode(t, srv, "b1", p1)
	a2, b2 := newNode(t, srv, "a2", p2), newNode(t, srv, "b2", p2)
	x := a1.add(revocation.Entry{JTI: "one-only"}).ID
	y := a2.add(revocation.Entry{JTI: "two-only"}).ID
	waitFor(t, 5*time.Second, "each cluster's entry to replicate", func() bool { return b1.has(x) && b2.has(y) })
	time.Sleep(300 * time.Millisecond)
	if b1.has(y) || a1.has(y) || b2.has(x) || a2.has(x) {
		t.Errorf("an entry crossed clusters: one=%v/%v two=%v/%v", a1.ids(), b1.ids(), a2.ids(), b2.ids())
	}
	keys, _ := srv.Client().Keys(context.Background(), "*").Result()
	for _, k := range keys {
		if k[:5] != "{one}" && k[:5] != "{two}" {
			t.Errorf("key %q outside the prefixes' hash tags", k)
		}
	}
}

// A change made here and not yet published wins over another node's
// change to the same entry that reaches Redis first: the other node's
// change is older in the log, so every node ends with this one.
func TestOwnPendingChangeWins(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)
	x := a.add(revocation.Entry{JTI: "x", ExpiresAt: hours(1)}).ID
	y := a.add(revocation.Entry{JTI: "y", ExpiresAt: hours(1)}).ID
	waitSame(t, 5*time.Second, a, b)

	b.eng.holdPublish.Store(true)
	b.del(x)                                               // pending delete
	b.add(revocation.Entry{JTI: "y", ExpiresAt: hours(3)}) // pending put (extends y)
	a.add(revocation.Entry{JTI: "x", ExpiresAt: hours(2)}) // reaches the log before B's delete
	a.del(y)                                               // reaches the log before B's put
	waitFor(t, 5*time.Second, "A to publish", func() bool { return a.eng.Pending() == 0 })
	end, err := srv.Client().XRevRangeN(context.Background(), "{jwtguard}:log", "+", "-", 1).Result()
	if err != nil || len(end) != 1 {
		t.Fatal(end, err)
	}
	waitFor(t, 5*time.Second, "B to read A's changes", func() bool { return b.eng.Status().Applied == end[0].ID })
	if b.has(x) {
		t.Error("A's put undid B's pending delete on B")
	}
	if !b.has(y) {
		t.Error("A's delete undid B's pending put on B")
	}

	b.eng.holdPublish.Store(false)
	wake(b.eng.pubWake)
	waitFor(t, 5*time.Second, "B to publish", func() bool { return b.eng.Pending() == 0 })
	waitSame(t, 5*time.Second, a, b)
	if a.has(x) || !a.has(y) {
		t.Errorf("the nodes ended with %v; want y and not x", a.ids())
	}
}

// Concurrent writes on both nodes while they tail each other (run with
// -race): both end with the same entries.
func TestConcurrentWrites(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			on := a
			if g%4 == 3 {
				on = b
			}
			for i := range 30 {
				e, _, err := on.store.Add(revocation.Entry{JTI: fmt.Sprintf("c-%d-%d", g, i)})
				if err != nil {
					t.Error(err)
					return
				}
				if i%5 == 0 {
					if _, _, err := on.store.Delete(e.ID); err != nil {
						t.Error(err)
						return
					}
				}
				_ = on.eng.Status()
			}
		}()
	}
	wg.Wait()
	waitSame(t, 10*time.Second, a, b)
	if n := len(a.ids()); n != 8*24 {
		t.Errorf("A holds %d entries, want %d", n, 8*24)
	}
}

// Close does not wait for a blocked read to time out.
func TestCloseIsQuick(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", func(o *Options) { o.Block = 5 * time.Second })
	time.Sleep(100 * time.Millisecond) // let the tailer block
	start := time.Now()
	a.close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %s", d)
	}
}

// Against a Redis Cluster (several URLs), every key of a prefix is in one
// slot, so the script runs, and replication works as with one server.
func TestRedisCluster(t *testing.T) {
	urls := redistest.StartCluster(t)
	var srv *redisServer // the cluster's URLs replace a single server's
	useCluster := func(o *Options) { o.URLs = urls }
	a := newNode(t, srv, "a", useCluster)
	b := newNode(t, srv, "b", useCluster)
	entries, tokens := everyKind()
	for i, e := range entries {
		a.add(e)
		waitFor(t, 5*time.Second, "B to refuse the token", func() bool { return revoked(t, b, tokens[i]) })
	}
	b.del(mustID(t, b, entries[3]))
	waitFor(t, 5*time.Second, "A to drop the key entry", func() bool { return !revoked(t, a, tokens[3]) })
	waitSame(t, 5*time.Second, a, b)
	if !a.eng.Connected() || a.eng.Pending() != 0 {
		t.Errorf("A's status: %+v", a.eng.Status())
	}
}

// Redis restored from an older backup (same epoch, shorter log): nodes
// whose position is past the log's end publish their entries again, and
// a new node gets them all.
func TestRedisWentBack(t *testing.T) {
	srv := startRedis(t, true)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)
	a.add(revocation.Entry{JTI: "kept"})
	waitSame(t, 5*time.Second, a, b)
	srv.Kill()
	backup := srv.SaveData()
	srv.Start()

	a.add(revocation.Entry{JTI: "lost-1"})
	b.add(revocation.Entry{JTI: "lost-2"})
	waitSame(t, 5*time.Second, a, b)
	waitFor(t, 5*time.Second, "both to publish", func() bool { return a.eng.Pending() == 0 && b.eng.Pending() == 0 })

	srv.Kill()
	srv.RestoreData(backup)
	srv.Start()
	waitFor(t, 10*time.Second, "Redis's live set to have every entry again", func() bool {
		n, _ := srv.Client().HLen(context.Background(), "{jwtguard}:live").Result()
		return n == 3
	})
	c := newNode(t, srv, "c", nil)
	waitSame(t, 5*time.Second, a, b, c)
	after := a.add(revocation.Entry{JTI: "after"}).ID
	waitFor(t, 5*time.Second, "a new change to reach C", func() bool { return c.has(after) && b.has(after) })
}

// Big entries (fields at their limits, every character escaped in JSON)
// in a backlog: no transaction grows past Badger's limit.
func TestBigEntriesBacklog(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)
	a.eng.holdPublish.Store(true)
	long := strings.Repeat("<", 1000) // 6 bytes each in JSON
	for i := range 120 {
		a.add(revocation.Entry{JTI: fmt.Sprintf("%s%d", long, i), Issuer: long, Reason: long})
	}
	a.eng.holdPublish.Store(false)
	wake(a.eng.pubWake)
	waitFor(t, 20*time.Second, "the backlog to be published", func() bool { return a.eng.Pending() == 0 })
	waitSame(t, 10*time.Second, a, b)
}

// Through a Sentinel (a URL with master_name), nodes find the master and
// replicate as with one server.
func TestSentinel(t *testing.T) {
	srv := startRedis(t, false)
	url := redistest.StartSentinel(t, srv)
	viaSentinel := func(o *Options) { o.URLs = []string{url} }
	a := newNode(t, srv, "a", viaSentinel)
	b := newNode(t, srv, "b", viaSentinel)
	x := a.add(revocation.Entry{JTI: "via-sentinel"}).ID
	waitFor(t, 5*time.Second, "B to get the entry", func() bool { return b.has(x) })
	if n, _ := srv.Client().XLen(context.Background(), "{jwtguard}:log").Result(); n != 1 {
		t.Errorf("the master's log has %d entries, want 1", n)
	}
}
