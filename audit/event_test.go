package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func sampleEvent() Event {
	return Event{
		Detector:   "travel",
		Action:     "revoke",
		TokenID:    "https://issuer.example#t1",
		Issuer:     "https://issuer.example",
		Subject:    "alice",
		ClientIP:   netip.MustParseAddr("198.51.100.7"),
		UserAgent:  "curl/8.5.0",
		Detail:     "Paris, FR -> Tokyo, JP: 9712 km in 40s",
		Revocation: "rev1",
		Webhook:    "https://hooks.example/secret",
	}
}

func mustRecord(t testing.TB, l *Log, ev Event, durable bool) Event {
	t.Helper()
	got, err := l.Record(ev, durable)
	if err != nil {
		t.Fatalf("Record: %v", err)
	}
	return got
}

func allEvents(t testing.TB, l *Log, q EventQuery) []Event {
	t.Helper()
	var out []Event
	for {
		page, next, err := l.Events(q)
		if err != nil {
			t.Fatalf("Events(%+v): %v", q, err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		q.Cursor = next
	}
}

func TestEventJSON(t *testing.T) {
	clock := newClock()
	e := newEnv(t, Options{Now: clock.Now})
	ev := mustRecord(t, e.log, sampleEvent(), true)
	if ev.ID == "" || !ev.Time.Equal(clock.Now()) || ev.Time.Location() != time.UTC {
		t.Fatalf("Record assigned id %q, time %v; want an id and %v in UTC", ev.ID, ev.Time, clock.Now())
	}
	got, _, err := e.log.Events(EventQuery{})
	if err != nil || len(got) != 1 {
		t.Fatalf("Events = %v, %v; want the one event", got, err)
	}
	if got[0] != ev {
		t.Errorf("stored %+v, read back %+v", ev, got[0])
	}
	js, _ := json.Marshal(got[0])
	want := fmt.Sprintf(`{"id":%q,"time":%q,"detector":"travel","action":"revoke","token_id":"https://issuer.example#t1",`+
		`"iss":"https://issuer.example","sub":"alice","client_ip":"198.51.100.7","user_agent":"curl/8.5.0",`+
		`"detail":"Paris, FR -\u003e Tokyo, JP: 9712 km in 40s","revocation":"rev1"}`, ev.ID, ev.Time.Format(time.RFC3339Nano))
	if string(js) != want {
		t.Errorf("JSON\n got %s\nwant %s", js, want)
	}

	// iss, sub and revocation go when empty; the webhook is never shown.
	bare := mustRecord(t, e.log, Event{Detector: "rate", Action: "log", TokenID: "sha256:x", Detail: "d"}, true)
	js, _ = json.Marshal(bare)
	for _, absent := range []string{`"iss"`, `"sub"`, `"revocation"`, "hooks.example", "webhook"} {
		if strings.Contains(string(js), absent) {
			t.Errorf("%s in %s", absent, js)
		}
	}
	for _, present := range []string{`"client_ip":""`, `"user_agent":""`, `"detail":"d"`} {
		if !strings.Contains(string(js), present) {
			t.Errorf("%s missing from %s", present, js)
		}
	}
}

func TestRecordClipsUserAgentAndKeepsGivenIDAndTime(t *testing.T) {
	e := newEnv(t, Options{})
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
	ev := sampleEvent()
	ev.ID, ev.Time = "given", at
	ev.UserAgent = strings.Repeat("a", maxUserAgent-1) + "é" + "tail" // é straddles the limit
	ev.ClientIP = netip.MustParseAddr("::ffff:192.0.2.1")
	got := mustRecord(t, e.log, ev, true)
	if got.ID != "given" || !got.Time.Equal(at) || got.Time.Location() != time.UTC {
		t.Errorf("id %q time %v; want the given ones, in UTC", got.ID, got.Time)
	}
	if want := strings.Repeat("a", maxUserAgent-1); got.UserAgent != want {
		t.Errorf("user agent of %d bytes; want cut before the rune that crosses %d", len(got.UserAgent), maxUserAgent)
	}
	if got.ClientIP != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("client ip %v; want it unmapped", got.ClientIP)
	}
	if stored, _, _ := e.log.Events(EventQuery{}); len(stored) != 1 || stored[0] != got {
		t.Errorf("stored %+v; want %+v", stored, got)
	}
}

func TestDurableRecordIsOnDiskWhenItReturns(t *testing.T) {
	e := newEnv(t, Options{})
	for i := range 20 {
		mustRecord(t, e.log, sampleEvent(), false)
		mustRecord(t, e.log, sampleEvent(), true)
		// A durable event is committed with every event queued before it.
		if n := len(rawKeys(t, e.db(), eventPrefix)); n != 2*(i+1) {
			t.Fatalf("after durable Record %d: %d events on disk, want %d", i, n, 2*(i+1))
		}
	}
}

func TestQueuedRecordReachesDiskPromptly(t *testing.T) {
	e := newEnv(t, Options{})
	start := time.Now()
	mustRecord(t, e.log, sampleEvent(), false)
	eventually(t, time.Second, "event on disk", func() bool { return len(rawKeys(t, e.db(), eventPrefix)) == 1 })
	t.Logf("on disk after %v", time.Since(start))
}

func TestFullQueueDropsQueuedEventsButNeverDurableOnes(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	e := newEnv(t, Options{MaxQueue: 2, beforeCommit: func() {
		once.Do(func() { close(entered) })
		<-gate
	}})
	mustRecord(t, e.log, sampleEvent(), false) // taken by the writer, which blocks
	<-entered
	mustRecord(t, e.log, sampleEvent(), false)
	mustRecord(t, e.log, sampleEvent(), false)
	if _, err := e.log.Record(sampleEvent(), false); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Record with a full queue: %v, want ErrQueueFull", err)
	}
	durable := make(chan error)
	go func() {
		_, err := e.log.Record(sampleEvent(), true)
		durable <- err
	}()
	select {
	case err := <-durable:
		t.Fatalf("durable Record returned %v before the writer could commit it", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	if err := <-durable; err != nil {
		t.Fatalf("durable Record with a full queue: %v", err)
	}
	if n := len(allEvents(t, e.log, EventQuery{})); n != 4 {
		t.Errorf("%d events stored, want 4 (one dropped)", n)
	}
}

func TestEventsFilters(t *testing.T) {
	e := newEnv(t, Options{})
	var all []Event
	for i := range 30 {
		ev := sampleEvent()
		ev.Subject = []string{"alice", "bob", "carol"}[i%3]
		ev.TokenID = fmt.Sprintf("tok%d", i%4)
		ev.Detector = []string{"rate", "travel"}[i%2]
		ev.Detail = fmt.Sprint(i)
		all = append(all, mustRecord(t, e.log, ev, i%5 == 0))
	}
	waitEvents(t, e, len(all))
	for _, q := range []EventQuery{
		{},
		{Sub: "bob"},
		{TokenID: "tok2"},
		{Detector: "travel"},
		{Sub: "alice", Detector: "rate"},
		{Sub: "alice", TokenID: "tok1"},
		{TokenID: "tok3", Detector: "travel"},
		{Sub: "dave"},
		{TokenID: "nope"},
	} {
		var want []Event
		for _, ev := range all {
			if (q.Sub == "" || ev.Subject == q.Sub) && (q.TokenID == "" || ev.TokenID == q.TokenID) &&
				(q.Detector == "" || ev.Detector == q.Detector) {
				want = append(want, ev)
			}
		}
		for _, limit := range []int{0, 1, 3, 100} {
			q.Limit = limit
			got := allEvents(t, e.log, q)
			if !slices.Equal(got, want) {
				t.Errorf("%+v: got %d events %v, want %d %v", q, len(got), details(got), len(want), details(want))
			}
		}
	}
	page, next, err := e.log.Events(EventQuery{Limit: 30})
	if len(page) != 30 || next != "" || err != nil {
		t.Errorf("a page holding exactly every event: %d events, next %q, %v; want 30, no next", len(page), next, err)
	}
}

// waitEvents waits for the writer to have committed n events.
func waitEvents(t testing.TB, e *env, n int) {
	t.Helper()
	eventually(t, time.Second, fmt.Sprintf("%d events on disk", n), func() bool {
		return len(rawKeys(t, e.db(), eventPrefix)) == n
	})
}

func details(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Detail)
	}
	return out
}

