package revocation

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

const (
	benchIssuer = "https://login.example.com/realms/main"
	benchN      = 1_000_000
)

// mixedEntry is the i-th entry of a revocation list with every kind of
// entry in it, in proportions no real list has but that exercise every map.
func mixedEntry(i int, before time.Time) Entry {
	switch i % 8 {
	case 0:
		return Entry{JTI: fmt.Sprintf("jti-%09d", i), Issuer: benchIssuer}
	case 1:
		return Entry{JTI: fmt.Sprintf("jti-%09d", i)}
	case 2:
		sum := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		return Entry{TokenID: "sha256:" + base64.RawURLEncoding.EncodeToString(sum[:])}
	case 3:
		return Entry{Subject: fmt.Sprintf("user-%09d", i), Issuer: benchIssuer, Before: &before}
	case 4:
		return Entry{Subject: fmt.Sprintf("user-%09d", i), Before: &before}
	case 5:
		return Entry{KeyID: fmt.Sprintf("key-%09d", i)}
	case 6:
		return Entry{SID: fmt.Sprintf("sess-%09d", i), Issuer: benchIssuer}
	default:
		return Entry{SID: fmt.Sprintf("sess-%09d", i)}
	}
}

// buildIndex fills an index the way load does, minus Badger.
func buildIndex(n int, before time.Time) *index {
	ix := newIndex()
	ix.bulk = true
	defer ix.endBulk()
	for i := range n {
		e := mixedEntry(i, before)
		e.Kind = kindOf(&e)
		e.CreatedAt = before
		val := encodeValue(&e)
		r, err := decodeValue(val)
		if err != nil {
			panic(err)
		}
		ix.add(ix.refOf(&r))
	}
	return ix
}

func kindOf(e *Entry) Kind {
	switch {
	case e.JTI != "":
		return KindJTI
	case e.TokenID != "":
		return KindToken
	case e.Subject != "":
		return KindSubject
	case e.SID != "":
		return KindSession
	}
	return KindKey
}

// benchTokens are realistic verified tokens (every field set), 1 in 16 of
// them revoked by some entry, the rest matching nothing: the common case,
// and the dearest, since every probe runs. Their strings share one arena,
// read in order: in a server the token was parsed just before the check
// and is in cache, so the benchmark should not measure misses on it, only
// on the index.
func benchTokens(n int, iat int64) []Token {
	type fields struct{ jti, sub, kid, sid string }
	fs := make([]fields, n)
	for i := range fs {
		j := benchN + i // not in the list
		fs[i] = fields{fmt.Sprintf("jti-%09d", j), fmt.Sprintf("user-%09d", j), "key-current", fmt.Sprintf("sess-%09d", j)}
		if i%16 == 0 {
			k := (i * 7919) % benchN
			switch k % 8 {
			case 0, 1:
				fs[i].jti = fmt.Sprintf("jti-%09d", k)
			case 3, 4:
				fs[i].sub = fmt.Sprintf("user-%09d", k)
			case 5:
				fs[i].kid = fmt.Sprintf("key-%09d", k)
			case 6, 7:
				fs[i].sid = fmt.Sprintf("sess-%09d", k)
			}
		}
	}
	var arena strings.Builder
	for _, f := range fs {
		arena.WriteString(benchIssuer + "#" + f.jti + f.sub + f.kid + f.sid)
	}
	all, off := arena.String(), 0
	take := func(n int) string {
		off += n
		return all[off-n : off]
	}
	ts := make([]Token, n)
	for i, f := range fs {
		id := take(len(benchIssuer) + 1 + len(f.jti))
		ts[i] = Token{
			ID: id, Issuer: id[:len(benchIssuer)], JTI: id[len(benchIssuer)+1:],
			Subject: take(len(f.sub)), KeyID: take(len(f.kid)), SID: take(len(f.sid)),
			IssuedAt: iat, HasIssuedAt: true,
		}
	}
	return ts
}

var (
	bigIndexOnce sync.Once
	bigIndex     *index
)

func benchStore(b *testing.B) (*Store, []Token) {
	b.Helper()
	before := time.Now().Truncate(time.Second)
	bigIndexOnce.Do(func() { bigIndex = buildIndex(benchN, before) })
	// A store around the prebuilt index: loading a million entries through
	// Badger is BenchmarkOpen's job.
	s := &Store{ix: bigIndex, clock: time.Now}
	ts := benchTokens(1<<16, before.Unix()-60)
	runtime.GC() // the build's garbage, collected now rather than while timing
	return s, ts
}

// Distinct tokens cycled through: 1,024 is a server whose active users'
// filter words stay in the CPU caches; 65,536 touch every word of the
// filters (2.5 MB), so most probes miss L2.
var benchSpreads = []int{1 << 10, 1 << 16}

