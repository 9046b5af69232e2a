// Command report turns the per-round results of bench/run.sh into the
// benchmark's table: for each configuration the median over rounds of req/s,
// p99 latency and RSS after the load, and the median of the per-round ratios
// of its req/s to bare Caddy's in the same round, against issue 5's targets.
// Beside them, Caddy's CPU time per request and the ratio of bare Caddy's to
// it (the same ratio, measured in CPU time instead of wall time, so that a
// noisy neighbour moves it less), and the noise: the share of Caddy's CPU,
// or of wrk's, that went to the hypervisor or to other processes during the
// run, whichever is larger. And how
// often Caddy collected garbage: GCs per 10,000 requests, from the results'
// gc_count column ("-" when the results have no such column, as older ones).
//
// A configuration <alg>-detect (the cached workload with stolen-token
// detection on, issue 10) has its own target: in each round, its ratio to
// bare Caddy minus <alg>-cached's; the median of those differences must be
// within ±0.05 (detectTolerance). The table's target and met? cells say
// so, and a line under the table gives the differences round by round.
// Its runs are left out, as runs with errors, when detection fired
// (detect_events) or its usage audit counted fewer requests than wrk
// (usage_requests).
//
// A configuration <alg>-dpop (a DPoP-bound token with a fresh proof per
// request, issue 12) has no target; a line under the table gives its req/s
// over <alg>-distinct's (the cold path: one token signature check per
// request) in each round in which both runs were clean, and their median.
//
//	report results.tsv
//
// It exits 1 when a run had errors or ran out of tokens (the numbers are then
// not to be trusted), after printing the table.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// targets are issue 5's minimum ratios of req/s to bare Caddy.
var targets = map[string]float64{
	"hs256-distinct": 0.80,
	"rs256-distinct": 0.40,
	"eddsa-distinct": 0.32,
	"es256-distinct": 0.27,
}

const (
	cachedTarget = 0.90
	// An <alg>-detect row's ratio to bare stays within this of
	// <alg>-cached's in the same round (median over rounds).
	detectTolerance = 0.05
	rssTargetMiB    = 30
	// A run is noisy when more of Caddy's CPU than this (percent) went to
	// the hypervisor or to other processes.
	noisyPct = 5
)

type run struct {
	round int
	f     map[string]string
}

func (r run) num(col string) float64 {
	v, err := strconv.ParseFloat(r.f[col], 64)
	if err != nil {
		return 0
	}
	return v
}

// cpuPerReq is Caddy's CPU time per request, in microseconds: unlike
// req/s, it does not drop when the CPU is taken away from Caddy.
func (r run) cpuPerReq() float64 {
	n := r.num("requests")
	if n == 0 {
		return 0
	}
	return r.num("caddy_cpu_ms") * 1000 / n
}

// gcPer10k is the garbage collections Caddy did per 10,000 requests, and
// false when the run did not record them (gc_count is missing or empty).
func (r run) gcPer10k() (float64, bool) {
	g, err := strconv.ParseFloat(r.f["gc_count"], 64)
	n := r.num("requests")
	if err != nil || n == 0 {
		return 0, false
	}
	return g * 10000 / n, true
}

// noise is the share, in percent, of Caddy's CPU or of wrk's that went to
// the hypervisor or to other processes, whichever is larger: either one
// slows the run down. (Results older than others_wrk_pct lack it: 0.)
func (r run) noise() float64 {
	return max(r.num("steal_caddy_pct")+r.num("others_caddy_pct"), r.num("steal_wrk_pct")+r.num("others_wrk_pct"))
}

func (r run) bad() string {
	var why []string
	if n := r.num("err_status"); n > 0 {
		why = append(why, fmt.Sprintf("%.0f non-2xx", n))
	}
	if n := r.num("err_connect") + r.num("err_read") + r.num("err_write") + r.num("err_timeout"); n > 0 {
		why = append(why, fmt.Sprintf("%.0f socket errors", n))
	}
	if r.num("exhausted") > 0 {
		why = append(why, "ran out of tokens")
	}
	if n := r.num("detect_events"); n > 0 {
		why = append(why, fmt.Sprintf("%.0f detection events (a rule fired)", n))
	}
	if u := r.f["usage_requests"]; u != "" && r.num("usage_requests") < r.num("requests") {
		why = append(why, fmt.Sprintf("the usage audit counted %s of %.0f requests", u, r.num("requests")))
	}
	return strings.Join(why, ", ")
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: report results.tsv")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(2)
	}
	runs, order, err := read(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(2)
	}
	if !writeTable(os.Stdout, runs, order) {
		os.Exit(1)
	}
}

