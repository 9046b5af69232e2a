package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// The delay from A's Add returning to B's Revoked answering true, for
// 1,000 revocations made one after the other (SPEC: p99 under 100 ms on
// loopback).
func TestPropagationDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement; not in -short")
	}
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)
	const n = 1000
	delays := make([]time.Duration, 0, n)
	for i := range n {
		jti := "p-" + strconv.Itoa(i)
		tok := revocation.Token{ID: "#" + jti, JTI: jti}
		a.add(revocation.Entry{JTI: jti})
		start := time.Now()
		for !revoked(t, b, tok) {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("revocation %d not on B after 5s", i)
			}
			time.Sleep(50 * time.Microsecond)
		}
		delays = append(delays, time.Since(start))
	}
	slices.Sort(delays)
	p50, p99, top := delays[n/2], delays[n*99/100], delays[n-1]
	t.Logf("propagation of %d revocations, A's Add returned -> B refuses: p50 %s, p99 %s, max %s", n, p50, p99, top)
	// The target is 100 ms; the bound here leaves room for a loaded
	// machine and -race, and still fails a tailer that polls.
	if p99 > 500*time.Millisecond {
		t.Errorf("p99 %s", p99)
	}
}

// BenchmarkCatchUp: a node that missed 100,000 changes, from its start to
// holding them all (SPEC: within 5 s). The changes are written into the
// log the way a node publishes them, by another origin, to keep the setup
// short.
//
//	go test -run '^$' -bench CatchUp -benchtime 1x ./cluster/
func BenchmarkCatchUp(b *testing.B) {
	const total = 100_000
	srv := startRedis(b, false)
	opts := testOptions(srv, "b")
	opts.Logger = zap.NewNop()
	var (
		store *revocation.Store
		eng   *Redis
	)
	open := func(dir string) error {
		var err error
		if eng, err = NewRedis(opts); err != nil {
			b.Fatal(err)
		}
		if store, err = revocation.Open(dir, revocation.Options{Journal: eng}); err != nil {
			b.Fatal(err)
		}
		if err := eng.Start(store); err != nil {
			b.Fatal(err)
		}
		return eng.Sync(context.Background(), DefaultSyncTimeout)
	}
	closeNode := func() {
		_ = eng.Close()
		_ = store.Close()
	}
	// B joins, leaves, and misses every change; later rounds are new
	// nodes, which miss them all as well.
	dir := b.TempDir()
	if err := open(dir); err != nil {
		b.Fatal(err)
	}
	closeNode()
	seedLog(b, srv, opts, total)

	for b.Loop() {
		start := time.Now()
		err := open(dir)
		synced := time.Since(start)
		for sum(store.Counts()) < total {
			if time.Since(start) > 5*time.Minute {
				b.Fatal("not caught up after 5 minutes")
			}
			time.Sleep(10 * time.Millisecond)
		}
		all := time.Since(start)
		b.ReportMetric(all.Seconds(), "s/catch-up")
		b.Logf("catch-up of %d changes: Sync returned after %s (err: %v); all applied after %s (%.0f changes/s)",
			total, synced.Round(time.Millisecond), err, all.Round(time.Millisecond), total/all.Seconds())
		closeNode()
		dir = b.TempDir()
	}
}

func sum(m map[revocation.Kind]int) int {
	s := 0
	for _, v := range m {
		s += v
	}
	return s
}

// seedLog writes n changes into the log as another node would publish
// them (ids from an in-memory store, which derives them).
func seedLog(b *testing.B, srv *redisServer, o Options, n int) {
	scratch, err := revocation.Open("", revocation.Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	defer scratch.Close()
	writer, err := NewRedis(Options{URLs: o.URLs, Node: "seeder", Prefix: o.Prefix, Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer writer.Close()
	writer.origin = "seeder"
	ctx := context.Background()
	epoch, err := srv.Client().Get(ctx, writer.keys[kEpoch]).Result()
	if err != nil {
		b.Fatal(err)
	}
	const page = 1000
	start := time.Now()
	for i := 0; i < n; i += page {
		entries := make([]revocation.Entry, 0, page)
		for j := i; j < min(n, i+page); j++ {
			e, _, err := scratch.Add(revocation.Entry{JTI: fmt.Sprintf("seed-%d", j)})
			if err != nil {
				b.Fatal(err)
			}
			entries = append(entries, e)
		}
		pipe := srv.Client().Pipeline()
		for k := range entries {
			change, _ := json.Marshal(revocation.Change{Entry: entries[k]})
			args, err := writer.scriptArgs(epoch, "put", "0", "0", &entries[k], change)
			if err != nil {
				b.Fatal(err)
			}
			publishScript.Eval(ctx, pipe, writer.keys, args...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("seeded %d changes in %s", n, time.Since(start).Round(time.Millisecond))
}

// BenchmarkPublishBacklog: a node wrote 20,000 revocations while Redis was
// away (appendfsync always); how long until Redis has them all, with the
// outbox sent a pipelined batch per round trip, and one change at a time.
func BenchmarkPublishBacklog(b *testing.B) {
	const total = 20_000
	for _, pipelined := range []bool{true, false} {
		b.Run(map[bool]string{true: "pipelined", false: "one-at-a-time"}[pipelined], func(b *testing.B) {
			pipelinePublish = pipelined
			defer func() { pipelinePublish = true }()
			for b.Loop() {
				srv := startRedis(b, true)
				opts := testOptions(srv, "a")
				opts.Logger = zap.NewNop()
				eng, err := NewRedis(opts)
				if err != nil {
					b.Fatal(err)
				}
				store, err := revocation.Open(b.TempDir(), revocation.Options{Journal: eng})
				if err != nil {
					b.Fatal(err)
				}
				if err := eng.Start(store); err != nil {
					b.Fatal(err)
				}
				if err := eng.Sync(context.Background(), DefaultSyncTimeout); err != nil {
					b.Fatal(err)
				}
				srv.Kill()
				var wg sync.WaitGroup
				for w := 0; w < 16; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := w; i < total; i += 16 {
							if _, _, err := store.Add(revocation.Entry{JTI: fmt.Sprintf("backlog-%d", i)}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				start := time.Now()
				srv.Start()
				for eng.Pending() > 0 {
					if time.Since(start) > 5*time.Minute {
						b.Fatal("backlog not published after 5 minutes")
					}
					time.Sleep(10 * time.Millisecond)
				}
				took := time.Since(start)
				b.ReportMetric(total/took.Seconds(), "changes/s")
				b.Logf("%d queued changes published in %s (%.0f changes/s)", total, took.Round(time.Millisecond), total/took.Seconds())
				_ = eng.Close()
				_ = store.Close()
			}
		})
	}
}
