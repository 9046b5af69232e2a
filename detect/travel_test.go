package detect

import (
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jwtguard/caddy-jwtguard/detect/detecttest"
)

// countingLocator counts lookups.
type countingLocator struct {
	Locator
	n atomic.Int64
}

func (l *countingLocator) Locate(a netip.Addr) (Place, bool) {
	l.n.Add(1)
	return l.Locator.Locate(a)
}

func openGeo(t testing.TB, cities []detecttest.City) *GeoIP {
	t.Helper()
	path := detecttest.DB(t)
	if cities != nil {
		path = filepath.Join(t.TempDir(), "custom.mmdb")
		if err := detecttest.WriteDB(path, cities); err != nil {
			t.Fatal(err)
		}
	}
	g, err := OpenGeoIP(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func TestTravelParisToTokyo(t *testing.T) {
	for _, ips := range [][2]string{
		{"203.0.113.7", "198.51.100.7"},
		{"2001:db8:1::7", "2001:db8:3::7"},
		{"::ffff:203.0.113.7", "198.51.100.7"},
	} {
		t.Run(ips[0], func(t *testing.T) {
			d, c := newTest(t, Config{Travel: &TravelRule{KMH: 900}, Geo: openGeo(t, nil)})
			v := run(t, d, c, []step{
				{at: 0, ip: ips[0]},
				{at: 40 * time.Second, ip: ips[1], want: "travel event"},
				// Paris again, 11 hours on; Tokyo an hour after that is
				// too soon, though 12 hours after the first use would not be.
				{at: 11 * time.Hour, ip: ips[0]},
				{at: 12 * time.Hour, ip: ips[1], want: "travel event"},
			})
			want := "Paris, FR -> Tokyo, JP: 9712 km in 40s"
			if got := v[1].Findings[0].Detail; got != want {
				t.Errorf("detail %q, want %q", got, want)
			}
		})
	}
}

// Journeys that must stay quiet.
func TestTravelFalsePositives(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"Paris to Versailles, inside the accuracy radii", []step{
			{at: 0, ip: "203.0.113.7"}, {at: time.Second, ip: "192.0.2.7"}, {at: 2 * time.Second, ip: "203.0.113.7"}}},
		{"Paris to Tokyo in 12 hours", []step{
			{at: 0, ip: "203.0.113.7"}, {at: 12 * time.Hour, ip: "198.51.100.7"}}},
		{"an address the database does not know", []step{
			{at: 0, ip: "203.0.113.7"}, {at: time.Second, ip: "10.1.2.3"}, {at: 2 * time.Second, ip: "2001:db8:ff::1"}}},
		{"a record with a country only", []step{
			{at: 0, ip: "203.0.113.7"}, {at: time.Second, ip: "2001:db8:4::1"}}},
		{"the same network", []step{
			{at: 0, ip: "203.0.113.7"}, {at: time.Second, ip: "203.0.113.200"}}},
		{"two tokens", []step{
			{at: 0, ip: "203.0.113.7", token: "a"}, {at: time.Second, ip: "198.51.100.7", token: "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, c := newTest(t, Config{Travel: &TravelRule{KMH: 900}, Geo: openGeo(t, nil)})
			run(t, d, c, tc.steps)
		})
	}
}

// The radii are what keeps Paris to Versailles quiet: without them 18 km
// in a minute is faster than 900 km/h. And the time is at least a minute:
// 18 km in 10 s is 6450 km/h, in a minute 1075.
func TestTravelRadiusAndMinimumTime(t *testing.T) {
	paris, versailles := detecttest.Paris, detecttest.Versailles
	paris.Radius, versailles.Radius = 0, 0
	geo := openGeo(t, []detecttest.City{paris, versailles})
	for _, tc := range []struct {
		kmh  float64
		want string
	}{{900, "travel event"}, {1200, ""}} {
		d, c := newTest(t, Config{Travel: &TravelRule{KMH: tc.kmh}, Geo: geo})
		run(t, d, c, []step{{at: 0, ip: "203.0.113.7"}, {at: 10 * time.Second, ip: "192.0.2.7", want: tc.want}})
	}
}

// A place too far does not become the reference: with reject, uses from it
// stay refused while the near place passes.
func TestTravelRejectRepeats(t *testing.T) {
	d, c := newTest(t, Config{Travel: &TravelRule{KMH: 900, Action: Reject}, Geo: openGeo(t, nil)})
	run(t, d, c, []step{
		{at: 0, ip: "203.0.113.7"},
		{at: 10 * time.Second, ip: "10.0.0.1"}, // unknown: skipped, Paris stays the reference
		{at: 40 * time.Second, ip: "198.51.100.7", want: "REJECT travel event"},
		{at: 50 * time.Second, ip: "198.51.100.8", want: "REJECT travel repeat"},
		{at: 60 * time.Second, ip: "203.0.113.7"},
		{at: 70 * time.Second, ip: "198.51.100.7", want: "REJECT travel repeat"},
		{at: 100 * time.Second, ip: "198.51.100.7", want: "REJECT travel event"}, // quiet over; Paris seen at 60s
		{at: 12 * time.Hour, ip: "198.51.100.7"},                                 // a flight's time after Paris
		{at: 12*time.Hour + time.Minute, ip: "203.0.113.7", want: "REJECT travel event"},
	})
}

// The database is read when the token's network changes, not per request.
func TestTravelLooksUpOnNetworkChange(t *testing.T) {
	geo := &countingLocator{Locator: openGeo(t, nil)}
	d, c := newTest(t, Config{Travel: &TravelRule{KMH: 900}, Geo: geo})
	for i, tc := range []struct {
		ip      string
		lookups int64
	}{
		{"203.0.113.7", 1},
		{"203.0.113.8", 1},
		{"203.0.113.9", 1},
		{"192.0.2.7", 2}, // Versailles becomes the reference
		{"192.0.2.8", 2},
		{"203.0.113.7", 3},
		{"10.0.0.1", 4},
		{"10.0.0.2", 4},
		{"203.0.113.7", 4}, // the reference's network
	} {
		c.set(time.Duration(i) * time.Hour)
		if v := d.Observe(req("tok", tc.ip, "a")); v.Findings != nil {
			t.Fatalf("%s fired: %+v", tc.ip, v.Findings)
		}
		if got := geo.n.Load(); got != tc.lookups {
			t.Fatalf("after %s: %d lookups, want %d", tc.ip, got, tc.lookups)
		}
	}
}

func TestHaversine(t *testing.T) {
	p, tk := detecttest.Paris, detecttest.Tokyo
	if km := haversine(p.Lat, p.Lon, tk.Lat, tk.Lon); km < 9711 || km > 9713 {
		t.Errorf("Paris-Tokyo %.1f km", km)
	}
	if km := haversine(p.Lat, p.Lon, p.Lat, p.Lon); km != 0 {
		t.Errorf("Paris-Paris %.1f km", km)
	}
	if km := haversine(0, 0, 0, 180); km < 20015 || km > 20016 {
		t.Errorf("antipodes %.1f km", km)
	}
}