func TestEventsPagingWhileRecording(t *testing.T) {
	clock := newClock()
	e := newEnv(t, Options{Now: clock.Now})
	const before, during = 50, 300
	for i := range before {
		ev := sampleEvent()
		ev.Detail = fmt.Sprint(i)
		mustRecord(t, e.log, ev, false)
	}
	// Writers record concurrently, some durable, with the clock stepping
	// back now and then: positions must still follow the order of Record.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range during / 4 {
				ev := sampleEvent()
				ev.Detail = fmt.Sprintf("w%d-%d", w, i)
				mustRecord(t, e.log, ev, i%7 == 0)
				if i%10 == 0 {
					clock.Advance(-time.Second)
				}
			}
		}()
	}
	var paged []Event
	q := EventQuery{Limit: 7, Sub: "alice"}
	for done := false; ; {
		page, next, err := e.log.Events(q)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, page...)
		if next != "" {
			q.Cursor = next
			continue
		}
		if done {
			break
		}
		// The last page for now: once every event is on disk, go on from
		// the last one seen, as a client keeping its cursor would.
		wg.Wait()
		waitEvents(t, e, before+during)
		done = true
		if len(paged) > 0 {
			q.Cursor = encodeCursor(lastPosOf(t, e, paged[len(paged)-1]))
		}
	}
	final := allEvents(t, e.log, EventQuery{Limit: 1000})
	if len(final) != before+during {
		t.Fatalf("%d events stored, want %d", len(final), before+during)
	}
	if !slices.Equal(paged, final) {
		t.Fatalf("paging while recording saw %d events, a read afterwards %d; they differ", len(paged), len(final))
	}
	// Each writer's events in its own order.
	last := map[string]int{}
	for _, ev := range final {
		var w, i int
		if _, err := fmt.Sscanf(ev.Detail, "w%d-%d", &w, &i); err == nil {
			k := fmt.Sprint(w)
			if prev, ok := last[k]; ok && i <= prev {
				t.Fatalf("writer %d: event %d listed after %d", w, i, prev)
			}
			last[k] = i
		}
	}
}

