package main

import (
	"strings"
	"testing"
)

// results builds a results file from cols and its rows, fields separated by
// spaces, "_" standing for an empty field.
func results(cols string, rows ...string) string {
	var b strings.Builder
	for _, l := range append([]string{cols}, rows...) {
		f := strings.Fields(l)
		for i := range f {
			if f[i] == "_" {
				f[i] = ""
			}
		}
		b.WriteString(strings.Join(f, "\t") + "\n")
	}
	return b.String()
}

// column returns, for each configuration, its cell under the header name
// (the first such column: "met?" is the req/s ratio's).
func column(t *testing.T, table, name string) map[string]string {
	t.Helper()
	cells := func(l string) []string {
		c := strings.Split(strings.Trim(l, "|"), "|")
		for i := range c {
			c[i] = strings.TrimSpace(c[i])
		}
		return c
	}
	lines := strings.Split(table, "\n")
	at := -1
	for i, h := range cells(lines[0]) {
		if h == name && at < 0 {
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("no column %q in\n%s", name, table)
	}
	got := map[string]string{}
	for _, l := range lines[2:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		c := cells(l)
		if len(c) != len(cells(lines[0])) {
			t.Fatalf("row %q has %d cells, the header %d", l, len(c), len(cells(lines[0])))
		}
		got[c[0]] = c[at]
	}
	return got
}

func table(t *testing.T, tsv string) (string, bool) {
	t.Helper()
	runs, order, err := read(strings.NewReader(tsv))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	clean := writeTable(&b, runs, order)
	return b.String(), clean
}

const cols = "round config attempt rps p99_us rss_kib requests caddy_cpu_ms steal_caddy_pct others_caddy_pct " +
	"err_status err_connect err_read err_write err_timeout exhausted"

func TestGCPer10k(t *testing.T) {
	tsv := results(cols+" gc_count",
		// bare: 230 and 250 GCs in 100,000 requests: 23.0 and 25.0, median 24.0.
		"1 bare 1 10000 900 20000 100000 5000 0 0 0 0 0 0 0 0 230",
		"2 bare 1 10000 900 20000 100000 5000 0 0 0 0 0 0 0 0 250",
		// hs256-cached: 80 in 100,000 and 81 in 90,000 (9.0): median 8.5.
		"1 hs256-cached 1 10000 900 40000 100000 5000 0 0 0 0 0 0 0 0 80",
		"2 hs256-cached 1 9000 900 40000 90000 5000 0 0 0 0 0 0 0 0 81",
		// hs256-distinct: no GC at all in one round, one left empty.
		"1 hs256-distinct 1 8000 900 40000 80000 5000 0 0 0 0 0 0 0 0 0",
		"2 hs256-distinct 1 8000 900 40000 80000 5000 0 0 0 0 0 0 0 0 _",
		// rs256-cached: no round recorded its GCs.
		"1 rs256-cached 1 8000 900 40000 80000 5000 0 0 0 0 0 0 0 0 _",
		// es256-cached: its only run failed, and is left out.
		"1 es256-cached 1 8000 900 40000 80000 5000 0 0 3 0 0 0 0 0 12",
	)
	out, clean := table(t, tsv)
	if clean {
		t.Errorf("a table with a failed run reports clean runs")
	}
	got := column(t, out, "GC/10k req")
	want := map[string]string{
		"bare":           "24.0",
		"hs256-cached":   "8.5",
		"hs256-distinct": "0.0",
		"rs256-cached":   "-",
		"es256-cached":   "",
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: GC/10k req %q, want %q\n%s", name, got[name], w, out)
		}
	}
	// The column sits after the CPU ratio's met? and before RSS − bare.
	header := strings.Split(strings.SplitN(out, "\n", 2)[0], "|")
	var names []string
	for _, h := range header {
		names = append(names, strings.TrimSpace(h))
	}
	if s := strings.Join(names, ","); !strings.Contains(s, ",CPU ratio,met?,GC/10k req,RSS − bare,") {
		t.Errorf("header %s", s)
	}
}

