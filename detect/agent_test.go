package detect

import (
	"testing"
	"time"
)

func TestAgent(t *testing.T) {
	for _, act := range []Action{Log, Reject} {
		t.Run(act.String(), func(t *testing.T) {
			rep, ev := "", "agent event"
			if act == Reject {
				rep, ev = "REJECT agent repeat", "REJECT agent event"
			}
			d, c := newTest(t, Config{Agent: &AgentRule{Action: act}})
			v := run(t, d, c, []step{
				{at: 0, ua: "app/1"},
				{at: time.Second, ua: "app/1"},
				{at: 2 * time.Second, ua: "curl/8.5.0", want: ev},
				{at: 3 * time.Second, ua: "app/1"}, // the first one still passes
				{at: 4 * time.Second, ua: "curl/8.5.0", want: rep},
				{at: 5 * time.Second, ua: "other/2", want: rep},
				{at: 62 * time.Second, ua: "curl/8.5.0", want: ev}, // a minute after the event
				{at: 63 * time.Second, ua: "curl/8.5.0", token: "tok2"},
				{at: 64 * time.Second, ua: "app/1", token: "tok2", want: ev},
			})
			if got := v[2].Findings[0].Detail; got != "User-Agent changed" {
				t.Errorf("detail %q", got)
			}
		})
	}
}

// An empty User-Agent is one like any other.
func TestAgentEmpty(t *testing.T) {
	d, c := newTest(t, Config{Agent: &AgentRule{}})
	c.set(0)
	r := req("tok", "203.0.113.5", "")
	for range 3 {
		if v := d.Observe(r); v.Findings != nil {
			t.Fatalf("same empty User-Agent fired: %+v", v)
		}
	}
	r.UserAgent = "x"
	if v := d.Observe(r); summary(v) != "agent event" {
		t.Fatalf("got %q", summary(v))
	}
}

func TestBinding(t *testing.T) {
	d, c := newTest(t, Config{Binding: &BindingRule{Action: Reject}, Agent: &AgentRule{}})
	r := req("tok", "203.0.113.5", "app/1")
	for i, tc := range []struct {
		at      time.Duration
		binding bool
		want    string
	}{
		{0, false, ""},
		{time.Second, true, "REJECT binding event"},
		{2 * time.Second, true, "REJECT binding repeat"},
		{3 * time.Second, false, ""}, // Observe runs no binding rule
		{61 * time.Second, true, "REJECT binding event"},
	} {
		c.set(tc.at)
		var v Verdict
		if tc.binding {
			v = d.ObserveBinding(r)
		} else {
			v = d.Observe(r)
		}
		if got := summary(v); got != tc.want {
			t.Errorf("step %d: got %q, want %q", i, got, tc.want)
		}
	}
	if d.Tracked() != 1 {
		t.Errorf("tracked %d, want 1: binding and agent share the token's state", d.Tracked())
	}

	// Without the rule, ObserveBinding reports nothing.
	d, _ = newTest(t, Config{Agent: &AgentRule{}})
	if v := d.ObserveBinding(r); v.Findings != nil || v.Reject {
		t.Errorf("no binding rule: %+v", v)
	}
}

// A token first seen without its proof gets its User-Agent from its first
// Observe, and its rate state is fresh.
func TestBindingBeforeObserve(t *testing.T) {
	d, c := newTest(t, Config{Binding: &BindingRule{}, Agent: &AgentRule{}, Rate: &RateRule{Count: 1, Window: time.Minute}})
	c.set(0)
	d.ObserveBinding(req("tok", "203.0.113.5", "thief/1"))
	run(t, d, c, []step{
		{at: time.Second, ua: "app/1"},
		{at: 2 * time.Second, ua: "app/1", want: "rate event"},
		{at: 3 * time.Second, ua: "thief/1", want: "agent event"},
	})
}
