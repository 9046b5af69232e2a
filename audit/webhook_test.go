package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hookServer is a webhook on 127.0.0.1 that records what it is sent.
type hookServer struct {
	*httptest.Server
	mu     sync.Mutex
	fail   int      // posts still to answer 500
	bodies []string // posts answered 200, in order
	posts  int
	bad    []string // posts that should not have come: other paths, methods or types
}

func newHookServer(t testing.TB, fail int) *hookServer {
	h := &hookServer{fail: fail}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.posts++
		if r.URL.Path != "/hook" || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			h.bad = append(h.bad, fmt.Sprintf("%s %s %s", r.Method, r.URL.Path, r.Header.Get("Content-Type")))
		}
		if h.fail > 0 {
			h.fail--
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		h.bodies = append(h.bodies, string(body))
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) setFail(n int) {
	h.mu.Lock()
	h.fail = n
	h.mu.Unlock()
}

func (h *hookServer) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.bodies)
}

func (h *hookServer) check(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bad) > 0 {
		t.Errorf("unexpected posts: %v", h.bad)
	}
}

func fastRetry(int) time.Duration { return time.Millisecond }

func hookEvent(url string, i int) Event {
	ev := sampleEvent()
	ev.Webhook = url
	ev.Detail = fmt.Sprint(i)
	return ev
}

// stored is what the webhook at url should receive: the JSON of every
// event stored for it, in order.
func stored(t testing.TB, l *Log, url string) []string {
	t.Helper()
	var out []string
	for _, ev := range allEvents(t, l, EventQuery{}) {
		if ev.Webhook == url {
			js, _ := json.Marshal(ev)
			out = append(out, string(js))
		}
	}
	return out
}

func waitReceived(t testing.TB, h *hookServer, n int) {
	t.Helper()
	eventually(t, 5*time.Second, fmt.Sprintf("%d events delivered", n), func() bool { return len(h.received()) >= n })
}

func TestWebhookRetriesAndKeepsOrder(t *testing.T) {
	h := newHookServer(t, 3)
	url, other := h.URL+"/hook", h.URL+"/other"
	e := newEnv(t, Options{})
	release := e.log.Webhook(url, WebhookOptions{Backoff: fastRetry, Poll: time.Hour})
	defer release()
	for i := range 10 {
		mustRecord(t, e.log, hookEvent(url, i), i%3 == 0)
		mustRecord(t, e.log, hookEvent(other, i), false) // no deliverer for it
		mustRecord(t, e.log, hookEvent("", i), false)
	}
	waitReceived(t, h, 10)
	time.Sleep(50 * time.Millisecond) // room for a wrong extra post
	want := stored(t, e.log, url)
	if got := h.received(); !slices.Equal(got, want) {
		t.Errorf("delivered\n%v\nwant\n%v", got, want)
	}
	h.mu.Lock()
	if h.posts != 13 {
		t.Errorf("%d posts, want 10 and the 3 that failed", h.posts)
	}
	h.mu.Unlock()
	h.check(t)
	// The cursor on disk is the last event's position.
	var last Event
	json.Unmarshal([]byte(want[len(want)-1]), &last)
	d := newDeliverer(e.log, url, WebhookOptions{}, nil)
	eventually(t, time.Second, "cursor saved", func() bool {
		pos, err := d.loadCursor()
		evs, _, _ := e.log.Events(EventQuery{Cursor: encodeCursor(pos - 1), Limit: 1})
		return err == nil && len(evs) == 1 && evs[0].ID == last.ID
	})
}

func TestWebhookDeliversAfterRestart(t *testing.T) {
	h := newHookServer(t, 0)
	url := h.URL + "/hook"
	e := newEnv(t, Options{})
	opts := WebhookOptions{Backoff: fastRetry, Poll: time.Hour}
	e.log.Webhook(url, opts)
	mustRecord(t, e.log, hookEvent(url, 1), false)
	mustRecord(t, e.log, hookEvent(url, 2), false)
	waitReceived(t, h, 2)
	// The webhook fails while Caddy stops: event 3 is not delivered.
	h.setFail(1 << 30)
	mustRecord(t, e.log, hookEvent(url, 3), true)
	eventually(t, 2*time.Second, "a failed post", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.posts > 2
	})
	e.restart()
	// Recorded while no deliverer runs.
	mustRecord(t, e.log, hookEvent(url, 4), false)
	mustRecord(t, e.log, hookEvent(url, 5), true)
	e.restart()
	h.setFail(0)
	release := e.log.Webhook(url, opts)
	defer release()
	mustRecord(t, e.log, hookEvent(url, 6), false)
	waitReceived(t, h, 6)
	time.Sleep(50 * time.Millisecond)
	if got, want := h.received(), stored(t, e.log, url); !slices.Equal(got, want) || len(want) != 6 {
		t.Errorf("delivered %d\n%v\nwant %d\n%v", len(got), got, len(want), want)
	}
	h.check(t)
}

