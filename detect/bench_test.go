package detect

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// typical is the configuration the SPEC's cost and memory bounds are about.
func typical() Config {
	return Config{
		Rate:     &RateRule{Count: 60, Window: time.Minute},
		Networks: &NetworksRule{Count: 3, Window: 10 * time.Minute},
		Agent:    &AgentRule{},
	}
}

// steppingClock advances by step a reading, so that a benchmark's tokens
// stay under 60 requests a minute and nothing fires: the path measured is
// the common one. Safe for concurrent use.
func steppingClock(step time.Duration) func() time.Time {
	var ns atomic.Int64
	ns.Store(t0.UnixNano())
	return func() time.Time { return time.Unix(0, ns.Add(int64(step))) }
}

func benchDetector(b *testing.B, cfg Config) *Detector {
	if cfg.Now == nil {
		cfg.Now = steppingClock(1100 * time.Millisecond)
	}
	d, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

const benchUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"

func benchRequest(id string) *Request {
	return &Request{
		TokenID:   id,
		Issuer:    "https://login.example.com/realms/main",
		Subject:   "alice",
		ClientIP:  netip.MustParseAddr("203.0.113.5"),
		UserAgent: benchUA,
		Expires:   t0.Add(time.Hour),
	}
}

func tokenIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("https://login.example.com/realms/main#%036d", i)
	}
	return ids
}

func BenchmarkObserve(b *testing.B) {
	observe := func(b *testing.B, d *Detector, r *Request) {
		b.ReportAllocs()
		for b.Loop() {
			if v := d.Observe(r); v.Findings != nil {
				b.Fatal(v)
			}
		}
	}
	// The baseline: an Observe with no rule returns at once.
	b.Run("empty", func(b *testing.B) { observe(b, benchDetector(b, Config{}), benchRequest("tok")) })
	// What reading the real clock costs, which the stepping clock does not.
	b.Run("clock", func(b *testing.B) {
		epoch := time.Now()
		var sum int64
		for b.Loop() {
			sum += int64(time.Since(epoch))
		}
		_ = sum
	})
	b.Run("rate", func(b *testing.B) {
		observe(b, benchDetector(b, Config{Rate: typical().Rate}), benchRequest("tok"))
	})
	b.Run("rate5", func(b *testing.B) {
		observe(b, benchDetector(b, Config{Rate: &RateRule{Count: 5, Window: time.Second}}), benchRequest("tok"))
	})
	b.Run("networks", func(b *testing.B) {
		observe(b, benchDetector(b, Config{Networks: typical().Networks}), benchRequest("tok"))
	})
	b.Run("agent", func(b *testing.B) { observe(b, benchDetector(b, Config{Agent: typical().Agent}), benchRequest("tok")) })
	b.Run("cached", func(b *testing.B) { observe(b, benchDetector(b, typical()), benchRequest("tok")) })
	b.Run("cached+surge", func(b *testing.B) {
		cfg := typical()
		cfg.Surge = &SurgeRule{Factor: 10, Bucket: time.Minute}
		observe(b, benchDetector(b, cfg), benchRequest("tok"))
	})
	b.Run("cached+travel", func(b *testing.B) {
		cfg := typical()
		cfg.Travel = &TravelRule{KMH: 900}
		cfg.Geo = openGeo(b, nil)
		observe(b, benchDetector(b, cfg), benchRequest("tok"))
	})
	// With a cluster: each rule that follows networks also checks whether
	// the request's is new to it.
	b.Run("cached+sightings", func(b *testing.B) {
		cfg := typical()
		cfg.Travel = &TravelRule{KMH: 900}
		cfg.Geo = openGeo(b, nil)
		cfg.Sightings = true
		observe(b, benchDetector(b, cfg), benchRequest("tok"))
	})
	b.Run("cached+trust", func(b *testing.B) {
		cfg := typical()
		for _, p := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "2001:db8:9::/48"} {
			cfg.Trust = append(cfg.Trust, netip.MustParsePrefix(p))
		}
		observe(b, benchDetector(b, cfg), benchRequest("tok"))
	})
	// 100k known tokens in turn: the state is out of the CPU caches. Each
	// token comes back every 20s, as a client polling would.
	b.Run("many", func(b *testing.B) {
		cfg := typical()
		cfg.Now = steppingClock(200 * time.Microsecond)
		d := benchDetector(b, cfg)
		ids := tokenIDs(100000)
		r := benchRequest("")
		for _, id := range ids {
			r.TokenID = id
			d.Observe(r)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r.TokenID = ids[i%len(ids)]
			if v := d.Observe(r); v.Findings != nil {
				b.Fatal(v)
			}
			i++
		}
	})
	// A new token every time, beyond max_tracked: insert and evict.
	b.Run("first-sight", func(b *testing.B) {
		cfg := typical()
		cfg.MaxTracked = 10000
		d := benchDetector(b, cfg)
		ids := tokenIDs(1 << 17)
		r := benchRequest("")
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r.TokenID = ids[i%len(ids)]
			d.Observe(r)
			i++
		}
	})
	// Every goroutine on its own tokens, and all on one. These read the
	// real clock: a shared stepping clock would be the contended line. So
	// that a token used thousands of times a second stays under the rate,
	// the rate is 65535 a second, which takes the same path as 60 a minute.
	b.Run("parallel", func(b *testing.B) {
		d := realClockDetector(b)
		ids := tokenIDs(100000)
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := benchRequest("")
			i := int(next.Add(1)) * 7919
			for pb.Next() {
				r.TokenID = ids[i%len(ids)]
				d.Observe(r)
				i++
			}
		})
	})
	b.Run("parallel-one-token", func(b *testing.B) {
		d := realClockDetector(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := benchRequest("tok")
			for pb.Next() {
				d.Observe(r)
			}
		})
	})
}

