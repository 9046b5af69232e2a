package detect

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// buckets makes counts[i] requests in bucket i (of b from t0), spread over
// its first half, all expected quiet.
func buckets(b time.Duration, counts ...int) []step {
	var s []step
	for i, n := range counts {
		for j := range n {
			s = append(s, step{at: time.Duration(i)*b + time.Duration(j)*b/2/time.Duration(n)})
		}
	}
	return s
}

func TestSurgeFires(t *testing.T) {
	d, c := newTest(t, Config{Surge: &SurgeRule{Factor: 3, Bucket: time.Minute}})
	// Five buckets of 5: the average is 5, so 15 requests pass and the
	// 16th fires.
	steps := cat(buckets(time.Minute, 5, 5, 5, 5, 5), every(5*time.Minute, time.Second, 15, ""),
		[]step{{at: 5*time.Minute + 20*time.Second, want: "surge event"}})
	v := run(t, d, c, steps)
	want := "16 requests in 1m0s, 3.2x the average of 5.0"
	if got := v[len(v)-1].Findings[0].Detail; got != want {
		t.Errorf("detail %q, want %q", got, want)
	}
}

func TestSurgeMinWarmupAndIdleBuckets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rule    SurgeRule
		history []int // requests in each earlier bucket; 0 is an idle one
		quiet   int   // requests that pass in the next bucket before one fires; -1 none fires
	}{
		{"min 10 over a small average", SurgeRule{Factor: 3}, []int{1, 1, 1, 1, 1}, 9},
		{"min 4", SurgeRule{Factor: 3, Min: 4}, []int{1, 1, 1, 1, 1}, 3},
		{"warmup not reached", SurgeRule{Factor: 3}, []int{5, 5, 5, 5}, -1},
		{"warmup 2", SurgeRule{Factor: 3, Warmup: 2}, []int{5, 5}, 15},
		{"idle buckets are not in the average", SurgeRule{Factor: 2}, []int{10, 0, 0, 10, 0, 10, 10, 0, 10}, 20},
		{"factor 1.5", SurgeRule{Factor: 1.5}, []int{20, 20, 20, 20, 20}, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.rule
			r.Bucket = time.Minute
			d, c := newTest(t, Config{Surge: &r})
			next := time.Duration(len(tc.history)) * time.Minute
			steps := cat(buckets(time.Minute, tc.history...), every(next, 100*time.Millisecond, max(tc.quiet, 40), ""))
			if tc.quiet >= 0 {
				steps[len(steps)-max(tc.quiet, 40)+tc.quiet].want = "surge event"
				steps = steps[:len(steps)-max(tc.quiet, 40)+tc.quiet+1]
			}
			run(t, d, c, steps)
		})
	}
}

// The average is over the last 60 active buckets: a huge first bucket
// falls out of it.
func TestSurgeHistoryIsSixtyBuckets(t *testing.T) {
	for _, tc := range []struct {
		tens int // buckets of 10 after one of 1000
		want string
	}{
		{59, ""}, // average (1000+590)/60 = 26.5: 31 is quiet
		{60, "surge event"},
	} {
		t.Run(fmt.Sprint(tc.tens), func(t *testing.T) {
			d, c := newTest(t, Config{Surge: &SurgeRule{Factor: 3, Bucket: time.Second}})
			counts := []int{1000}
			for range tc.tens {
				counts = append(counts, 10)
			}
			next := time.Duration(len(counts)) * time.Second
			run(t, d, c, cat(buckets(time.Second, counts...),
				every(next, time.Millisecond, 30, ""),
				[]step{{at: next + 30*time.Millisecond, want: tc.want}}))
		})
	}
}

