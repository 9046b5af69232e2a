package detect

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseAction(t *testing.T) {
	for _, a := range []Action{Log, Reject, Revoke, RevokeSubject} {
		got, err := ParseAction(a.String())
		if err != nil || got != a {
			t.Errorf("%v: %v, %v", a, got, err)
		}
	}
	if Log.String() != "log" || RevokeSubject.String() != "revoke_subject" {
		t.Errorf("names %q %q", Log, RevokeSubject)
	}
	for _, s := range []string{"", "Log", "revoke-subject", "block"} {
		if _, err := ParseAction(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
	if Log.Refuses() || !Reject.Refuses() || !RevokeSubject.Refuses() {
		t.Error("Refuses")
	}
}

func TestValidate(t *testing.T) {
	geo := staticLocator{}
	for _, tc := range []struct {
		cfg  Config
		want string // part of the error; "" valid
	}{
		{Config{}, ""},
		{Config{Rate: &RateRule{Count: 60, Window: time.Minute}, Surge: &SurgeRule{Factor: 10, Bucket: time.Minute},
			Networks: &NetworksRule{Count: 3, Window: 10 * time.Minute}, Travel: &TravelRule{KMH: 900}, Geo: geo,
			Agent: &AgentRule{Action: Reject}, Binding: &BindingRule{Action: RevokeSubject},
			NetworkPrefix4: 32, NetworkPrefix6: 64, Trust: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, MaxTracked: 5}, ""},
		{Config{Travel: &TravelRule{KMH: 900}}, "travel needs geoip"},
		{Config{Rate: &RateRule{Count: 60}}, "rate: window 0s is shorter than 1s"},
		{Config{Rate: &RateRule{Count: 60, Window: 500 * time.Millisecond}}, "rate: window 500ms"},
		{Config{Rate: &RateRule{Count: 0, Window: time.Minute}}, "rate: count 0 out of range"},
		{Config{Rate: &RateRule{Count: 6, Window: 400 * 24 * time.Hour}}, "rate: window 9600h0m0s is longer than a year"},
		{Config{Surge: &SurgeRule{Factor: 2, Bucket: MaxWindow + 1}}, "surge: bucket"},
		{Config{Rate: &RateRule{Count: 65536, Window: time.Minute}}, "rate: count 65536 out of range 1..65535"},
		{Config{Rate: &RateRule{Count: 6, Window: time.Minute, Action: 9}}, "rate: invalid action"},
		{Config{Networks: &NetworksRule{Count: 17, Window: time.Minute}}, "networks: count 17 out of range 1..16"},
		{Config{Networks: &NetworksRule{Count: 3}}, "networks: window 0s"},
		{Config{Surge: &SurgeRule{Factor: 1, Bucket: time.Minute}}, "surge: factor 1 must be a number greater than 1"},
		{Config{Surge: &SurgeRule{Factor: 0.5, Bucket: time.Minute}}, "surge: factor 0.5"},
		{Config{Surge: &SurgeRule{Factor: 2}}, "surge: bucket 0s"},
		{Config{Surge: &SurgeRule{Factor: 2, Bucket: time.Minute, Warmup: 61}}, "surge: warmup 61 out of range"},
		{Config{Surge: &SurgeRule{Factor: 2, Bucket: time.Minute, Min: -1}}, "surge: min -1"},
		{Config{Travel: &TravelRule{KMH: 0}, Geo: geo}, "travel: speed 0 km/h"},
		{Config{NetworkPrefix4: 33}, "IPv4 prefix /33 out of range"},
		{Config{NetworkPrefix4: -1}, "IPv4 prefix /-1"},
		{Config{NetworkPrefix6: 65}, "IPv6 prefix /65 out of range 1..64"},
		{Config{Trust: []netip.Prefix{{}}}, "trust: invalid prefix"},
		{Config{MaxTracked: -1}, "max_tracked -1"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("want error %q, got %v", tc.want, err)
		}
		if _, nerr := New(tc.cfg); (nerr == nil) != (err == nil) {
			t.Errorf("New and Validate disagree: %v, %v", nerr, err)
		}
	}
}

type staticLocator map[netip.Addr]Place

func (l staticLocator) Locate(a netip.Addr) (Place, bool) { p, ok := l[a]; return p, ok }

// Trusted addresses are never counted and never refused.
func TestTrust(t *testing.T) {
	d, c := newTest(t, Config{
		Rate:     &RateRule{Count: 1, Window: time.Hour, Action: Reject},
		Networks: &NetworksRule{Count: 1, Window: time.Hour, Action: Reject},
		Agent:    &AgentRule{Action: Reject},
		Surge:    &SurgeRule{Factor: 2, Bucket: time.Minute, Min: 1, Warmup: 1, Action: Reject},
		Trust: []netip.Prefix{netip.MustParsePrefix("::ffff:198.51.100.0/120"), netip.MustParsePrefix("2001:db8:9::/48"),
			netip.MustParsePrefix("192.0.2.77/32")},
	})
	steps := []step{{at: 0, ip: "198.51.100.1", ua: "health/1"}}
	for i := range 50 {
		ip := "198.51.100.9"
		if i%2 == 1 {
			ip = "::ffff:198.51.100.10"
		}
		if i%3 == 1 {
			ip = "2001:db8:9::1"
		}
		if i%5 == 1 {
			ip = "192.0.2.77"
		}
		steps = append(steps, step{at: time.Duration(i) * time.Second, ip: ip, ua: fmt.Sprint("probe/", i)})
	}
	steps = append(steps,
		step{at: time.Minute, ip: "203.0.113.5", ua: "app/1"}, // the first counted use
		step{at: time.Minute + time.Second, ip: "198.51.100.9", ua: "other/1"},
		step{at: time.Minute + 2*time.Second, ip: "192.0.2.1", ua: "other/1", want: "REJECT rate event, networks event, agent event"},
	)
	run(t, d, c, steps)
	if d.Tracked() != 1 {
		t.Errorf("tracked %d: trusted uses made state", d.Tracked())
	}
}

// Several rules can fire on one request; the verdict says which and the
// strongest action.
func TestSeveralFindings(t *testing.T) {
	d, c := newTest(t, Config{
		Rate:     &RateRule{Count: 1, Window: time.Hour, Action: Revoke},
		Networks: &NetworksRule{Count: 1, Window: time.Hour},
		Agent:    &AgentRule{Action: RevokeSubject},
	})
	v := run(t, d, c, []step{
		{at: 0},
		{at: time.Second, ip: "192.0.2.1", ua: "x", want: "REJECT rate event, networks event, agent event"},
	})
	if got := v[1].Strongest(); got != RevokeSubject {
		t.Errorf("strongest %v", got)
	}
	if got := (Verdict{}).Strongest(); got != Log {
		t.Errorf("empty strongest %v", got)
	}
	if got := (Verdict{Findings: []Finding{{Action: Log}, {Action: Reject}}}).Strongest(); got != Reject {
		t.Errorf("strongest %v", got)
	}
}

// Nothing configured: nothing happens and nothing is kept.
func TestNoRules(t *testing.T) {
	d, c := newTest(t, Config{})
	run(t, d, c, every(0, time.Millisecond, 100, ""))
	if v := d.ObserveBinding(req("tok", "203.0.113.5", "a")); v.Findings != nil {
		t.Error(v)
	}
	d.Sweep()
	if d.Tracked() != 0 {
		t.Errorf("tracked %d", d.Tracked())
	}
}

// At most MaxTracked tokens; the least recently used is dropped, and its
// state with it.
func TestLRU(t *testing.T) {
	d, c := newTest(t, Config{Agent: &AgentRule{}, MaxTracked: 3})
	run(t, d, c, []step{
		{at: 0, token: "a", ua: "1"},
		{at: 1, token: "b", ua: "1"},
		{at: 2, token: "c", ua: "1"},
		{at: 3, token: "a", ua: "1"}, // b is now the least recently used
		{at: 4, token: "d", ua: "1"}, // drops b
		{at: 5, token: "a", ua: "2", want: "agent event"},
		{at: 6, token: "c", ua: "2", want: "agent event"},
		{at: 7, token: "d", ua: "2", want: "agent event"},
		{at: 8, token: "b", ua: "2"}, // forgotten: a first sight, dropping a
		{at: 9, token: "b", ua: "1", want: "agent event"},
		{at: 10, token: "a", ua: "3"},
	})
	if d.Tracked() != 3 {
		t.Errorf("tracked %d, want 3", d.Tracked())
	}
}

// With many shards the bound still holds exactly.
func TestMaxTrackedBound(t *testing.T) {
	for _, max := range []int{1, 7, 1000, 50000} {
		d, c := newTest(t, Config{Rate: &RateRule{Count: 5, Window: time.Minute}, MaxTracked: max})
		c.set(0)
		for i := range 2*max + 100 {
			d.Observe(req(fmt.Sprint("tok-", i), "203.0.113.5", "a"))
		}
		n := 0
		for i := range d.tokens.shards {
			s := &d.tokens.shards[i]
			n += s.live
			if s.used != s.live {
				t.Fatalf("shard %d: %d in the index, %d live", i, s.used, s.live)
			}
		}
		if n != max || d.Tracked() != max {
			t.Errorf("max %d: %d live, Tracked %d", max, n, d.Tracked())
		}
	}
}

func TestSweep(t *testing.T) {
	exp := t0.Add(time.Hour)
	observe := func(d *Detector, tok string, exp time.Time) {
		r := req(tok, "203.0.113.5", "a")
		r.Expires = exp
		d.Observe(r)
	}

	t.Run("windows only", func(t *testing.T) {
		d, c := newTest(t, Config{
			Rate:       &RateRule{Count: 1, Window: time.Minute},
			Networks:   &NetworksRule{Count: 1, Window: 10 * time.Minute},
			MaxTracked: 100,
		})
		c.set(0)
		observe(d, "old", time.Time{})
		observe(d, "old", time.Time{}) // fires: quiet until 1m
		c.set(5 * time.Minute)
		observe(d, "recent", time.Time{})
		c.set(10*time.Minute + time.Second)
		d.Sweep()
		if d.Tracked() != 1 {
			t.Fatalf("tracked %d, want 1", d.Tracked())
		}
		c.set(15*time.Minute + time.Second)
		d.Sweep()
		if d.Tracked() != 0 {
			t.Fatalf("tracked %d, want 0", d.Tracked())
		}
		// Freed slots are used again.
		for i := range 10 {
			observe(d, fmt.Sprint("new", i), time.Time{})
		}
		if d.Tracked() != 10 || len(d.tokens.shards[0].links) != 10 {
			t.Errorf("tracked %d, %d slots", d.Tracked(), len(d.tokens.shards[0].links))
		}
	})

	t.Run("agent keeps tokens until they expire", func(t *testing.T) {
		d, c := newTest(t, Config{Agent: &AgentRule{}, Rate: &RateRule{Count: 1, Window: time.Minute}})
		c.set(0)
		observe(d, "exp", exp)
		observe(d, "noexp", time.Time{})
		c.set(exp.Sub(t0) - time.Second)
		d.Sweep()
		if d.Tracked() != 2 {
			t.Fatalf("tracked %d, want 2", d.Tracked())
		}
		c.set(exp.Sub(t0))
		d.Sweep()
		if d.Tracked() != 1 {
			t.Fatalf("tracked %d, want 1", d.Tracked())
		}
		// The one left is "noexp": it still has its first User-Agent.
		if v := d.Observe(req("noexp", "203.0.113.5", "b")); summary(v) != "agent event" {
			t.Errorf("got %q", summary(v))
		}
	})

	t.Run("binding quiet period", func(t *testing.T) {
		d, c := newTest(t, Config{Binding: &BindingRule{Action: Reject}})
		c.set(0)
		d.ObserveBinding(req("tok", "203.0.113.5", "a"))
		c.set(59 * time.Second)
		d.Sweep()
		if v := d.ObserveBinding(req("tok", "203.0.113.5", "a")); summary(v) != "REJECT binding repeat" {
			t.Fatalf("got %q", summary(v))
		}
		c.set(61 * time.Second)
		d.Sweep()
		if d.Tracked() != 0 {
			t.Fatalf("tracked %d, want 0", d.Tracked())
		}
	})

	t.Run("subjects", func(t *testing.T) {
		d, c := newTest(t, Config{Surge: &SurgeRule{Factor: 2, Bucket: time.Hour}})
		c.set(0)
		observe(d, "tok", time.Time{})
		c.set(60*time.Hour - time.Second)
		d.Sweep()
		if n := live(d.subjects); n != 1 {
			t.Fatalf("%d subjects, want 1", n)
		}
		c.set(60 * time.Hour)
		d.Sweep()
		if n := live(d.subjects); n != 0 {
			t.Fatalf("%d subjects, want 0", n)
		}
	})
}

// Many goroutines on one token: every use is counted exactly once.
func TestConcurrentObserve(t *testing.T) {
	for _, count := range []int{10, 1000} {
		t.Run(fmt.Sprint(count), func(t *testing.T) {
			d, c := newTest(t, Config{
				Rate:       &RateRule{Count: count, Window: time.Hour, Action: Reject},
				Networks:   &NetworksRule{Count: 3, Window: time.Hour},
				Agent:      &AgentRule{},
				Surge:      &SurgeRule{Factor: 2, Bucket: time.Minute},
				MaxTracked: 64,
			})
			const workers, each = 8, 500
			var wg sync.WaitGroup
			refused := make([]int, workers)
			for w := range workers {
				wg.Go(func() {
					r := req("shared", "203.0.113.5", "app/1")
					other := req("", "203.0.113.5", "app/1")
					for i := range each {
						c.add(time.Microsecond)
						if d.Observe(r).Reject {
							refused[w]++
						}
						other.TokenID = fmt.Sprint("w", w, "-", i%20)
						d.Observe(other)
						if i%100 == 0 {
							d.Sweep()
							d.Tracked()
						}
					}
				})
			}
			wg.Wait()
			total := 0
			for _, n := range refused {
				total += n
			}
			if want := workers*each - count; total != want {
				t.Errorf("%d refused, want %d", total, want)
			}
		})
	}
}

func live(t *table) int {
	n := 0
	for i := range t.shards {
		n += t.shards[i].live
	}
	return n
}

// Uses that must stay quiet with every rule on at once.
func TestFalsePositives(t *testing.T) {
	geo := openGeo(t, nil)
	steady := func(perMinute int, minutes int) []step {
		return every(0, time.Minute/time.Duration(perMinute), perMinute*minutes, "")
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a steady user under the rate", steady(50, 30)},
		{"a steady user under the rate, surge warmed up", steady(5, 120)},
		{"two addresses in one /24", []step{{at: 0, ip: "203.0.113.5"}, {at: time.Second, ip: "203.0.113.250"}}},
		{"IPv6 addresses within one /56", []step{
			{at: 0, ip: "2001:db8:1:ff00::1"}, {at: time.Second, ip: "2001:db8:1:ff12:abcd::9"},
			{at: 2 * time.Second, ip: "2001:db8:1:ffff:ffff:ffff:ffff:ffff"}}},
		{"IPv4 and its IPv4-mapped form", []step{{at: 0, ip: "203.0.113.5"}, {at: time.Second, ip: "::ffff:203.0.113.5"}}},
		{"Paris to Versailles", []step{{at: 0, ip: "203.0.113.5"}, {at: 30 * time.Second, ip: "192.0.2.5"}}},
		{"an address the database does not know", []step{
			{at: 0, ip: "203.0.113.5"}, {at: time.Second, ip: "10.9.8.7"}, {at: 2 * time.Second, ip: "203.0.113.5"}}},
		// 200 requests in a fifth of a second from trusted Tokyo ranges,
		// each with a new User-Agent.
		{"a trusted range", append([]step{{at: 0, ip: "203.0.113.5"}}, trustedBurst(200)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, c := newTest(t, Config{
				Rate:     &RateRule{Count: 60, Window: time.Minute, Action: Reject},
				Surge:    &SurgeRule{Factor: 10, Bucket: time.Minute, Action: Reject},
				Networks: &NetworksRule{Count: 2, Window: 10 * time.Minute, Action: Reject},
				Travel:   &TravelRule{KMH: 900, Action: Reject},
				Agent:    &AgentRule{Action: Reject},
				Geo:      geo,
				Trust:    []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:3::/48")},
			})
			run(t, d, c, tc.steps)
		})
	}
}

func trustedBurst(n int) []step {
	s := make([]step, n)
	for i := range s {
		ip := "198.51.100.9"
		if i%2 == 1 {
			ip = "2001:db8:3::1"
		}
		s[i] = step{at: time.Second + time.Duration(i)*time.Millisecond, ip: ip, ua: fmt.Sprint("probe/", i)}
	}
	return s
}