// Results written before the gc_count column existed still make a table.
func TestGCPer10kOldResults(t *testing.T) {
	tsv := results(cols,
		"1 bare 1 10000 900 20000 100000 5000 0 0 0 0 0 0 0 0",
		"1 hs256-cached 1 10000 900 40000 100000 5000 0 0 0 0 0 0 0 0",
	)
	out, clean := table(t, tsv)
	if !clean {
		t.Errorf("clean runs reported as not clean:\n%s", out)
	}
	got := column(t, out, "GC/10k req")
	for _, name := range []string{"bare", "hs256-cached"} {
		if got[name] != "-" {
			t.Errorf("%s: GC/10k req %q, want -\n%s", name, got[name], out)
		}
	}
	if r := column(t, out, "ratio to bare")["hs256-cached"]; r != "1.00" {
		t.Errorf("hs256-cached: ratio %q, want 1.00", r)
	}
}

// colsNoise is cols with wrk's steal, for the tests of noisy runs.
const colsNoise = "round config attempt rps p99_us rss_kib requests caddy_cpu_ms steal_caddy_pct others_caddy_pct steal_wrk_pct " +
	"err_status err_connect err_read err_write err_timeout exhausted"

// TestQuietestAttempt: a configuration run again because it was noisy
// counts once per round, with its quietest clean attempt, against the
// quietest bare run of the same round.
func TestQuietestAttempt(t *testing.T) {
	tsv := results(colsNoise,
		"1 bare 1 5000 1000 50000 50000 1000 40 0 0 0 0 0 0 0 0",
		"1 bare 2 20000 1000 50000 200000 1000 1 0 0 0 0 0 0 0 0",
		"1 hs256-distinct 1 2000 1000 60000 20000 1000 30 0 0 0 0 0 0 0 0",
		"1 hs256-distinct 2 18000 1000 60000 180000 1000 0 0 0 5 0 0 0 0 0", // quiet but with errors
		"1 hs256-distinct 3 9000 1000 60000 90000 1000 2 0 20 0 0 0 0 0 0",  // wrk's CPU stolen
		"1 hs256-distinct 4 16000 1000 60000 160000 1000 3 1 0 0 0 0 0 0 0",
	)
	out, clean := table(t, tsv)
	if !clean {
		t.Fatalf("a round with a clean attempt is reported as a problem:\n%s", out)
	}
	if got := column(t, out, "req/s")["bare"]; got != "20000" {
		t.Errorf("bare req/s %s, want the quiet attempt's 20000\n%s", got, out)
	}
	if got := column(t, out, "ratio to bare")["hs256-distinct"]; got != "0.80" {
		t.Errorf("hs256-distinct ratio %s, want 0.80 (16000 / 20000)\n%s", got, out)
	}
	if got := column(t, out, "noise")["hs256-distinct"]; got != "4%" {
		t.Errorf("hs256-distinct noise %s, want 4%%\n%s", got, out)
	}

	// With no clean attempt the round's problem is still reported.
	_, clean = table(t, results(colsNoise,
		"1 bare 1 20000 1000 50000 200000 1000 1 0 0 0 0 0 0 0 0",
		"1 hs256-cached 1 2000 1000 60000 20000 1000 0 0 0 3 0 0 0 0 0",
	))
	if clean {
		t.Error("a configuration whose only run had errors is not reported")
	}
}

