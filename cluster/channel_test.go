package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// inbox collects what a channel's tail delivers.
type inbox struct {
	mu   sync.Mutex
	got  []string // node:data
	fail int      // handle calls still to fail
}

func (in *inbox) handle(msgs []Message) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.fail > 0 {
		in.fail--
		return errors.New("not now")
	}
	for _, m := range msgs {
		in.got = append(in.got, m.Node+":"+string(m.Data))
	}
	return nil
}

func (in *inbox) list() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.got...)
}

func (in *inbox) wait(t *testing.T, n int, want string) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d messages", n), func() bool { return len(in.list()) >= n })
	time.Sleep(100 * time.Millisecond) // nothing more comes
	if got := fmt.Sprint(in.list()); got != want {
		t.Fatalf("received %s, want %s", got, want)
	}
}

func mustChannel(t *testing.T, n *node, name string, o ChannelOptions) Channel {
	t.Helper()
	c, err := n.eng.Channel(name, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func msgs(s ...string) [][]byte {
	var out [][]byte
	for _, m := range s {
		out = append(out, []byte(m))
	}
	return out
}

// Messages reach the other nodes in order, never their sender; a durable
// tail resumes after a restart where it was, a handler's error brings the
// same messages again.
func TestChannelDeliversOtherNodesMessages(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)
	ca := mustChannel(t, a, "events", ChannelOptions{Durable: true})
	cb := mustChannel(t, b, "events", ChannelOptions{Durable: true})
	var ina, inb inbox
	inb.fail = 2
	ca.Tail(ina.handle)
	cb.Tail(inb.handle)
	if err := ca.Publish(context.Background(), msgs("1", "2", "3")); err != nil {
		t.Fatal(err)
	}
	inb.wait(t, 3, "[a:1 a:2 a:3]")
	if got := ina.list(); len(got) != 0 {
		t.Fatalf("A received its own messages: %v", got)
	}
	cb.Send([]byte("from b"))
	ina.wait(t, 1, "[b:from b]")

	b.close()
	if err := ca.Publish(context.Background(), msgs("4", "5")); err != nil {
		t.Fatal(err)
	}
	if err := b.open(nil); err != nil {
		t.Fatal(err)
	}
	var inb2 inbox
	mustChannel(t, b, "events", ChannelOptions{Durable: true}).Tail(inb2.handle)
	inb2.wait(t, 2, "[a:4 a:5]")

	// A tail that is not durable starts at the end.
	var inc inbox
	c := newNode(t, srv, "c", nil)
	mustChannel(t, c, "events", ChannelOptions{}).Tail(inc.handle)
	time.Sleep(300 * time.Millisecond) // the tail has found the end
	if err := ca.Publish(context.Background(), msgs("6")); err != nil {
		t.Fatal(err)
	}
	inc.wait(t, 1, "[a:6]")
}

// Send never waits: while Redis is away it keeps the newest Queue
// messages, drops the oldest (counted), and publishes the rest once Redis
// is back; a tail whose position Redis lost reads the stream from its
// start.
func TestChannelSendWhileRedisIsAway(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	b := newNode(t, srv, "b", nil)
	ca := mustChannel(t, a, "sightings", ChannelOptions{Queue: 5})
	var inb inbox
	mustChannel(t, b, "sightings", ChannelOptions{}).Tail(inb.handle)
	time.Sleep(300 * time.Millisecond)
	ca.Send([]byte("before"))
	inb.wait(t, 1, "[a:before]")

	srv.Pause() // answers nothing: sends must not wait
	start := time.Now()
	for i := range 3 {
		ca.Send(fmt.Appendf(nil, "p%d", i))
	}
	if d := time.Since(start); d > 500*time.Millisecond { // a send that waited would take the 1s timeout
		t.Errorf("3 sends with Redis paused took %v", d)
	}
	time.Sleep(300 * time.Millisecond)
	srv.Resume()
	inb.wait(t, 4, "[a:before a:p0 a:p1 a:p2]")

	// Down, then back empty: B's position is past the stream's end.
	srv.Kill()
	for i := range 8 {
		ca.Send(fmt.Appendf(nil, "m%d", i))
	}
	time.Sleep(200 * time.Millisecond)
	srv.Start()
	waitFor(t, 10*time.Second, "the messages after Redis returned", func() bool {
		l := inb.list()
		return l[len(l)-1] == "a:m7"
	})
	// The sender holds the batch it was sending beside its queue of 5.
	got := inb.list()[4:]
	if d := ca.Dropped(); d < 2 || int(d)+len(got) != 8 {
		t.Errorf("dropped %d, received %v: want at most 6 kept, and each message either", d, got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Errorf("received %v: out of order", got)
		}
	}
}

func TestChannelTrimsAndNames(t *testing.T) {
	srv := startRedis(t, false)
	a := newNode(t, srv, "a", nil)
	c := mustChannel(t, a, "events", ChannelOptions{MaxLen: 10})
	for range 5 {
		if err := c.Publish(context.Background(), msgs("1", "2", "3", "4", "5")); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Client().XLen(context.Background(), "{jwtguard}:events").Val(); n != 10 {
		t.Errorf("the stream holds %d messages, want 10", n)
	}
	for _, name := range []string{"", "log", "live", "epoch"} {
		if _, err := a.eng.Channel(name, ChannelOptions{}); err == nil {
			t.Errorf("channel %q was allowed", name)
		}
	}
	e, _ := NewRedis(testOptions(srv, "x"))
	if _, err := e.Channel("events", ChannelOptions{}); err == nil {
		t.Error("a channel of an engine not started")
	}
}
