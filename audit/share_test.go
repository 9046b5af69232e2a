package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// remoteEvent is an event another node recorded, as it arrives: its JSON
// read back (no webhook in it).
func remoteEvent(t testing.TB, id string, at time.Time) Event {
	t.Helper()
	ev := sampleEvent()
	ev.ID, ev.Time = id, at
	js, _ := json.Marshal(ev)
	var back Event
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	return back
}

func mustImport(t testing.TB, l *Log, want int, evs ...Event) {
	t.Helper()
	n, err := l.Import(evs)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if n != want {
		t.Fatalf("Import stored %d of %d events, want %d", n, len(evs), want)
	}
}

func TestImportStoresAnEventOnce(t *testing.T) {
	e := newEnv(t, Options{Share: true})
	now := time.Now().UTC().Truncate(time.Millisecond)
	a, b := remoteEvent(t, "ev-a", now.Add(-time.Minute)), remoteEvent(t, "ev-b", now)
	local := mustRecord(t, e.log, sampleEvent(), true)
	mustImport(t, e.log, 2, a, b, a) // a twice in one call
	mustImport(t, e.log, 0, b, a)    // both again
	mustImport(t, e.log, 0, local)   // this node's own, come back
	mustImport(t, e.log, 0, Event{}) // no id
	old := remoteEvent(t, "ev-old", now.Add(-DefaultHistory-time.Hour))
	mustImport(t, e.log, 0, old) // past History
	// A webhook given with an imported event is dropped: its own node
	// posts it.
	hooked := remoteEvent(t, "ev-hooked", now)
	hooked.Webhook = "https://hooks.example/secret"
	mustImport(t, e.log, 1, hooked)
	if n := len(rawKeys(t, e.db(), evHookPrefix)); n != 1 {
		t.Errorf("%d events indexed for the webhook, want 1 (the local one)", n)
	}
	got := allEvents(t, e.log, EventQuery{})
	if len(got) != 4 || got[3].Webhook != "" {
		t.Fatalf("%d events listed, want 4, the last without webhook: %+v", len(got), got)
	}
	got = got[:3]
	if len(got) != 3 {
		t.Fatalf("%d events listed, want 3: %+v", len(got), got)
	}
	// Same id and time; listed in the order received.
	if got[1].ID != "ev-a" || !got[1].Time.Equal(a.Time) || got[2].ID != "ev-b" || !got[2].Time.Equal(b.Time) {
		t.Errorf("imported events listed as %+v", got[1:])
	}
	e.restart()
	mustImport(t, e.log, 0, a, b) // the ids survive a restart
	if n := len(allEvents(t, e.log, EventQuery{TokenID: a.TokenID})); n != 4 {
		t.Errorf("%d events of the token, want 4", n)
	}
}

func TestImportWithoutShareFails(t *testing.T) {
	e := newEnv(t, Options{})
	if _, err := e.log.Import([]Event{remoteEvent(t, "x", time.Now())}); err == nil {
		t.Fatal("Import worked on a log opened without Share")
	}
	mustRecord(t, e.log, sampleEvent(), true)
	// Without Share, no key of it is written.
	for _, p := range []string{evIDPrefix, evOwnPrefix} {
		if n := len(rawKeys(t, e.db(), p)); n != 0 {
			t.Errorf("%d keys under %s without Share", n, p)
		}
	}
}

// sink collects what ShareEvents sends, failing the first fail sends.
type sink struct {
	mu   sync.Mutex
	fail int
	got  []string
}

func (s *sink) send(_ context.Context, evs [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return errors.New("Redis is away")
	}
	for _, js := range evs {
		var ev Event
		if err := json.Unmarshal(js, &ev); err != nil {
			return err
		}
		s.got = append(s.got, ev.Detail)
	}
	return nil
}

func (s *sink) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func TestShareEventsSendsOwnEventsInOrderOnce(t *testing.T) {
	e := newEnv(t, Options{Share: true})
	s := &sink{fail: 2}
	for i := range 3 {
		ev := sampleEvent()
		ev.Detail = fmt.Sprint("local ", i)
		mustRecord(t, e.log, ev, i == 2)
	}
	mustImport(t, e.log, 1, remoteEvent(t, "from-b", time.Now()))
	e.log.ShareEvents(s.send, time.Millisecond, 10*time.Millisecond)
	e.log.ShareEvents(s.send, time.Millisecond, 10*time.Millisecond) // a second call does nothing
	want := []string{"local 0", "local 1", "local 2"}
	eventually(t, 5*time.Second, "3 events sent", func() bool { return len(s.received()) >= 3 })
	ev := sampleEvent()
	ev.Detail = "local 3"
	mustRecord(t, e.log, ev, false)
	want = append(want, "local 3")
	eventually(t, 5*time.Second, "the 4th event sent", func() bool { return len(s.received()) >= 4 })
	time.Sleep(50 * time.Millisecond)
	if got := s.received(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sent %q, want %q (no imported event, none twice)", got, want)
	}

	// After a restart, sending goes on from where it was.
	e.restart()
	s2 := &sink{}
	e.log.ShareEvents(s2.send, time.Millisecond, 10*time.Millisecond)
	ev.Detail = "local 4"
	mustRecord(t, e.log, ev, false)
	eventually(t, 5*time.Second, "the event after the restart sent", func() bool { return len(s2.received()) >= 1 })
	time.Sleep(50 * time.Millisecond)
	if got := s2.received(); fmt.Sprint(got) != "[local 4]" {
		t.Fatalf("sent after the restart %q, want [local 4]", got)
	}
}

func TestRecordOnce(t *testing.T) {
	e := newEnv(t, Options{Share: true})
	now := time.Now()
	mustImport(t, e.log, 1, remoteEvent(t, "same", now))
	ev := sampleEvent()
	ev.ID, ev.Time = "same", now
	if _, stored, err := e.log.RecordOnce(ev); err != nil || stored {
		t.Fatalf("RecordOnce of an imported id: stored %v, %v", stored, err)
	}
	ev.ID = "mine"
	if _, stored, err := e.log.RecordOnce(ev); err != nil || !stored {
		t.Fatalf("RecordOnce of a new id: stored %v, %v", stored, err)
	}
	if _, stored, _ := e.log.RecordOnce(ev); stored {
		t.Fatal("RecordOnce stored an id twice")
	}
	mustImport(t, e.log, 0, remoteEvent(t, "mine", now))
	if n := len(allEvents(t, e.log, EventQuery{})); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
	// Recorded here: shared, and posted by its webhook.
	if n := len(rawKeys(t, e.db(), evOwnPrefix)); n != 1 {
		t.Errorf("%d events to share, want 1", n)
	}
	if n := len(rawKeys(t, e.db(), evHookPrefix)); n != 1 {
		t.Errorf("%d events for the webhook, want 1", n)
	}
	ev.ID = ""
	if _, _, err := e.log.RecordOnce(ev); err == nil {
		t.Error("RecordOnce without an id worked")
	}
}