// TestRatiosFromQuietRounds: a round in which bare Caddy or the
// configuration was noisy does not count in the ratio while a quiet round
// exists, and does when none does.
func TestRatiosFromQuietRounds(t *testing.T) {
	out, _ := table(t, results(colsNoise,
		"1 bare 1 2000 1000 50000 20000 1000 60 0 0 0 0 0 0 0 0",
		"1 rs256-distinct 1 9000 1000 60000 90000 1000 0 0 0 0 0 0 0 0 0",
		"2 bare 1 20000 1000 50000 200000 1000 0 0 0 0 0 0 0 0 0",
		"2 rs256-distinct 1 9000 1000 60000 90000 1000 0 0 0 0 0 0 0 0 0",
		"3 bare 1 20000 1000 50000 200000 1000 0 0 0 0 0 0 0 0 0",
		"3 rs256-distinct 1 1000 1000 60000 10000 1000 0 0 40 0 0 0 0 0 0",
	))
	if got := column(t, out, "ratio to bare")["rs256-distinct"]; got != "0.45" {
		t.Errorf("ratio %s, want 0.45 from round 2 alone\n%s", got, out)
	}
	out, _ = table(t, results(colsNoise,
		"1 bare 1 10000 1000 50000 100000 1000 30 0 0 0 0 0 0 0 0",
		"1 rs256-distinct 1 4000 1000 60000 40000 1000 0 0 0 0 0 0 0 0 0",
	))
	if got := column(t, out, "ratio to bare")["rs256-distinct"]; got != "0.40" {
		t.Errorf("ratio %s, want 0.40 from the only (noisy) round\n%s", got, out)
	}
}

// TestOthersOnWrksCPU: a run in which other processes took wrk's CPU is
// noisy too (wrk then sends fewer requests than Caddy could answer), and
// its quieter attempt is kept.
func TestOthersOnWrksCPU(t *testing.T) {
	out, _ := table(t, results(colsNoise+" others_wrk_pct",
		"1 bare 1 20000 1000 50000 200000 1000 0 0 0 0 0 0 0 0 0 0",
		"1 hs256-cached 1 10000 1000 60000 100000 1000 0 0 0 0 0 0 0 0 0 45",
		"1 hs256-cached 2 21000 1000 60000 210000 1000 0 0 0 0 0 0 0 0 0 3",
		"1 hs256-distinct 1 8000 1000 60000 80000 1000 0 0 2 0 0 0 0 0 0 40",
	))
	if got := column(t, out, "ratio to bare")["hs256-cached"]; got != "1.05" {
		t.Errorf("hs256-cached ratio %s, want 1.05 from the attempt with 3%% taken from wrk\n%s", got, out)
	}
	if got := column(t, out, "noise")["hs256-cached"]; got != "3%" {
		t.Errorf("hs256-cached noise %s, want 3%%\n%s", got, out)
	}
	if got := column(t, out, "noise")["hs256-distinct"]; got != "42%" {
		t.Errorf("hs256-distinct noise %s, want 42%% (steal and others on wrk's CPU)\n%s", got, out)
	}
	if !strings.Contains(out, "noise: in 1 of 3 runs") {
		t.Errorf("the noisy run is not counted:\n%s", out)
	}
}

// colsDetect is colsNoise with the detection columns of hs256-detect runs.
const colsDetect = colsNoise + " usage_requests detect_events"

