package detect

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The count+1-th use within the window fires, in both forms of the state.
func TestRateFiresAtCountPlusOne(t *testing.T) {
	for _, count := range []int{1, 2, 5, 15, 16, 17, 60, 1000} {
		for _, window := range []time.Duration{time.Second, time.Minute, 24 * time.Hour} {
			t.Run(fmt.Sprintf("%d/%v", count, window), func(t *testing.T) {
				d, c := newTest(t, Config{Rate: &RateRule{Count: count, Window: window}})
				// count+1 uses spread over 90% of the window.
				gap := window * 9 / 10 / time.Duration(count)
				steps := cat(every(0, gap, count, ""), []step{{at: gap * time.Duration(count), want: "rate event"}})
				run(t, d, c, steps)
			})
		}
	}
}

func TestRateDetail(t *testing.T) {
	for _, count := range []int{5, 60} {
		d, c := newTest(t, Config{Rate: &RateRule{Count: count, Window: time.Minute}})
		v := run(t, d, c, cat(every(0, time.Millisecond, count, ""), []step{{at: time.Second, want: "rate event"}}))
		want := fmt.Sprintf("%d requests in 1m0s", count+1)
		if got := v[count].Findings[0].Detail; got != want {
			t.Errorf("detail %q, want %q", got, want)
		}
	}
}

// A use that leaves the window makes room for one more.
func TestRateSlidingWindow(t *testing.T) {
	d, c := newTest(t, Config{Rate: &RateRule{Count: 3, Window: time.Minute, Action: Reject}})
	run(t, d, c, []step{
		{at: 0},
		{at: 20 * time.Second},
		{at: 40 * time.Second},
		{at: 59 * time.Second, want: "REJECT rate event"},
		{at: 61 * time.Second},                             // the use at 0 has left
		{at: 62 * time.Second, want: "REJECT rate repeat"}, // 20, 40, 61
		{at: 81 * time.Second},                             // 20 has left
	})
}

// A steady client under the rate never fires, in either form.
func TestRateSteadyUserStaysQuiet(t *testing.T) {
	for _, count := range []int{1, 5, 15, 16, 60, 600} {
		t.Run(fmt.Sprint(count), func(t *testing.T) {
			d, c := newTest(t, Config{Rate: &RateRule{Count: count, Window: time.Minute}})
			perWindow := max(1, count*85/100)
			if count == 1 {
				perWindow = 1
			}
			gap := time.Minute/time.Duration(perWindow) + time.Millisecond
			run(t, d, c, every(0, gap, 20*perWindow, ""))
		})
	}
}

// After a window without use the state starts over; this also keeps the
// 16-bit times of a long-idle token from wrapping into the window.
func TestRateIdleToken(t *testing.T) {
	for _, tc := range []struct {
		count  int
		window time.Duration
	}{{2, time.Minute}, {20, time.Minute}} {
		t.Run(fmt.Sprint(tc.count), func(t *testing.T) {
			d, c := newTest(t, Config{Rate: &RateRule{Count: tc.count, Window: tc.window}})
			// Just over 8 windows later the exact form's ticks have wrapped
			// round to just after the old ones; 65536 counters later the
			// counted form's numbers have.
			for _, later := range []time.Duration{0, 8*tc.window + tc.window/100, 65536 * ((tc.window + 13) / 14), 100 * tc.window} {
				start := c.since() + later
				run(t, d, c, cat(
					every(start, time.Millisecond, tc.count, ""),
					[]step{{at: start + time.Second, want: "rate event"}}))
			}
		})
	}
}

// Quiet period: with log one event per window and nothing in between; with
// reject every use over the rate is refused, and only those.
func TestRateQuietAndRepeats(t *testing.T) {
	for _, act := range []Action{Log, Reject, Revoke} {
		t.Run(act.String(), func(t *testing.T) {
			rep, ev := "", "rate event"
			if act.Refuses() {
				rep, ev = "REJECT rate repeat", "REJECT rate event"
			}
			d, c := newTest(t, Config{Rate: &RateRule{Count: 2, Window: time.Minute, Action: act}})
			run(t, d, c, []step{
				{at: 0},
				{at: time.Second},
				{at: 2 * time.Second, want: ev},  // quiet until 62s
				{at: 3 * time.Second, want: rep}, // still over
				{at: 60100 * time.Millisecond},   // 0 has left: 1, 60.1
				{at: 61100 * time.Millisecond},   // 1 has left: 60.1, 61.1
				{at: 61500 * time.Millisecond, want: rep},
				{at: 62 * time.Second, want: ev}, // quiet over, still over
				{at: 63 * time.Second, want: rep},
			})
		})
	}
}

// The rule is a limit on uses in any window: checked against a plain list
// of the uses it let through, on random timelines.
func TestRateAgainstReference(t *testing.T) {
	// 81.92s makes a tick exactly 10ms, and the timelines use whole ticks,
	// so the exact form must agree with the reference exactly.
	const window = 81920 * time.Millisecond
	for _, count := range []int{1, 3, 15, 16, 40} {
		t.Run(fmt.Sprint(count), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(count), 7))
			d, c := newTest(t, Config{Rate: &RateRule{Count: count, Window: window, Action: Reject}})
			var allowed []time.Duration
			at := time.Duration(0)
			inLast := func(span time.Duration) int {
				n := 0
				for i := len(allowed) - 1; i >= 0 && at-allowed[i] < span; i-- {
					n++
				}
				return n
			}
			for i := range 20000 {
				// Bursts and pauses around the rate.
				at += time.Duration(rng.IntN(int(2*window/10/time.Duration(count)/(10*time.Millisecond))+1)) * 10 * time.Millisecond
				if rng.IntN(500) == 0 {
					at += time.Duration(rng.IntN(3)) * window
				}
				c.set(at)
				refused := d.Observe(req("tok", "203.0.113.5", "a")).Reject
				inWindow := inLast(window)
				switch {
				case count <= rateSlots && refused != (inWindow >= count):
					t.Fatalf("use %d at %v: refused %v with %d allowed in the window", i, at, refused, inWindow)
				case !refused && inWindow >= count:
					t.Fatalf("use %d at %v: allowed with %d allowed in the window", i, at, inWindow)
				case refused && inLast(window*15/14+time.Millisecond) < count:
					t.Fatalf("use %d at %v: refused with %d allowed in 15/14 of the window", i, at, inLast(window*15/14))
				}
				if !refused {
					allowed = append(allowed, at)
				}
			}
		})
	}
}
