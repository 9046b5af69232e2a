package detect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/jwtguard/caddy-jwtguard/detect/detecttest"
)

func placeOf(c detecttest.City) *Place {
	return &Place{Lat: c.Lat, Lon: c.Lon, Radius: float64(c.Radius), Country: c.Country, City: c.Name}
}

// sighting is a use seen by another node at t0+at.
func sighting(token, ip string, at time.Duration, place *Place, fired ...string) *Sighting {
	return &Sighting{Request: *req(token, ip, "other/1"), At: t0.Add(at), Place: place, Fired: fired}
}

// NewNetwork is set for a network the token's state lacks, once: not for
// a network it holds, nor for a repeat within a rule's quiet period.
func TestNewNetworkIsReportedOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ips  []string
		want []bool
	}{
		{"networks", Config{Networks: &NetworksRule{Count: 2, Window: time.Hour, Action: Reject}},
			[]string{"203.0.113.5", "203.0.113.9", "198.51.100.5", "203.0.113.5", "192.0.2.5", "192.0.2.5", "198.51.100.7"},
			[]bool{true, false, true, false, true, false, false}},
		{"networks, log", Config{Networks: &NetworksRule{Count: 1, Window: time.Hour}},
			[]string{"203.0.113.5", "198.51.100.5", "198.51.100.5", "198.51.100.5"},
			[]bool{true, true, false, false}},
		{"travel", Config{Travel: &TravelRule{KMH: 1000, Action: Reject}},
			[]string{"203.0.113.5", "203.0.113.6", "198.51.100.5", "198.51.100.5", "203.0.113.5", "192.0.2.5", "203.0.113.5"},
			[]bool{true, false, true, false, false, true, true}},
		{"rate and agent only", Config{Rate: &RateRule{Count: 1, Window: time.Hour}, Agent: &AgentRule{}},
			[]string{"203.0.113.5", "198.51.100.5"},
			[]bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, on := range []bool{true, false} {
				tc.cfg.Sightings = on
				tc.cfg.Geo = openGeo(t, nil)
				d, c := newTest(t, tc.cfg)
				for i, ip := range tc.ips {
					c.set(time.Duration(i) * time.Second)
					v := d.Observe(req("tok", ip, "app/1"))
					if want := tc.want[i] && on; v.NewNetwork != want {
						t.Errorf("sightings %v, request %d from %s: NewNetwork %v, want %v (%s)", on, i, ip, v.NewNetwork, want, summary(v))
					}
				}
			}
		})
	}
}

func TestRemoteTravelFires(t *testing.T) {
	paris, tokyo := placeOf(detecttest.Paris), placeOf(detecttest.Tokyo)
	for _, tc := range []struct {
		name   string
		play   func(d *Detector, c *fakeClock) Verdict
		want   string
		detail string
	}{
		{"used here in Paris, seen in Tokyo 40s later", func(d *Detector, c *fakeClock) Verdict {
			d.Observe(req("tok", "203.0.113.7", "app/1"))
			c.set(41 * time.Second)
			return d.ObserveRemote(sighting("tok", "198.51.100.7", 40*time.Second, tokyo))
		}, "travel event", "Paris, FR -> Tokyo, JP: 9712 km in 40s"},
		{"seen in Paris, used here in Tokyo", func(d *Detector, c *fakeClock) Verdict {
			c.set(time.Second)
			d.ObserveRemote(sighting("tok", "203.0.113.7", 0, paris))
			c.set(40 * time.Second)
			return d.Observe(req("tok", "198.51.100.7", "app/1"))
		}, "REJECT travel event", "Paris, FR -> Tokyo, JP: 9712 km in 40s"},
		{"a place not sent is looked up here", func(d *Detector, c *fakeClock) Verdict {
			d.Observe(req("tok", "203.0.113.7", "app/1"))
			c.set(time.Minute)
			return d.ObserveRemote(sighting("tok", "198.51.100.7", time.Minute, nil))
		}, "travel event", "Paris, FR -> Tokyo, JP: 9712 km in 1m0s"},
		{"Tokyo seen 30m before Paris here, arriving late", func(d *Detector, c *fakeClock) Verdict {
			c.set(time.Hour)
			d.Observe(req("tok", "203.0.113.7", "app/1"))
			c.set(time.Hour + time.Minute)
			return d.ObserveRemote(sighting("tok", "198.51.100.7", 30*time.Minute, tokyo))
		}, "travel event", "Tokyo, JP -> Paris, FR: 9712 km in 30m0s"},
		{"Tokyo seen 12h before Paris here, arriving late: a possible journey", func(d *Detector, c *fakeClock) Verdict {
			c.set(12 * time.Hour)
			d.Observe(req("tok", "203.0.113.7", "app/1"))
			c.set(12*time.Hour + time.Minute)
			d.ObserveRemote(sighting("tok", "198.51.100.7", 0, tokyo))
			// Paris stays the reference: Tokyo 2 minutes after it is too fast.
			c.set(12*time.Hour + 2*time.Minute)
			return d.Observe(req("tok", "198.51.100.7", "app/1"))
		}, "REJECT travel event", "Paris, FR -> Tokyo, JP: 9712 km in 2m0s"},
		{"fired where it was seen: quiet here, refused as a repeat", func(d *Detector, c *fakeClock) Verdict {
			d.Observe(req("tok", "203.0.113.7", "app/1"))
			c.set(41 * time.Second)
			if v := d.ObserveRemote(sighting("tok", "198.51.100.7", 40*time.Second, tokyo, "travel")); v.Findings != nil {
				return v
			}
			c.set(50 * time.Second)
			return d.Observe(req("tok", "198.51.100.7", "app/1"))
		}, "REJECT travel repeat", ""},
		{"a trusted address is not taken", func(d *Detector, c *fakeClock) Verdict {
			d.Observe(req("tok", "203.0.113.7", "app/1"))
			c.set(41 * time.Second)
			return d.ObserveRemote(sighting("tok", "198.51.100.200", 40*time.Second, tokyo))
		}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, c := newTest(t, Config{
				Travel: &TravelRule{KMH: 1000, Action: Reject}, Geo: openGeo(t, nil),
				Trust: []netip.Prefix{netip.MustParsePrefix("198.51.100.200/32")},
			})
			v := tc.play(d, c)
			if got := summary(v); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if tc.detail != "" && v.Findings[0].Detail != tc.detail {
				t.Errorf("detail %q, want %q", v.Findings[0].Detail, tc.detail)
			}
		})
	}
}

