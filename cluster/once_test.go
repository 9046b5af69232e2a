package cluster

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A key is first seen once across every node; it comes back after its
// expiry. A shared secret is the same on every node.
func TestSeenOnceAndSharedSecret(t *testing.T) {
	srv := startRedis(t, false)
	a, err := NewRedis(testOptions(srv, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewRedis(testOptions(srv, "b"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var firsts atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(e *Redis) {
			defer wg.Done()
			first, err := e.SeenOnce("jti-1", time.Now().Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			if first {
				firsts.Add(1)
			}
		}(map[bool]*Redis{true: a, false: b}[i%2 == 0])
	}
	wg.Wait()
	if n := firsts.Load(); n != 1 {
		t.Fatalf("jti-1 first seen %d times across two nodes, want once", n)
	}
	if first, _ := b.SeenOnce("jti-2", time.Now().Add(50*time.Millisecond)); !first {
		t.Fatal("a new key not first")
	}
	time.Sleep(120 * time.Millisecond)
	if first, _ := a.SeenOnce("jti-2", time.Now().Add(time.Minute)); !first {
		t.Fatal("a key past its expiry still seen")
	}

	sa, err := a.SharedSecret("dpop-nonce", 32)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.SharedSecret("dpop-nonce", 32)
	if err != nil || !bytes.Equal(sa, sb) || len(sa) != 32 {
		t.Fatalf("shared secrets differ: %x %x %v", sa, sb, err)
	}
	srv.Kill()
	if _, err := a.SeenOnce("jti-3", time.Now().Add(time.Minute)); err == nil {
		t.Fatal("SeenOnce with Redis down answered without an error")
	}
}

// A replay check or secret fetch that Redis does not answer shows in
// Connected (GET /jwtguard/cluster) at once, as the log's own calls do,
// not only when the log reader's long read times out.
func TestSeenOnceFailureObserved(t *testing.T) {
	srv := startRedis(t, false)
	o := testOptions(srv, "a")
	o.Timeout, o.Block, o.CheckInterval = 300*time.Millisecond, 5*time.Second, time.Minute
	a, err := NewRedis(o)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.SeenOnce("jti-1", time.Now().Add(time.Minute)); err != nil || !a.Connected() {
		t.Fatalf("SeenOnce: %v, connected %v", err, a.Connected())
	}
	srv.Pause()
	defer srv.Resume()
	if _, err := a.SeenOnce("jti-2", time.Now().Add(time.Minute)); err == nil {
		t.Fatal("SeenOnce with Redis paused answered without an error")
	}
	if a.Connected() {
		t.Fatal("connected after SeenOnce went unanswered")
	}
	srv.Resume()
	if _, err := a.SharedSecret("s", 16); err != nil || !a.Connected() {
		t.Fatalf("SharedSecret: %v, connected %v", err, a.Connected())
	}
}