// TestDetectTarget: hs256-detect's target is the median, over rounds, of
// its ratio to bare minus hs256-cached's in the same round, within ±0.05.
func TestDetectTarget(t *testing.T) {
	// Fields: round config attempt rps p99_us rss_kib requests caddy_cpu_ms
	// steal_caddy others_caddy steal_wrk err_status err_connect err_read
	// err_write err_timeout exhausted usage_requests detect_events.
	base := []string{
		"1 bare 1 20000 900 20000 200000 5000 0 0 0 0 0 0 0 0 0 _ _",
		"2 bare 1 20000 900 20000 200000 5000 0 0 0 0 0 0 0 0 0 _ _",
		"3 bare 1 20000 900 20000 200000 5000 0 0 0 0 0 0 0 0 0 _ _",
		// Ratios 1.10, 1.05, 1.20.
		"1 hs256-cached 1 22000 900 40000 220000 5000 0 0 0 0 0 0 0 0 0 _ _",
		"2 hs256-cached 1 21000 900 40000 210000 5000 0 0 0 0 0 0 0 0 0 _ _",
		"3 hs256-cached 1 24000 900 40000 240000 5000 0 0 0 0 0 0 0 0 0 _ _",
	}
	for _, tc := range []struct {
		name   string
		detect []string
		met    string
		note   string
	}{
		{
			// Ratios 1.08, 0.95, 1.17: differences -0.02, -0.10, -0.03,
			// median -0.03 (the medians' difference would be -0.02).
			name: "met",
			detect: []string{
				"1 hs256-detect 1 21600 900 41000 216000 5000 0 0 0 0 0 0 0 0 0 216010 0",
				"2 hs256-detect 1 19000 900 41000 190000 5000 0 0 0 0 0 0 0 0 0 190003 0",
				"3 hs256-detect 1 23400 900 41000 234000 5000 0 0 0 0 0 0 0 0 0 234000 0",
			},
			met:  "met",
			note: "hs256-detect − hs256-cached, ratios to bare in the same round: round 1 1.080 − 1.100 = -0.020; round 2 0.950 − 1.050 = -0.100; round 3 1.170 − 1.200 = -0.030; median -0.030, target within ±0.05: met",
		},
		{
			// Differences -0.06, -0.07, +0.10: median -0.06. The CPU
			// per request is hs256-cached's: its ratios' difference is 0,
			// and only the req/s ratio misses.
			name: "missed",
			detect: []string{
				"1 hs256-detect 1 20800 900 41000 208000 4727.2727 0 0 0 0 0 0 0 0 0 208000 0",
				"2 hs256-detect 1 19600 900 41000 196000 4666.6667 0 0 0 0 0 0 0 0 0 196000 0",
				"3 hs256-detect 1 26000 900 41000 260000 5416.6667 0 0 0 0 0 0 0 0 0 260000 0",
			},
			met:  "MISSED",
			note: "median -0.060, target within ±0.05: MISSED (CPU ratios: median +0.000)",
		},
		{
			// Round 3's detect run was noisy: rounds 1 and 2 alone
			// (-0.02 and -0.03, median -0.025), though round 3's -0.40
			// would have made the median -0.03 anyway.
			name: "noisy round left out",
			detect: []string{
				"1 hs256-detect 1 21600 900 41000 216000 5000 0 0 0 0 0 0 0 0 0 216000 0",
				"2 hs256-detect 1 20400 900 41000 204000 5000 0 0 0 0 0 0 0 0 0 204000 0",
				"3 hs256-detect 1 16000 900 41000 160000 5000 30 0 0 0 0 0 0 0 0 160000 0",
			},
			met:  "met",
			note: "round 1 1.080 − 1.100 = -0.020; round 2 1.020 − 1.050 = -0.030; median -0.025",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, clean := table(t, results(colsDetect, append(append([]string{}, base...), tc.detect...)...))
			if !clean {
				t.Errorf("clean runs reported as not clean:\n%s", out)
			}
			if got := column(t, out, "target")["hs256-detect"]; got != "hs256-cached ± 0.05" {
				t.Errorf("target %q\n%s", got, out)
			}
			if got := column(t, out, "met?")["hs256-detect"]; got != tc.met {
				t.Errorf("met? %q, want %q\n%s", got, tc.met, out)
			}
			if !strings.Contains(out, tc.note) {
				t.Errorf("no %q under the table:\n%s", tc.note, out)
			}
			if !strings.Contains(out, "targets met: ") {
				t.Errorf("no count of targets:\n%s", out)
			}
		})
	}

	// The target counts with the others: cached's two ratios and three RSS
	// checks, and detect's difference.
	out, _ := table(t, results(colsDetect, append(append([]string{}, base...),
		"1 hs256-detect 1 21600 900 41000 216000 5000 0 0 0 0 0 0 0 0 0 216000 0",
	)...))
	if !strings.Contains(out, "targets met: 4, missed: 0") {
		t.Errorf("want 4 targets met (hs256-cached ratio and RSS, hs256-detect difference and RSS):\n%s", out)
	}
}

