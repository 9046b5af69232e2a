// Package detecttest builds small geoip databases for tests of detect and
// of the handler that uses it: MaxMind DB files in the GeoLite2-City
// layout, with places on the documentation address ranges.
package detecttest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// City is one network of a test database. A City without coordinates
// (Lat and Lon 0) has only a country, as some real records do.
type City struct {
	Network string // CIDR
	Name    string // English city name
	Country string // ISO code
	Lat     float64
	Lon     float64
	Radius  uint16 // accuracy radius, km
}

// The places of Cities. Paris and Versailles are 18 km apart, inside their
// accuracy radii; Paris and Tokyo 9712 km.
var (
	Paris       = City{"203.0.113.0/24", "Paris", "FR", 48.8566, 2.3522, 20}
	Versailles  = City{"192.0.2.0/24", "Versailles", "FR", 48.8049, 2.1204, 20}
	Tokyo       = City{"198.51.100.0/24", "Tokyo", "JP", 35.6762, 139.6503, 20}
	Paris6      = City{"2001:db8:1::/48", "Paris", "FR", 48.8566, 2.3522, 20}
	Versailles6 = City{"2001:db8:2::/48", "Versailles", "FR", 48.8049, 2.1204, 20}
	Tokyo6      = City{"2001:db8:3::/48", "Tokyo", "JP", 35.6762, 139.6503, 20}
	CountryOnly = City{Network: "2001:db8:4::/48", Country: "DE"}
)

// Cities is the standard test database. Anything else, such as 10.0.0.0/8
// or 2001:db8:ff::/48, is not in it.
var Cities = []City{Paris, Versailles, Tokyo, Paris6, Versailles6, Tokyo6, CountryOnly}

// WriteDB writes cities as a GeoLite2-City database at path.
func WriteDB(path string, cities []City) error {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: "GeoLite2-City",
		// The documentation ranges are reserved; real databases leave
		// them out.
		IncludeReservedNetworks: true,
		RecordSize:              24,
	})
	if err != nil {
		return err
	}
	for _, c := range cities {
		_, n, err := net.ParseCIDR(c.Network)
		if err != nil {
			return err
		}
		rec := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(c.Country)}}
		if c.Name != "" {
			rec["city"] = mmdbtype.Map{"names": mmdbtype.Map{
				"en": mmdbtype.String(c.Name),
				"fr": mmdbtype.String(c.Name + " (fr)"), // a language the reader must skip
			}}
		}
		if c.Lat != 0 || c.Lon != 0 {
			rec["location"] = mmdbtype.Map{
				"latitude":        mmdbtype.Float64(c.Lat),
				"longitude":       mmdbtype.Float64(c.Lon),
				"accuracy_radius": mmdbtype.Uint16(c.Radius),
			}
		}
		if err := tree.Insert(n, rec); err != nil {
			return fmt.Errorf("inserting %s: %w", c.Network, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// DB writes Cities to a file in t's temporary directory and returns its
// path.
func DB(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "city.mmdb")
	if err := WriteDB(path, Cities); err != nil {
		t.Fatal(err)
	}
	return path
}