func realClockDetector(b *testing.B) *Detector {
	cfg := typical()
	cfg.Rate = &RateRule{Count: MaxRateCount, Window: time.Second}
	d, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// bytesPerToken is the heap a Detector holds per token it follows, with n
// tokens followed.
func bytesPerToken(t testing.TB, cfg Config, n int) float64 {
	ids := tokenIDs(n)
	r := benchRequest("")
	cfg.Now = steppingClock(time.Second)
	cfg.MaxTracked = n
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		r.TokenID = id
		r.Subject = ids[i] // a subject per token: the worst case for surge
		d.Observe(r)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if d.Tracked() != n {
		t.Fatalf("tracked %d, want %d", d.Tracked(), n)
	}
	runtime.KeepAlive(d)
	runtime.KeepAlive(ids)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// The SPEC's bound: a followed token costs at most 256 bytes with rate,
// networks and agent on.
func TestMemoryPerToken(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation sizes")
	}
	const limit = 256
	got := bytesPerToken(t, typical(), 100000)
	t.Logf("%.1f bytes per token", got)
	if got > limit {
		t.Errorf("%.1f bytes per token, over %d", got, limit)
	}
}

// BenchmarkMemory reports bytes per followed token (and subject) for other
// configurations.
func BenchmarkMemory(b *testing.B) {
	geo := openGeo(b, nil)
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"typical", func(*Config) {}},
		{"rate5", func(c *Config) { c.Rate.Count = 5 }},
		{"networks16", func(c *Config) { c.Networks.Count = 16 }},
		{"+travel", func(c *Config) { c.Travel, c.Geo = &TravelRule{KMH: 900}, geo }},
		{"+binding", func(c *Config) { c.Binding = &BindingRule{} }},
		{"+surge", func(c *Config) { c.Surge = &SurgeRule{Factor: 10, Bucket: time.Minute} }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := typical()
			tc.cfg(&cfg)
			var per float64
			for b.Loop() {
				per = bytesPerToken(b, cfg, 100000)
			}
			b.ReportMetric(per, "B/token")
		})
	}
}

// BenchmarkBaseline is the least any per-token state costs: hash the token
// id and read and write a map entry under a mutex, for one token and for
// 100k in turn. Observe's numbers are best read against these, measured in
// the same run on the same machine.
func BenchmarkBaseline(b *testing.B) {
	type state struct {
		mu sync.Mutex
		m  map[uint64]uint64
	}
	seed := maphash.MakeSeed()
	lookup := func(s *state, id string) {
		k := maphash.String(seed, id)
		s.mu.Lock()
		s.m[k]++
		s.mu.Unlock()
	}
	b.Run("map-one", func(b *testing.B) {
		s := &state{m: map[uint64]uint64{}}
		id := benchRequest("tok").TokenID
		for b.Loop() {
			lookup(s, id)
		}
	})
	b.Run("map-many", func(b *testing.B) {
		s := &state{m: map[uint64]uint64{}}
		ids := tokenIDs(100000)
		for _, id := range ids {
			lookup(s, id)
		}
		i := 0
		for b.Loop() {
			lookup(s, ids[i%len(ids)])
			i++
		}
	})
}