// TestDetectRunsChecked: an hs256-detect run in which a rule fired, or whose
// usage audit counted fewer requests than wrk sent, is left out as wrong.
func TestDetectRunsChecked(t *testing.T) {
	for _, tc := range []struct{ run, why string }{
		{"1 hs256-detect 1 21000 900 41000 210000 5000 0 0 0 0 0 0 0 0 0 210000 3", "3 detection events"},
		{"1 hs256-detect 1 21000 900 41000 210000 5000 0 0 0 0 0 0 0 0 0 209999 0", "the usage audit counted 209999 of 210000 requests"},
	} {
		out, clean := table(t, results(colsDetect,
			"1 bare 1 20000 900 20000 200000 5000 0 0 0 0 0 0 0 0 0 _ _",
			"1 hs256-cached 1 22000 900 40000 220000 5000 0 0 0 0 0 0 0 0 0 _ _",
			tc.run,
		))
		if clean {
			t.Errorf("%s: reported clean:\n%s", tc.why, out)
		}
		if !strings.Contains(out, "hs256-detect, round 1: "+tc.why) {
			t.Errorf("no problem %q:\n%s", tc.why, out)
		}
		if got := column(t, out, "req/s")["hs256-detect"]; got != "no clean run" {
			t.Errorf("%s: req/s %q, want no clean run\n%s", tc.why, got, out)
		}
	}

	// With no clean hs256-cached run in its round, the target is not judged.
	out, _ := table(t, results(colsDetect,
		"1 bare 1 20000 900 20000 200000 5000 0 0 0 0 0 0 0 0 0 _ _",
		"1 hs256-cached 1 22000 900 40000 220000 5000 0 0 0 4 0 0 0 0 0 _ _",
		"1 hs256-detect 1 21000 900 41000 210000 5000 0 0 0 0 0 0 0 0 0 210000 0",
	))
	if got := column(t, out, "met?")["hs256-detect"]; got != "no round" {
		t.Errorf("met? %q, want no round\n%s", got, out)
	}
	if !strings.Contains(out, "hs256-detect: no round with clean runs of bare, hs256-cached and hs256-detect") {
		t.Errorf("no note on the unjudged target:\n%s", out)
	}
}

// TestDPoPVersusDistinct: an <alg>-dpop row has no target; the line under
// the table gives its req/s over <alg>-distinct's in each round in which
// both ran clean, and the median.
func TestDPoPVersusDistinct(t *testing.T) {
	out, clean := table(t, results(cols,
		"1 bare 1 20000 1000 50000 200000 1000 0 0 0 0 0 0 0 0",
		"1 es256-distinct 1 5000 1000 60000 50000 1000 0 0 0 0 0 0 0 0",
		"1 es256-dpop 1 4500 1000 60000 45000 1000 0 0 0 0 0 0 0 0",
		"2 bare 1 20000 1000 50000 200000 1000 0 0 0 0 0 0 0 0",
		"2 es256-distinct 1 5000 1000 60000 50000 1000 0 0 0 0 0 0 0 0",
		"2 es256-dpop 1 5000 1000 60000 50000 1000 0 0 0 0 0 0 0 0",
		"3 bare 1 20000 1000 50000 200000 1000 0 0 0 0 0 0 0 0",
		"3 es256-distinct 1 5000 1000 60000 50000 1000 0 0 0 0 0 0 0 0",
		"3 es256-dpop 1 4000 1000 60000 40000 1000 0 0 3 0 0 0 0 0",
	))
	if clean {
		t.Errorf("a run with non-2xx answers passed as clean\n%s", out)
	}
	if got := column(t, out, "ratio to bare")["es256-dpop"]; got != "0.24" {
		t.Errorf("ratio to bare %s, want 0.24 (median of 0.225 and 0.25)\n%s", got, out)
	}
	if got := column(t, out, "target")["es256-dpop"]; got != "" {
		t.Errorf("target %q, want none\n%s", got, out)
	}
	want := "es256-dpop / es256-distinct, req/s in the same round: round 1 4500 / 5000 = 0.90; round 2 5000 / 5000 = 1.00; median 0.95"
	if !strings.Contains(out, want) {
		t.Errorf("no line %q in\n%s", want, out)
	}
}