// read parses the tab-separated results: a header line, then one line per
// run. It returns the runs by configuration and the configurations in the
// order they first appear.
func read(r io.Reader) (map[string][]run, []string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var cols []string
	runs := map[string][]run{}
	var order []string
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if cols == nil {
			cols = fields
			continue
		}
		if len(fields) != len(cols) {
			return nil, nil, fmt.Errorf("line with %d fields, header has %d", len(fields), len(cols))
		}
		x := run{f: map[string]string{}}
		for i, c := range cols {
			x.f[c] = fields[i]
		}
		x.round, _ = strconv.Atoi(x.f["round"])
		name := x.f["config"]
		if _, ok := runs[name]; !ok {
			order = append(order, name)
		}
		runs[name] = append(runs[name], x)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if runs["bare"] == nil {
		return nil, nil, errors.New("no bare runs")
	}
	for name, rs := range runs {
		runs[name] = quietest(rs)
	}
	return runs, order, nil
}

// quietest keeps one run per round: the least noisy of the clean attempts
// (bench/run.sh runs a configuration again when a run was noisy), or the
// first attempt when none is clean, so that its problem is reported.
func quietest(rs []run) []run {
	var out []run
	at := map[int]int{}
	for _, r := range rs {
		i, seen := at[r.round]
		switch {
		case !seen:
			at[r.round] = len(out)
			out = append(out, r)
		case out[i].bad() != "" && r.bad() == "",
			r.bad() == "" && r.noise() < out[i].noise():
			out[i] = r
		}
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// writeTable writes the table and reports whether every run was clean.
func writeTable(w io.Writer, runs map[string][]run, order []string) bool {
	bare := map[int]run{}
	for _, r := range runs["bare"] {
		if r.bad() == "" {
			bare[r.round] = r
		}
	}
	header := []string{"configuration", "req/s", "p99", "RSS", "ratio to bare", "range", "target", "met?",
		"CPU/req", "CPU ratio", "met?", "GC/10k req", "RSS − bare", "≤ 30 MiB?", "noise"}
	right := []bool{false, true, true, true, true, false, true, false, true, true, false, true, true, false, true}
	var rows [][]string
	var problems, notes []string
	met, missed, noisy, total := 0, 0, 0, 0
	for _, name := range order {
		var rps, p99, rss, cpu, gcs, noise []float64
		// Comparisons with bare Caddy of the same round: those where
		// neither run was noisy, and the others, used only when no round
		// was quiet for both.
		var quiet, loud []pair
		for _, r := range runs[name] {
			if why := r.bad(); why != "" {
				problems = append(problems, fmt.Sprintf("%s, round %d: %s", name, r.round, why))
				continue
			}
			total++
			n := r.noise()
			if n > noisyPct {
				noisy++
			}
			rps = append(rps, r.num("rps"))
			p99 = append(p99, r.num("p99_us"))
			rss = append(rss, r.num("rss_kib"))
			cpu = append(cpu, r.cpuPerReq())
			noise = append(noise, n)
			if g, ok := r.gcPer10k(); ok {
				gcs = append(gcs, g)
			}
			if b, ok := bare[r.round]; ok {
				p := pair{r.num("rps") / b.num("rps"), b.cpuPerReq() / r.cpuPerReq(), r.num("rss_kib") - b.num("rss_kib")}
				if n <= noisyPct && b.noise() <= noisyPct {
					quiet = append(quiet, p)
				} else {
					loud = append(loud, p)
				}
			}
		}
		pairs := quiet
		if len(pairs) == 0 {
			pairs = loud
		}
		var ratios, cpuRatios, deltas []float64
		for _, p := range pairs {
			ratios = append(ratios, p.ratio)
			cpuRatios = append(cpuRatios, p.cpuRatio)
			deltas = append(deltas, p.rssDelta)
		}
		row := make([]string, len(header))
		row[0] = name
		if len(rps) > 0 {
			row[1] = fmt.Sprintf("%.0f", median(rps))
			row[2] = fmt.Sprintf("%.2f ms", median(p99)/1000)
			row[3] = fmt.Sprintf("%.1f MiB", median(rss)/1024)
			row[8] = fmt.Sprintf("%.1f µs", median(cpu))
			row[11] = "-"
			if len(gcs) > 0 {
				row[11] = fmt.Sprintf("%.1f", median(gcs))
			}
			row[14] = fmt.Sprintf("%.0f%%", median(noise))
		} else {
			row[1] = "no clean run"
		}
		if name == "bare" {
			row[4], row[9] = "1.00", "1.00"
		} else if len(ratios) > 0 {
			ratio, cpuRatio := median(ratios), median(cpuRatios)
			row[4] = fmt.Sprintf("%.2f", ratio)
			row[5] = fmt.Sprintf("%.2f–%.2f", slices.Min(ratios), slices.Max(ratios))
			row[9] = fmt.Sprintf("%.2f", cpuRatio)
			target, ok := targets[name]
			if strings.HasSuffix(name, "-cached") {
				target, ok = cachedTarget, true
			}
			if base, found := strings.CutSuffix(name, "-detect"); found {
				ok = false
				cached := base + "-cached"
				row[6] = fmt.Sprintf("%s ± %.2f", cached, detectTolerance)
				if d, found := detectDiffs(runs[name], runs[cached], bare); found {
					row[7] = mark(math.Abs(d.ratio) <= detectTolerance+1e-9, &met, &missed)
					row[10] = mark(math.Abs(d.cpuRatio) <= detectTolerance+1e-9, nil, nil)
					notes = append(notes, d.note(name, cached))
				} else {
					row[7] = "no round"
					notes = append(notes, fmt.Sprintf("%s: no round with clean runs of bare, %s and %s; its target is not judged", name, cached, name))
				}
			}
			if base, found := strings.CutSuffix(name, "-dpop"); found {
				notes = append(notes, versusNote(name, base+"-distinct", runs[name], runs[base+"-distinct"]))
			}
			if ok {
				row[6] = fmt.Sprintf("≥ %.2f", target)
				row[7] = mark(ratio >= target, &met, &missed)
				row[10] = mark(cpuRatio >= target, nil, nil)
			}
			delta := median(deltas) / 1024
			row[12] = fmt.Sprintf("%+.1f MiB", delta)
			row[13] = mark(delta <= rssTargetMiB, &met, &missed)
		}
		rows = append(rows, row)
	}

	widths := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", widths[i]-len([]rune(c)))
			if right[i] {
				b.WriteString(" " + pad + c + " |")
			} else {
				b.WriteString(" " + c + pad + " |")
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", widths[i])
		if right[i] {
			sep[i] = sep[i][1:] + ":"
		}
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	fmt.Fprintf(w, "\ntargets met: %d, missed: %d (req/s ratios and RSS)\n", met, missed)
	if noisy > 0 {
		fmt.Fprintf(w, "noise: in %d of %d runs (the quietest attempt of each) more than %d%% of Caddy's or wrk's CPU went to the hypervisor (steal) or other processes; "+
			"their req/s understate, and the CPU ratio is the steadier measure\n", noisy, total, noisyPct)
	}
	if len(problems) > 0 {
		fmt.Fprintln(w, "\n!!! RUNS LEFT OUT OF THE TABLE: the benchmark is wrong for these:")
		for _, p := range problems {
			fmt.Fprintln(w, "!!!   "+p)
		}
		return false
	}
	return true
}

// detectDiff is an <alg>-detect row against <alg>-cached: the medians of
// the per-round differences of their ratios to bare Caddy (req/s and CPU),
// and the rounds they come from.
type detectDiff struct {
	ratio, cpuRatio float64
	rounds          []detectRound
	quiet           bool // from the rounds in which no run was noisy
}

// detectRound is one round of a detectDiff: the two ratios to bare.
type detectRound struct {
	round          int
	detect, cached float64
}

// detectDiffs compares the detect runs with the cached runs of the same
// round, each as a ratio to bare Caddy's req/s (and CPU per request) in
// that round: from the rounds in which the three runs were clean and quiet,
// or, when there is none, all rounds in which they were clean. found is
// false when no round has the three.
func detectDiffs(detect, cached []run, bare map[int]run) (d detectDiff, found bool) {
	byRound := map[int]run{}
	for _, r := range cached {
		if r.bad() == "" {
			byRound[r.round] = r
		}
	}
	type one struct {
		r             detectRound
		diff, cpuDiff float64
	}
	var quiet, loud []one
	for _, r := range detect {
		c, okC := byRound[r.round]
		b, okB := bare[r.round]
		if r.bad() != "" || !okC || !okB {
			continue
		}
		o := one{r: detectRound{r.round, r.num("rps") / b.num("rps"), c.num("rps") / b.num("rps")}}
		o.diff = o.r.detect - o.r.cached
		o.cpuDiff = b.cpuPerReq()/r.cpuPerReq() - b.cpuPerReq()/c.cpuPerReq()
		if r.noise() <= noisyPct && c.noise() <= noisyPct && b.noise() <= noisyPct {
			quiet = append(quiet, o)
		} else {
			loud = append(loud, o)
		}
	}
	use := quiet
	d.quiet = true
	if len(use) == 0 {
		use, d.quiet = loud, false
	}
	if len(use) == 0 {
		return d, false
	}
	var diffs, cpuDiffs []float64
	for _, o := range use {
		d.rounds = append(d.rounds, o.r)
		diffs = append(diffs, o.diff)
		cpuDiffs = append(cpuDiffs, o.cpuDiff)
	}
	slices.SortFunc(d.rounds, func(a, b detectRound) int { return a.round - b.round })
	d.ratio, d.cpuRatio = median(diffs), median(cpuDiffs)
	return d, true
}

// note is the line under the table that shows the target's numbers.
func (d detectDiff) note(name, cached string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s − %s, ratios to bare in the same round:", name, cached)
	for i, r := range d.rounds {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " round %d %.3f − %.3f = %s", r.round, r.detect, r.cached, signed(r.detect-r.cached))
	}
	fmt.Fprintf(&b, "; median %s, target within ±%.2f: %s", signed(d.ratio), detectTolerance,
		mark(math.Abs(d.ratio) <= detectTolerance+1e-9, nil, nil))
	fmt.Fprintf(&b, " (CPU ratios: median %s)", signed(d.cpuRatio))
	if !d.quiet {
		b.WriteString(" (no round was quiet for all three; from the noisy ones)")
	}
	return b.String()
}

// signed writes a difference with its sign and three decimals; one that
// rounds to zero is +0.000, never -0.000.
func signed(v float64) string {
	return fmt.Sprintf("%+.3f", math.Round(v*1000)/1000+0)
}

// pair is one run compared with bare Caddy's run of the same round.
type pair struct{ ratio, cpuRatio, rssDelta float64 }

// mark returns "met" or "MISSED", counting it when met and missed are
// given.
func mark(ok bool, met, missed *int) string {
	if ok {
		if met != nil {
			*met++
		}
		return "met"
	}
	if missed != nil {
		*missed++
	}
	return "MISSED"
}

// versusNote is the line under the table that gives name's req/s over
// other's in each round in which both ran clean, and the median; and the
// same for Caddy's CPU time per request (other's over name's, so that
// both read as name's speed relative to other).
func versusNote(name, other string, rs, os []run) string {
	byRound := map[int]run{}
	for _, r := range os {
		if r.bad() == "" {
			byRound[r.round] = r
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s / %s, req/s in the same round:", name, other)
	var ratios, cpuRatios []float64
	for _, r := range rs {
		o, ok := byRound[r.round]
		if r.bad() != "" || !ok || o.num("rps") == 0 || r.cpuPerReq() == 0 {
			continue
		}
		ratio := r.num("rps") / o.num("rps")
		if len(ratios) > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " round %d %.0f / %.0f = %.2f", r.round, r.num("rps"), o.num("rps"), ratio)
		ratios = append(ratios, ratio)
		cpuRatios = append(cpuRatios, o.cpuPerReq()/r.cpuPerReq())
	}
	if len(ratios) == 0 {
		return fmt.Sprintf("%s / %s: no round with clean runs of both", name, other)
	}
	fmt.Fprintf(&b, "; median %.2f (CPU/req, %s over %s: median %.2f)", median(ratios), other, name, median(cpuRatios))
	return b.String()
}