func TestWebhookWokenByRecord(t *testing.T) {
	h := newHookServer(t, 0)
	url := h.URL + "/hook"
	e := newEnv(t, Options{})
	defer e.log.Webhook(url, WebhookOptions{Poll: time.Hour})()
	mustRecord(t, e.log, hookEvent(url, 1), false)
	waitReceived(t, h, 1)
	time.Sleep(20 * time.Millisecond) // the deliverer is idle now
	start := time.Now()
	mustRecord(t, e.log, hookEvent(url, 2), false)
	waitReceived(t, h, 2) // fails after 5s; the poll is an hour
	t.Logf("delivered %v after Record", time.Since(start))
}

// countingTransport counts requests in flight, from RoundTrip until the
// body is closed.
type countingTransport struct {
	rt       http.RoundTripper
	inFlight atomic.Int32
	most     atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	n := c.inFlight.Add(1)
	for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
	}
	resp, err := c.rt.RoundTrip(r)
	if err != nil {
		c.inFlight.Add(-1)
		return nil, err
	}
	resp.Body = &countedBody{ReadCloser: resp.Body, c: c}
	return resp, nil
}

type countedBody struct {
	io.ReadCloser
	c    *countingTransport
	once sync.Once
}

func (b *countedBody) Close() error {
	b.once.Do(func() { b.c.inFlight.Add(-1) })
	return b.ReadCloser.Close()
}

func TestWebhookOneDelivererPerURL(t *testing.T) {
	h := newHookServer(t, 0)
	url := h.URL + "/hook"
	e := newEnv(t, Options{})
	ct := &countingTransport{rt: &http.Transport{}}
	opts := WebhookOptions{Client: &http.Client{Transport: ct, Timeout: 5 * time.Second}, Backoff: fastRetry, Poll: time.Hour}

	var recorded atomic.Int32
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mustRecord(t, e.log, hookEvent(url, i), i%4 == 0)
			recorded.Add(1)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	// Config reloads: the new config takes the URL before the old one
	// lets it go, so one deliverer goes on throughout.
	rel := e.log.Webhook(url, opts)
	for range 20 {
		next := e.log.Webhook(url, opts)
		time.Sleep(time.Millisecond)
		rel()
		rel()
		rel = next
	}
	close(stop)
	<-done
	waitReceived(t, h, int(recorded.Load()))
	time.Sleep(50 * time.Millisecond)
	if got, want := h.received(), stored(t, e.log, url); !slices.Equal(got, want) {
		t.Fatalf("through overlapping reloads: %d delivered, %d stored; not the same list", len(got), len(want))
	}

	// Reloads where the URL goes and comes back: a deliverer stopped in
	// the middle of a post may leave it to its successor to post again,
	// but never do two run at once, and nothing is lost or reordered.
	stop, done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 1000; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mustRecord(t, e.log, hookEvent(url, i), false)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for range 20 {
		rel()
		rel = e.log.Webhook(url, opts)
		time.Sleep(time.Millisecond)
	}
	close(stop)
	<-done
	mustRecord(t, e.log, hookEvent(url, -1), true) // commits those queued before it
	want := stored(t, e.log, url)
	deadline := time.Now().Add(5 * time.Second)
	for len(slices.Compact(h.received())) < len(want) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	rel()
	if got := slices.Compact(h.received()); !slices.Equal(got, want) {
		t.Errorf("with restarts: %d delivered (repeats removed), %d stored; not the same list", len(got), len(want))
		if i := firstDiff(got, want); i >= 0 {
			t.Logf("first difference at %d", i)
		}
	}
	if m := ct.most.Load(); m != 1 {
		t.Errorf("%d posts in flight at once; want 1", m)
	}
	h.check(t)
}

func TestWebhookAfterClose(t *testing.T) {
	e := newEnv(t, Options{})
	l := e.log
	release := l.Webhook("http://127.0.0.1:1/hook", WebhookOptions{Backoff: fastRetry})
	mustRecord(t, l, hookEvent("http://127.0.0.1:1/hook", 1), false)
	e.close() // stops the deliverer, which is retrying
	release()
	release()
	l.Webhook("http://127.0.0.1:1/hook", WebhookOptions{})() // a no-op
}

func TestDefaultBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := defaultBackoff(i + 1); got != w {
			t.Errorf("backoff after failure %d: %v, want %v", i+1, got, w)
		}
	}
	if got := defaultBackoff(1000); got != time.Minute {
		t.Errorf("backoff after many failures: %v", got)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.example:8443/services/T0/B0/secret?token=x": "https://hooks.example:8443",
		"https://user:pass@hooks.example/x":                        "https://hooks.example",
		"::not a url":                                              "(invalid URL)",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}
