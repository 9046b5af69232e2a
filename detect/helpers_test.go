package detect

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is on a minute, an hour and a day, so surge buckets start there.
var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// fakeClock is safe for concurrent reads.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time       { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) add(d time.Duration)  { c.ns.Add(int64(d)) }
func (c *fakeClock) set(d time.Duration)  { c.ns.Store(t0.Add(d).UnixNano()) }
func (c *fakeClock) since() time.Duration { return time.Duration(c.ns.Load() - t0.UnixNano()) }

func newTest(t testing.TB, cfg Config) (*Detector, *fakeClock) {
	t.Helper()
	c := newClock()
	cfg.Now = c.Now
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, c
}

func req(token, ip, ua string) *Request {
	r := &Request{TokenID: token, Issuer: "https://idp.example", Subject: "alice", UserAgent: ua}
	if ip != "" {
		r.ClientIP = netip.MustParseAddr(ip)
	}
	return r
}

// summary renders a verdict for tables: "" when nothing fired, else
// "REJECT " when refused, then each finding as "<rule> event" or
// "<rule> repeat".
func summary(v Verdict) string {
	var b strings.Builder
	if v.Reject {
		b.WriteString("REJECT ")
	}
	for i, f := range v.Findings {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.Rule)
		if f.NewEvent {
			b.WriteString(" event")
		} else {
			b.WriteString(" repeat")
		}
	}
	return b.String()
}

// step is one request of a script: at is the time since t0.
type step struct {
	at    time.Duration
	token string // default "tok"
	ip    string // default 203.0.113.5
	ua    string // default "app/1"
	want  string // summary of the verdict
}

// run plays steps and checks each verdict; it returns the verdicts.
func run(t *testing.T, d *Detector, c *fakeClock, steps []step) []Verdict {
	t.Helper()
	var out []Verdict
	for i, s := range steps {
		c.set(s.at)
		tok, ip, ua := s.token, s.ip, s.ua
		if tok == "" {
			tok = "tok"
		}
		if ip == "" {
			ip = "203.0.113.5"
		}
		if ua == "" {
			ua = "app/1"
		}
		v := d.Observe(req(tok, ip, ua))
		if got := summary(v); got != s.want {
			t.Errorf("step %d (at %v, %s from %s, %q): got %q, want %q", i, s.at, tok, ip, ua, got, s.want)
		}
		if (v.Findings == nil) != (s.want == "") {
			t.Errorf("step %d: Findings nil = %v", i, v.Findings == nil)
		}
		out = append(out, v)
	}
	return out
}

// every makes n steps from start, every interval apart.
func every(start, interval time.Duration, n int, want string) []step {
	s := make([]step, n)
	for i := range s {
		s[i] = step{at: start + time.Duration(i)*interval, want: want}
	}
	return s
}

func cat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
