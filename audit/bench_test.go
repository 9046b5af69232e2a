package audit

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// benchUse is a request as the handler reports it: a realistic token id
// and User-Agent.
func benchUse(i int) *Use {
	u := sampleUse(fmt.Sprintf("https://login.example.com/realms/main#%036d", i))
	u.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	return u
}

//go:noinline
func emptyCall(*Use) {}

// BenchmarkBaselineCall is the floor Use is compared with: a call that
// does nothing.
func BenchmarkBaselineCall(b *testing.B) {
	u := benchUse(0)
	for b.Loop() {
		emptyCall(u)
	}
}

// BenchmarkBaselineMapLookup is one lookup of a token id in a map of a
// thousand, which Use does besides the clock, the hash and the lock.
func BenchmarkBaselineMapLookup(b *testing.B) {
	m := make(map[string]*pendingToken)
	for i := range 1000 {
		m[benchUse(i).TokenID] = &pendingToken{}
	}
	u := benchUse(7)
	var hits int
	for b.Loop() {
		if m[u.TokenID] != nil {
			hits++
		}
	}
	if hits == 0 {
		b.Fatal("no hit")
	}
}

// BenchmarkUse is the steady state: the same token, IP and User-Agent
// again within a flush period.
func BenchmarkUse(b *testing.B) {
	e := newEnv(b, Options{FlushInterval: slowFlush})
	for i := range 1000 {
		e.log.Use(benchUse(i))
	}
	u := benchUse(7)
	b.ReportAllocs()
	for b.Loop() {
		e.log.Use(u)
	}
}

// BenchmarkUseGivenTime is BenchmarkUse with the request's time given,
// as a handler that has read the clock already does: no clock read.
func BenchmarkUseGivenTime(b *testing.B) {
	e := newEnv(b, Options{FlushInterval: slowFlush})
	u := benchUse(7)
	u.Time = time.Now().Unix()
	e.log.Use(u)
	b.ReportAllocs()
	for b.Loop() {
		e.log.Use(u)
	}
}

// BenchmarkBaselineClock is the clock read Use does without Use.Time.
func BenchmarkBaselineClock(b *testing.B) {
	var sum int64
	for b.Loop() {
		sum += time.Now().Unix()
	}
	if sum == 0 {
		b.Fatal(sum)
	}
}

// BenchmarkUseParallel is every goroutine on one token: the worst case
// for its shard's lock.
func BenchmarkUseParallel(b *testing.B) {
	e := newEnv(b, Options{FlushInterval: slowFlush})
	u := benchUse(7)
	e.log.Use(u)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.log.Use(u)
		}
	})
}

// BenchmarkUseParallelTokens is goroutines on tokens of their own, which
// sit in different shards but for chance.
func BenchmarkUseParallelTokens(b *testing.B) {
	e := newEnv(b, Options{FlushInterval: slowFlush})
	var next atomic.Int32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		u := benchUse(int(next.Add(1)))
		e.log.Use(u)
		for pb.Next() {
			e.log.Use(u)
		}
	})
}

// BenchmarkUseFirstSighting is a new token every time, what each token
// costs once per flush period; flushes are left to MaxPending.
func BenchmarkUseFirstSighting(b *testing.B) {
	e := newEnv(b, Options{FlushInterval: slowFlush, MaxPending: 1 << 30})
	uses := make([]*Use, 100_000)
	for i := range uses {
		uses[i] = benchUse(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(uses) {
			b.StopTimer()
			mustFlush(b, e.log)
			b.StartTimer()
			i = 0
		}
		e.log.Use(uses[i])
		i++
	}
}

// BenchmarkFlush writes 10,000 pending tokens that are already stored
// (the steady state: each flush rewrites the records of the tokens used
// in its period). ns/op is per token.
func BenchmarkFlush(b *testing.B) {
	e := newEnv(b, Options{FlushInterval: slowFlush})
	uses := make([]*Use, 10_000)
	for i := range uses {
		uses[i] = benchUse(i)
		e.log.Use(uses[i])
	}
	mustFlush(b, e.log)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for _, u := range uses {
			e.log.Use(u)
		}
		b.StartTimer()
		mustFlush(b, e.log)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(uses)), "ns/token")
}
