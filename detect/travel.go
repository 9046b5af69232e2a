package detect

import (
	"fmt"
	"math"
	"net/netip"
	"time"
)

// travel compares each located use of a token with its reference: the
// place of its last use that was not too far. A use too far away fires and
// does not become the reference, so with reject the far place stays refused
// while the near one passes; uses from the reference's network only move its
// time. The place of the latest other network is kept too, so the database
// is read only when the token's network changes.
type travel struct {
	cfg TravelRule
	geo Locator
}

// Words of the travel state.
const (
	tRefNet  = iota // reference network key
	tRefPos         // reference lat<<32 | lon, float32 bits
	tRefRad         // reference radius, float32 bits; bit 32: a reference exists
	tRefTime        // ns since the epoch
	tRefAddr        // 2 words: the reference address, to name its place in an event
	_
	tCurNet // the latest network looked up
	tCurPos
	tCurRad // bit 32: tCurNet is set; bit 33: it was located
	travelWords
)

const (
	travelSet     = 1 << 32
	travelLocated = 1 << 33
	minJourney    = int64(time.Minute)
	earthRadiusKM = 6371.0
)

func (r *travel) name() string   { return "travel" }
func (r *travel) action() Action { return r.cfg.Action }
func (r *travel) quiet() int64   { return int64(time.Minute) }
func (r *travel) words() int     { return travelWords }

func (r *travel) observe(st []uint64, o obs) bool {
	if !o.hasNet {
		return false
	}
	t := o.useTime()
	if st[tRefRad]&travelSet != 0 && st[tRefNet] == o.net {
		st[tRefTime] = uint64(max(int64(st[tRefTime]), t))
		return false
	}
	if st[tCurRad]&travelSet == 0 || st[tCurNet] != o.net {
		st[tCurNet] = o.net
		st[tCurPos], st[tCurRad] = 0, travelSet
		if p, ok := r.locate(o); ok {
			st[tCurPos] = packPos(p.Lat, p.Lon)
			st[tCurRad] |= travelLocated | uint64(math.Float32bits(float32(p.Radius)))
		}
	}
	if st[tCurRad]&travelLocated == 0 {
		return false // unknown places are skipped
	}
	if st[tRefRad]&travelSet != 0 {
		if _, speed := r.journey(st, t); speed > r.cfg.KMH {
			return true
		}
		if t < int64(st[tRefTime]) {
			return false // a use seen late: the reference stays the latest
		}
	}
	st[tRefNet] = o.net
	st[tRefPos] = st[tCurPos]
	st[tRefRad] = st[tCurRad]&math.MaxUint32 | travelSet
	st[tRefTime] = uint64(t)
	a := o.addr.As16()
	st[tRefAddr] = beUint64(a[:8])
	st[tRefAddr+1] = beUint64(a[8:])
	return false
}

func (r *travel) holds(st []uint64, o obs) bool {
	return !o.hasNet ||
		st[tRefRad]&travelSet != 0 && st[tRefNet] == o.net ||
		st[tCurRad]&travelSet != 0 && st[tCurNet] == o.net
}

// locate places the use: where the node that saw it placed it, or here.
func (r *travel) locate(o obs) (Place, bool) {
	if o.place != nil {
		return *o.place, true
	}
	return r.geo.Locate(o.addr)
}

// useTime is when the use happened: now, or a sighting's time.
func (o *obs) useTime() int64 {
	if o.remote {
		return o.at
	}
	return o.now
}

// journey is the distance between the reference and the current place,
// and the speed it takes: the distance less both accuracy radii, over the
// time between the uses at t and the reference (at least a minute).
func (r *travel) journey(st []uint64, t int64) (km, kmh float64) {
	lat1, lon1 := unpackPos(st[tRefPos])
	lat2, lon2 := unpackPos(st[tCurPos])
	km = haversine(lat1, lon1, lat2, lon2)
	rad := float64(math.Float32frombits(uint32(st[tRefRad]))) +
		float64(math.Float32frombits(uint32(st[tCurRad])))
	dt := max(absDiff(t, int64(st[tRefTime])), minJourney)
	return km, max(0, km-rad) / (float64(dt) / float64(time.Hour))
}

func absDiff(a, b int64) int64 {
	if a < b {
		return b - a
	}
	return a - b
}

func (r *travel) detail(st []uint64, o obs) string {
	var a [16]byte
	bePutUint64(a[:8], st[tRefAddr])
	bePutUint64(a[8:], st[tRefAddr+1])
	from, _ := r.geo.Locate(netip.AddrFrom16(a).Unmap())
	to, _ := r.locate(o)
	t := o.useTime()
	if t < int64(st[tRefTime]) {
		from, to = to, from // a sighting that arrived late was the first use
	}
	km, _ := r.journey(st, t)
	dt := time.Duration(absDiff(t, int64(st[tRefTime]))).Round(time.Second)
	return fmt.Sprintf("%v -> %v: %.0f km in %v", from, to, km, dt)
}

func packPos(lat, lon float64) uint64 {
	return uint64(math.Float32bits(float32(lat)))<<32 | uint64(math.Float32bits(float32(lon)))
}

func unpackPos(v uint64) (lat, lon float64) {
	return float64(math.Float32frombits(uint32(v >> 32))), float64(math.Float32frombits(uint32(v)))
}

// haversine is the great-circle distance in km.
func haversine(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	h := math.Sin(dLat/2)*math.Sin(dLat/2) +
		math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthRadiusKM * math.Asin(math.Sqrt(min(1, h)))
}
