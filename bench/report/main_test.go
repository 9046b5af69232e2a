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

// column returns, for each configuration, its cell under the header name.
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
		if h == name {
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