// lastPosOf finds an event's position, for continuing to page after a
// last page (whose next is empty) the way a client would keep its cursor.
func lastPosOf(t testing.TB, e *env, ev Event) uint64 {
	t.Helper()
	for k := range rawKeys(t, e.db(), eventPrefix) {
		pos := uint64(0)
		for _, b := range []byte(k[len(eventPrefix):]) {
			pos = pos<<8 | uint64(b)
		}
		evs, _, err := e.log.Events(EventQuery{Cursor: encodeCursor(pos - 1), Limit: 1})
		if err == nil && len(evs) == 1 && evs[0].ID == ev.ID {
			return pos
		}
	}
	t.Fatalf("event %s not found", ev.ID)
	return 0
}

func TestEventsBadCursor(t *testing.T) {
	e := newEnv(t, Options{})
	for _, c := range []string{"!", "AAAA", "AAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAA="} {
		if _, _, err := e.log.Events(EventQuery{Cursor: c}); !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("cursor %q: %v, want ErrInvalidCursor", c, err)
		}
	}
	if evs, next, err := e.log.Events(EventQuery{Cursor: encodeCursor(1<<64 - 1)}); err != nil || len(evs) != 0 || next != "" {
		t.Errorf("cursor at the end: %v %q %v", evs, next, err)
	}
}

func TestEventsSurviveRestart(t *testing.T) {
	clock := newClock()
	e := newEnv(t, Options{Now: clock.Now})
	var want []Event
	for i := range 5 {
		ev := sampleEvent()
		ev.Detail = fmt.Sprint(i)
		want = append(want, mustRecord(t, e.log, ev, i == 4))
	}
	e.restart()
	// Restarted with the clock behind: new events still come after.
	clock.Advance(-time.Hour)
	ev := sampleEvent()
	ev.Detail = "after restart"
	want = append(want, mustRecord(t, e.log, ev, false))
	e.restart()
	if got := allEvents(t, e.log, EventQuery{Sub: "alice", Limit: 2}); !slices.Equal(got, want) {
		t.Errorf("after restarts: %v, want %v", details(got), details(want))
	}
}

func TestEventTTL(t *testing.T) {
	clock := newClock()
	e := newEnv(t, Options{Now: clock.Now, History: 90 * time.Minute})
	ev := mustRecord(t, e.log, sampleEvent(), true)
	old := sampleEvent()
	old.Time = clock.Now().Add(-time.Hour)
	mustRecord(t, e.log, old, true)
	keys := rawKeys(t, e.db(), "e")
	if len(keys) != 8 {
		t.Fatalf("keys %v; want event, subject, token and webhook keys of two events", keys)
	}
	wantNew, wantOld := uint64(ev.Time.Unix()+90*60), uint64(old.Time.Unix()+90*60)
	counts := map[uint64]int{}
	for k, exp := range keys {
		if exp != wantNew && exp != wantOld {
			t.Errorf("key %q expires at %d; want %d or %d (event time + History)", k, exp, wantNew, wantOld)
		}
		counts[exp]++
	}
	if counts[wantNew] != 4 || counts[wantOld] != 4 {
		t.Errorf("expiries %v; want 4 keys at each", counts)
	}
}
