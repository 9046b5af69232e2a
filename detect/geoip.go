package detect

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Place is where a client address is, as far as a geoip database knows.
type Place struct {
	Lat, Lon float64
	Radius   float64 // accuracy radius, km; 0 when the database gives none
	Country  string  // ISO 3166-1 alpha-2 code, e.g. FR
	City     string  // English name
}

// String is "City, CC", or as much of it as is known.
func (p Place) String() string {
	switch {
	case p.City != "" && p.Country != "":
		return p.City + ", " + p.Country
	case p.City != "":
		return p.City
	case p.Country != "":
		return p.Country
	}
	return fmt.Sprintf("%.2f,%.2f", p.Lat, p.Lon)
}

// Locator places client addresses. ok is false for addresses it does not
// locate (private ranges, unknown ones). The detector calls it with a lock
// held and only when a token's network changes; it must answer from memory.
type Locator interface {
	Locate(netip.Addr) (p Place, ok bool)
}

// GeoIP is a Locator over a MaxMind DB file in the GeoLite2-City layout
// (GeoLite2-City, GeoIP2-City, DB-IP City Lite). Safe for concurrent use.
type GeoIP struct {
	db *maxminddb.Reader
}

// OpenGeoIP reads a database into memory: a memory-mapped file could make a
// lookup wait on the disk.
func OpenGeoIP(path string) (*GeoIP, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading geoip database: %w", err)
	}
	db, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("opening geoip database %s: %w", path, err)
	}
	return &GeoIP{db: db}, nil
}

// geoRecord is the part of a City record a Place needs; the decoder skips
// the rest.
type geoRecord struct {
	City struct {
		Names struct {
			EN string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"city"`
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Location struct {
		Lat    float64 `maxminddb:"latitude"`
		Lon    float64 `maxminddb:"longitude"`
		Radius uint16  `maxminddb:"accuracy_radius"`
	} `maxminddb:"location"`
}

// Locate looks a up. A record without coordinates (only a country, say)
// does not locate it: travel needs a distance.
func (g *GeoIP) Locate(a netip.Addr) (Place, bool) {
	res := g.db.Lookup(a.Unmap())
	if !res.Found() {
		return Place{}, false
	}
	var rec geoRecord
	if err := res.Decode(&rec); err != nil {
		return Place{}, false
	}
	l := rec.Location
	// 0,0 is what a record without a location decodes to; nobody lives there.
	if l.Lat == 0 && l.Lon == 0 {
		return Place{}, false
	}
	return Place{
		Lat: l.Lat, Lon: l.Lon, Radius: float64(l.Radius),
		Country: rec.Country.ISOCode, City: rec.City.Names.EN,
	}, true
}

// Close releases the database; Locate must not be called after it.
func (g *GeoIP) Close() error { return g.db.Close() }

var _ Locator = (*GeoIP)(nil)