func TestRemoteNetworks(t *testing.T) {
	d, c := newTest(t, Config{
		Networks: &NetworksRule{Count: 2, Window: time.Hour, Action: Reject},
		Rate:     &RateRule{Count: 1, Window: time.Minute},
	})
	c.set(time.Second)
	if v := d.ObserveRemote(sighting("tok", "203.0.113.5", 0, nil)); v.Findings != nil {
		t.Fatalf("first network: %s", summary(v))
	}
	c.set(2 * time.Minute)
	// Not counted by rate: one request here in a minute.
	if v := d.Observe(req("tok", "198.51.100.5", "app/1")); v.Findings != nil {
		t.Fatalf("second network, here: %s", summary(v))
	}
	c.set(3 * time.Minute)
	v := d.ObserveRemote(sighting("tok", "192.0.2.5", 3*time.Minute, nil))
	if got := summary(v); got != "networks event" {
		t.Fatalf("third network, seen elsewhere: %q", got)
	}
	if want := "3 networks in 1h0m0s: 203.0.113.0/24, 198.51.100.0/24, 192.0.2.0/24"; v.Findings[0].Detail != want {
		t.Errorf("detail %q, want %q", v.Findings[0].Detail, want)
	}
	// With reject, the far network is refused here from now on.
	c.set(4 * time.Minute)
	if got := summary(d.Observe(req("tok", "192.0.2.5", "app/1"))); got != "REJECT networks repeat" {
		t.Errorf("the third network's request here: %q", got)
	}

	// A sighting a whole window older than the token's latest use shares
	// no window with it.
	d2, c2 := newTest(t, Config{Networks: &NetworksRule{Count: 1, Window: time.Hour}})
	c2.set(2 * time.Hour)
	d2.Observe(req("tok", "203.0.113.5", "app/1"))
	if v := d2.ObserveRemote(sighting("tok", "198.51.100.5", 0, nil)); v.Findings != nil {
		t.Errorf("a sighting two hours old: %s", summary(v))
	}
	// One a little late still counts.
	if v := d2.ObserveRemote(sighting("tok", "198.51.100.5", 2*time.Hour-time.Minute, nil)); summary(v) != "networks event" {
		t.Errorf("a sighting a minute old: %q", summary(v))
	}
}

// A remote sighting moves the token's last use, which rate reads to drop a
// window gone idle; it must age rate's state itself, or uses eight
// windows old come back as current (its clock is 16 bits).
func TestRemoteSightingsKeepRateAged(t *testing.T) {
	d, c := newTest(t, Config{
		Rate:     &RateRule{Count: 2, Window: time.Minute},
		Networks: &NetworksRule{Count: 16, Window: time.Minute},
	})
	d.Observe(req("tok", "203.0.113.5", "app/1"))
	c.set(100 * time.Millisecond)
	d.Observe(req("tok", "203.0.113.5", "app/1"))
	for at := 50 * time.Second; at < 8*time.Minute; at += 50 * time.Second {
		c.set(at)
		d.ObserveRemote(sighting("tok", "198.51.100.5", at, nil))
	}
	c.set(8*time.Minute + 500*time.Millisecond)
	if v := d.Observe(req("tok", "203.0.113.5", "app/1")); v.Findings != nil {
		t.Errorf("the first request in eight minutes: %s", summary(v))
	}
}

func TestRemoteKeepsTheTokenTracked(t *testing.T) {
	d, c := newTest(t, Config{Networks: &NetworksRule{Count: 1, Window: time.Minute}})
	r := sighting("tok", "203.0.113.5", 0, nil)
	r.Expires = t0.Add(time.Hour)
	d.ObserveRemote(r)
	if d.Tracked() != 1 {
		t.Fatalf("tracked %d after a sighting", d.Tracked())
	}
	c.set(30 * time.Second)
	d.Sweep()
	if d.Tracked() != 1 {
		t.Fatalf("swept within the window")
	}
	c.set(2 * time.Hour)
	d.Sweep()
	if d.Tracked() != 0 {
		t.Fatalf("tracked %d past the window and the expiry", d.Tracked())
	}
	// Rules that take no sightings take nothing.
	d2, _ := newTest(t, Config{Rate: &RateRule{Count: 1, Window: time.Minute}})
	if v := d2.ObserveRemote(r); v.Findings != nil || d2.Tracked() != 0 {
		t.Errorf("rate only: %s, tracked %d", summary(v), d2.Tracked())
	}
}