// Surge follows a subject across its tokens, and subjects of different
// issuers apart; requests that fire are not counted.
func TestSurgeSubjects(t *testing.T) {
	d, c := newTest(t, Config{Surge: &SurgeRule{Factor: 2, Bucket: time.Minute, Min: 1, Action: Reject}})
	obs := func(tok, iss, sub string) string {
		r := req(tok, "203.0.113.5", "a")
		r.Issuer, r.Subject = iss, sub
		return summary(d.Observe(r))
	}
	for b := range 5 {
		c.set(time.Duration(b) * time.Minute)
		for i := range 4 {
			if got := obs(fmt.Sprint("tok", i), "iss", "alice"); got != "" {
				t.Fatalf("bucket %d: %q", b, got)
			}
		}
	}
	c.set(5 * time.Minute)
	// Average 4, factor 2: 8 pass, from any of alice's tokens.
	for i := range 8 {
		if got := obs(fmt.Sprint("new", i), "iss", "alice"); got != "" {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if got := obs("new9", "iss", "alice"); got != "REJECT surge event" {
		t.Fatalf("9th: %q", got)
	}
	if got := obs("tok0", "iss", "alice"); got != "REJECT surge repeat" {
		t.Fatalf("10th: %q", got)
	}
	// Another issuer's alice, and "issalice" split differently, are other
	// subjects: alice's would be refused now.
	for _, is := range [][2]string{{"other", "alice"}, {"issa", "lice"}, {"", "issalice"}} {
		if got := obs("x", is[0], is[1]); got != "" {
			t.Fatalf("%q %q: %q", is[0], is[1], got)
		}
	}
	// The refused requests were not counted: the bucket closed at 8, so
	// the average is now (5*4+8)/6 = 4.67 and 9 pass.
	c.set(6 * time.Minute)
	for i := range 9 {
		if got := obs("tok0", "iss", "alice"); got != "" {
			t.Fatalf("next bucket, request %d: %q", i, got)
		}
	}
	if got := obs("tok0", "iss", "alice"); got != "REJECT surge event" {
		t.Fatalf("next bucket, 10th: %q", got)
	}
}

// A token without a subject is not followed by surge: all of them are not
// one user.
func TestSurgeNoSubject(t *testing.T) {
	d, c := newTest(t, Config{Surge: &SurgeRule{Factor: 2, Bucket: time.Minute, Min: 1}})
	for b := range 6 {
		c.set(time.Duration(b) * time.Minute)
		n := 1
		if b == 5 {
			n = 50
		}
		for range n {
			r := req("tok", "203.0.113.5", "a")
			r.Subject = ""
			if v := d.Observe(r); v.Findings != nil {
				t.Fatalf("bucket %d: %+v", b, v)
			}
		}
	}
}

// A bucket's count saturates instead of wrapping to 0.
func TestSurgeCountSaturates(t *testing.T) {
	r := newSurge(SurgeRule{Factor: 2, Bucket: time.Minute})
	st := make([]uint64, r.words())
	o := obs{unixNS: t0.UnixNano()}
	r.observe(st, o)
	st[sCount] |= math.MaxUint32 - 1
	for range 3 {
		if r.observe(st, o) {
			t.Fatal("fired without history")
		}
	}
	if got := uint32(st[sCount]); got != math.MaxUint32 {
		t.Errorf("count %d", got)
	}
}

func TestPackCount(t *testing.T) {
	for _, v := range []uint32{0, 1, 2047, 2048, 4095, 4096, 4097, 12345, 1 << 20, 1<<20 + 1, math.MaxUint32} {
		got := unpackCount(packCount(v))
		if v < 4096 && got != v {
			t.Errorf("%d: got %d, want exact", v, got)
		}
		if rel := math.Abs(float64(got)-float64(v)) / float64(v); rel > 1.0/4096 {
			t.Errorf("%d: got %d, off by %.5f", v, got, rel)
		}
	}
	for v := uint32(0); v < 1<<24; v += 997 {
		got := unpackCount(packCount(v))
		if rel := math.Abs(float64(got)-float64(v)) / max(1, float64(v)); rel > 1.0/4096 {
			t.Fatalf("%d: got %d, off by %.5f", v, got, rel)
		}
	}
}
