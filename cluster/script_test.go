package cluster

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// The publish script on its own: what it appends, skips and deduplicates.
func TestPublishScript(t *testing.T) {
	srv := startRedis(t, false)
	r, err := NewRedis(Options{URLs: []string{srv.URL()}, Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.origin = "o1"
	ctx := context.Background()
	c := srv.Client()
	if err := c.Set(ctx, r.keys[kEpoch], "e1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	at := func(h int) *time.Time { x := time.Unix(time.Now().Unix()+int64(h)*3600, 0).UTC(); return &x }
	run := func(op, p string, e revocation.Entry) scriptResult {
		t.Helper()
		change, _ := json.Marshal(revocation.Change{Delete: op == "del", Entry: e})
		res, err := r.runScript(ctx, "e1", op, p, "7", &e, change)
		if err != nil {
			t.Fatalf("%s %s: %v", op, e.ID, err)
		}
		return res
	}
	x := revocation.Entry{ID: "x", Kind: revocation.KindJTI, JTI: "x", ExpiresAt: at(2)}

	first := run("put", "1", x)
	if first.status != "add" {
		t.Fatalf("first put: %+v", first)
	}
	if got := run("put", "1", x); got.status != "dup" || got.id != first.id {
		t.Errorf("the same publish number again: %+v, want dup at %v", got, first.id)
	}
	x.ExpiresAt = at(1)
	if got := run("put", "2", x); got.status != "skip" || got.id != first.id {
		t.Errorf("an earlier expiry: %+v, want skip", got)
	}
	x.ExpiresAt = at(3)
	if got := run("put", "3", x); got.status != "add" {
		t.Errorf("a later expiry: %+v, want add", got)
	}
	if got := run("put", "2", x); got.status != "dup" {
		t.Errorf("an older publish number: %+v, want dup", got)
	}
	if v, _ := c.HGet(ctx, r.keys[kLive], "x").Result(); v == "" {
		t.Error("x is not in the live set")
	}
	if got := run("del", "4", x); got.status != "add" {
		t.Errorf("delete: %+v", got)
	}
	if got := run("sync", "0", x); got.status != "skip" {
		t.Errorf("a republish of an entry deleted in this epoch: %+v, want skip", got)
	}
	if n, _ := c.HLen(ctx, r.keys[kLive]).Result(); n != 0 {
		t.Errorf("live set has %d entries after the delete", n)
	}
	if n, _ := c.XLen(ctx, r.keys[kLog]).Result(); n != 3 {
		t.Errorf("the log has %d entries, want 3 (put, put, del)", n)
	}

	// Another origin's numbers are its own.
	r.origin = "o2"
	y := revocation.Entry{ID: "y", Kind: revocation.KindKey, KeyID: "y"}
	if got := run("put", "1", y); got.status != "add" {
		t.Errorf("origin o2's first put: %+v", got)
	}
	if got := run("sync", "0", y); got.status != "skip" {
		t.Errorf("a republish of a live entry: %+v, want skip", got)
	}

	// Entries expired longer than pruneAfter leave the live and gone sets.
	r.pruneAfter = 0
	old := revocation.Entry{ID: "old", Kind: revocation.KindJTI, JTI: "old", ExpiresAt: at(-1)}
	run("put", "2", old)
	run("put", "3", revocation.Entry{ID: "z", Kind: revocation.KindJTI, JTI: "z"})
	if ok, _ := c.HExists(ctx, r.keys[kLive], "old").Result(); ok {
		t.Error("an expired entry stayed in the live set")
	}
	if n, _ := c.HLen(ctx, r.keys[kGone]).Result(); n != 1 {
		t.Errorf("gone has %d entries, want 1 (x expires later)", n)
	}

	// A node that did not sync with the epoch writes nothing.
	if _, err := r.runScript(ctx, "stale", "put", "9", "9", &y, []byte("{}")); err == nil {
		t.Error("a stale epoch was accepted")
	}
	if !r.Connected() {
		t.Error("a script error counted as Redis not answering")
	}
}
