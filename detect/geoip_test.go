package detect

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/jwtguard/caddy-jwtguard/detect/detecttest"
)

func TestGeoIP(t *testing.T) {
	g := openGeo(t, nil)
	for _, tc := range []struct {
		ip   string
		want Place
		ok   bool
	}{
		{"203.0.113.7", Place{Lat: 48.8566, Lon: 2.3522, Radius: 20, Country: "FR", City: "Paris"}, true},
		{"::ffff:203.0.113.7", Place{Lat: 48.8566, Lon: 2.3522, Radius: 20, Country: "FR", City: "Paris"}, true},
		{"192.0.2.200", Place{Lat: 48.8049, Lon: 2.1204, Radius: 20, Country: "FR", City: "Versailles"}, true},
		{"198.51.100.7", Place{Lat: 35.6762, Lon: 139.6503, Radius: 20, Country: "JP", City: "Tokyo"}, true},
		{"2001:db8:3:ffff::1", Place{Lat: 35.6762, Lon: 139.6503, Radius: 20, Country: "JP", City: "Tokyo"}, true},
		{"2001:db8:4::1", Place{}, false}, // a country, no coordinates
		{"10.0.0.1", Place{}, false},
		{"2001:db8:ff::1", Place{}, false},
		{"203.0.114.1", Place{}, false},
	} {
		got, ok := g.Locate(netip.MustParseAddr(tc.ip))
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: %+v %v, want %+v %v", tc.ip, got, ok, tc.want, tc.ok)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.Locate(netip.MustParseAddr("203.0.113.7")); ok {
		t.Error("located after Close")
	}
}

func TestOpenGeoIPErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenGeoIP(filepath.Join(dir, "missing.mmdb")); err == nil {
		t.Error("missing file opened")
	}
	bad := filepath.Join(dir, "bad.mmdb")
	if err := os.WriteFile(bad, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenGeoIP(bad); err == nil {
		t.Error("garbage opened")
	}
}

func TestPlaceString(t *testing.T) {
	for _, tc := range []struct {
		p    Place
		want string
	}{
		{Place{City: "Paris", Country: "FR"}, "Paris, FR"},
		{Place{Country: "FR"}, "FR"},
		{Place{City: "Paris"}, "Paris"},
		{Place{Lat: 48.8566, Lon: 2.3522}, "48.86,2.35"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.p, got, tc.want)
		}
	}
}

// The helper's databases are what the handler's tests use too: check the
// standard one names what it says.
func TestDetecttestCities(t *testing.T) {
	g := openGeo(t, nil)
	for _, c := range detecttest.Cities {
		p := netip.MustParsePrefix(c.Network)
		got, ok := g.Locate(p.Addr().Next())
		if ok != (c.Lat != 0) || got.City != c.Name && ok {
			t.Errorf("%s: %+v %v", c.Network, got, ok)
		}
	}
}

func BenchmarkLocate(b *testing.B) {
	g := openGeo(b, nil)
	a := netip.MustParseAddr("198.51.100.7")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := g.Locate(a); !ok {
			b.Fatal("not located")
		}
	}
}