// BenchmarkRevoked: one goroutine, 1,000,000 entries of mixed kinds.
func BenchmarkRevoked(b *testing.B) {
	s, all := benchStore(b)
	for _, n := range benchSpreads {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			ts := all[:n]
			revoked := 0
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r, err := s.Revoked(&ts[i&(n-1)])
				if err != nil {
					b.Fatal(err)
				}
				if r {
					revoked++
				}
			}
			if revoked == 0 {
				b.Fatal("no token matched: the benchmark measures nothing")
			}
		})
	}
}

// BenchmarkRevokedParallel: every core asking at once (RWMutex readers).
func BenchmarkRevokedParallel(b *testing.B) {
	s, all := benchStore(b)
	for _, n := range benchSpreads {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			ts := all[:n]
			var seq atomic.Uint32
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1)) * 7777
				for pb.Next() {
					if _, err := s.Revoked(&ts[i&(n-1)]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkIndexMemory reports the heap an index of 1,000,000 mixed
// entries takes, per entry.
func BenchmarkIndexMemory(b *testing.B) {
	before := time.Now().Truncate(time.Second)
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		ix := buildIndex(benchN, before)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/benchN, "B/entry")
		runtime.KeepAlive(ix)
	}
}

var (
	onDiskOnce sync.Once
	onDiskRoot string // removed by TestMain
	onDiskDir  string
	onDiskErr  error
)

var nopLogger = zap.NewNop()

func TestMain(m *testing.M) {
	code := m.Run()
	if onDiskRoot != "" {
		_ = os.RemoveAll(onDiskRoot)
	}
	os.Exit(code)
}

// onDisk writes 1,000,000 entries (a sixth of them expiring) into a store
// directory once per test binary run, in batches rather than one durable
// Add each, which would take hours.
func onDisk(b *testing.B) string {
	b.Helper()
	onDiskOnce.Do(func() {
		start := time.Now()
		onDiskRoot, onDiskErr = os.MkdirTemp("", "jwtguard-revocation-bench-")
		if onDiskErr != nil {
			return
		}
		dir := filepath.Join(onDiskRoot, "store")
		var db *badger.DB
		db, onDiskErr = badger.Open(badgerOptions(dir, false, nopLogger).WithSyncWrites(false))
		if onDiskErr != nil {
			return
		}
		onDiskErr = bulkWrite(db, benchN, start)
		if err := db.Close(); onDiskErr == nil {
			onDiskErr = err
		}
		onDiskDir = dir
		b.Logf("wrote %d entries in %v: %d MB of tables", benchN, time.Since(start).Round(time.Millisecond), tablesSize(dir)>>20)
	})
	if onDiskErr != nil {
		b.Fatal(onDiskErr)
	}
	return onDiskDir
}

// tablesSize is the size of Badger's LSM tables, where the entries end up
// (the WAL and value log files are preallocated and sparse).
func tablesSize(dir string) int64 {
	var n int64
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	for _, f := range ssts {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func bulkWrite(db *badger.DB, n int, now time.Time) error {
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	before := now.Truncate(time.Second)
	expires := now.Add(24 * time.Hour).Truncate(time.Second)
	for i := range n {
		e := mixedEntry(i, before)
		if i%6 == 2 {
			e.ExpiresAt = &expires
		}
		e, err := normalize(e, now, now)
		if err != nil {
			return err
		}
		e.CreatedAt = now.Add(time.Duration(i))
		val := encodeValue(&e)
		r, _ := decodeValue(val)
		id, _ := decodeID(e.ID)
		if err := setAll(wb, &r, val, &id); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// BenchmarkOpen measures startup with 1,000,000 entries on disk: Badger's
// open plus loading the index. Skipped with -short (the setup writes the
// entries once, which takes a while).
func BenchmarkOpen(b *testing.B) {
	if testing.Short() {
		b.Skip("writes 1,000,000 entries; run without -short")
	}
	dir := onDisk(b)
	var opening time.Duration
	for b.Loop() {
		start := time.Now()
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		opening += time.Since(start)
		b.StopTimer() // Close is not startup
		if got := s.total(); got != benchN {
			b.Fatalf("loaded %d entries, want %d", got, benchN)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(opening.Seconds()/float64(b.N), "s/open")
}

// BenchmarkAdd: durable adds on a real directory, from 8 goroutines (the
// brief's case) and from one (for comparison).
func BenchmarkAdd(b *testing.B) {
	for _, g := range []int{8, 1} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var seq atomic.Int64
			add := func() bool {
				n := seq.Add(1)
				if _, _, err := s.Add(Entry{JTI: fmt.Sprintf("bench-%d", n), Reason: "benchmark"}); err != nil {
					b.Error(err)
					return false
				}
				return true
			}
			b.ReportAllocs()
			start := time.Now()
			if g == 1 {
				for b.Loop() {
					if !add() {
						return
					}
				}
			} else {
				// RunParallel starts parallelism × GOMAXPROCS goroutines.
				b.SetParallelism(max(1, g/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() && add() {
					}
				})
			}
			b.ReportMetric(float64(seq.Load())/time.Since(start).Seconds(), "adds/s")
		})
	}
}
