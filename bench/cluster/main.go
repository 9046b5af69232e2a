// Command cluster is the cluster benchmark (issue 11), run by
// bench/cluster.sh (`make bench-cluster`), which builds Caddy and installs
// redis-server first. On 127.0.0.1 only, it starts one redis-server (AOF,
// appendfsync always unless -appendfsync says otherwise) and two Caddy
// processes, A and B, each with its own store, site and admin port, in one
// cluster, and measures:
//
//  1. Propagation: -n revocations made on A through its admin API (POST
//     /jwtguard/revocations {"token": ...}, a fresh HS256 token each), one
//     after the other; each is timed from A's 201 to B's first refusal of
//     that token (401, error_description="token revoked"), B's site polled
//     with the token every -poll. Prints p50, p99 and max.
//  2. Catch-up: B is stopped; -catchup revocations are made on A by
//     -writers concurrent clients (timed); once A's GET /jwtguard/cluster
//     shows pending 0, B starts, and the benchmark times B's start to its
//     first answer on its site (serving), to its GET /jwtguard/cluster
//     position reaching the log's last entry (all applied), and to its
//     first refusal of the token revoked last. Then both lists are counted
//     through the admin API and must match. (B's admin API answers
//     GET /jwtguard/cluster only once its config runs, when it serves: a
//     B that caught up before serving shows it a few ms after.)
//
// It starts and stops every process itself; each is also killed should
// this program die (Pdeathsig). Results go to -out: summary.txt (also on
// stdout), delays.tsv (every propagation delay), the Caddyfiles and logs/.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
)

const host = "127.0.0.1"

var (
	caddyBin  = flag.String("caddy", "", "the Caddy binary with jwtguard (required)")
	redisBin  = flag.String("redis", "redis-server", "the redis-server binary")
	outDir    = flag.String("out", "", "results directory (required)")
	workDir   = flag.String("work", "", "directory for the stores, Redis's files and HOME (required)")
	basePort  = flag.Int("port", 18580, "first of five ports: A's site, A's admin, B's site, B's admin, Redis")
	nProp     = flag.Int("n", 1000, "revocations timed from A's 201 to B's first refusal")
	nCatchUp  = flag.Int("catchup", 100000, "revocations made on A while B is stopped (0: skip the catch-up)")
	writers   = flag.Int("writers", 16, "concurrent clients making the catch-up revocations")
	poll      = flag.Duration("poll", time.Millisecond, "how often B's site is asked while a revocation is on its way")
	give      = flag.Duration("give-up", 10*time.Second, "how long to wait for one revocation to reach B")
	syncTO    = flag.Duration("sync-timeout", 5*time.Second, "the cluster's sync_timeout")
	fsync     = flag.String("appendfsync", "always", "Redis's appendfsync: always, everysec or no")
	prefix    = flag.String("prefix", "bench", "the cluster's prefix (its Redis keys)")
	startWait = flag.Duration("start-wait", 60*time.Second, "how long a process may take to answer at start")
	catchWait = flag.Duration("catchup-wait", 5*time.Minute, "how long to wait for A to publish, and for B to catch up")
	profile   = flag.Duration("profile", 0, "with more than 0: a CPU profile of B this long from its restart (Caddy's /debug/pprof), to b-catchup.pprof")
)

func main() {
	flag.Parse()
	if *caddyBin == "" || *outDir == "" || *workDir == "" || *nProp < 1 || *nCatchUp < 0 || *writers < 1 || *poll <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	b := &bench{}
	// A signal ends the processes before the program goes.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "bench-cluster: %v; stopping the processes\n", s)
		b.stopAll()
		os.Exit(130)
	}()
	err := b.run()
	b.stopAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-cluster:", err)
		os.Exit(1)
	}
}

type bench struct {
	secret  []byte
	redis   *proc
	a, b    *node
	rdb     *redis.Client
	summary bytes.Buffer
	client  *http.Client

	mu    sync.Mutex
	procs []*proc
}

// say prints a progress line on stderr.
func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-cluster: "+format+"\n", args...)
}

// result prints a line of the summary on stdout and keeps it for summary.txt.
func (b *bench) result(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	fmt.Println(line)
	b.summary.WriteString(line + "\n")
}

func (b *bench) run() error {
	if err := os.MkdirAll(filepath.Join(*outDir, "logs"), 0o755); err != nil {
		return err
	}
	for i := range 5 {
		if err := portFree(*basePort + i); err != nil {
			return fmt.Errorf("%v; set PORT to another base port", err)
		}
	}
	// The HMAC secret: 64 random hex digits, used as they are (32 bytes of
	// randomness; jwtguard wants at least 32 bytes).
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	b.secret = []byte(hex.EncodeToString(raw))
	b.client = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil, // never reach past this machine
			MaxIdleConnsPerHost: *writers + 4,
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		},
	}

	redisPort := *basePort + 4
	if err := b.startRedis(redisPort); err != nil {
		return err
	}
	redisURL := fmt.Sprintf("redis://%s:%d/0", host, redisPort)
	b.a = b.newNode("a", *basePort, *basePort+1, redisURL)
	b.b = b.newNode("b", *basePort+2, *basePort+3, redisURL)
	for _, n := range []*node{b.a, b.b} {
		if err := n.writeConfig(string(b.secret)); err != nil {
			return err
		}
	}
	say("starting A and B")
	for _, n := range []*node{b.a, b.b} {
		if _, err := b.startNode(n, n.name+".log"); err != nil {
			return err
		}
	}
	if err := b.checkNodes(); err != nil {
		return err
	}
	if err := b.propagation(); err != nil {
		return err
	}
	if *nCatchUp > 0 {
		if err := b.catchUp(); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(*outDir, "summary.txt"), b.summary.Bytes(), 0o644)
}

// --- processes ------------------------------------------------------------------

type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error // after done
}

func (b *bench) start(name, logName string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.Create(filepath.Join(*outDir, "logs", logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends TERM and waits, then KILL after 10 s.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		say("%s did not end within 10 s of TERM; killing it", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (b *bench) stopAll() {
	b.mu.Lock()
	procs := slices.Clone(b.procs)
	b.mu.Unlock()
	// Caddy first, Redis last.
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
}

func portFree(port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", host, port), 200*time.Millisecond)
	if err == nil {
		c.Close()
		return fmt.Errorf("port %d on %s is in use", port, host)
	}
	return nil
}

func (b *bench) startRedis(port int) error {
	dir := filepath.Join(*workDir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p, err := b.start("redis-server", "redis.log", nil, *redisBin,
		"--port", strconv.Itoa(port), "--bind", host, "--dir", dir, "--save", "",
		"--appendonly", "yes", "--appendfsync", *fsync, "--daemonize", "no")
	if err != nil {
		return err
	}
	b.redis = p
	b.rdb = redis.NewClient(&redis.Options{Addr: fmt.Sprintf("%s:%d", host, port), MaxRetries: -1})
	deadline := time.Now().Add(*startWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := b.rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if p.exited() || time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING (%v); see %s", err, filepath.Join(*outDir, "logs", "redis.log"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type node struct {
	name             string
	site, admin      string // base URLs
	cfg, store, home string
	redisURL, secret string
	sitePort         int
	adminPort        int
	proc             *proc
}

func (b *bench) newNode(name string, sitePort, adminPort int, redisURL string) *node {
	return &node{
		name:      name,
		site:      fmt.Sprintf("http://%s:%d/", host, sitePort),
		admin:     fmt.Sprintf("http://%s:%d", host, adminPort),
		cfg:       filepath.Join(*outDir, name+".caddyfile"),
		store:     filepath.Join(*workDir, name, "store"),
		home:      filepath.Join(*workDir, name, "home"),
		redisURL:  redisURL,
		sitePort:  sitePort,
		adminPort: adminPort,
	}
}

// writeConfig writes the node's Caddyfile: the cluster in the global
// options, and a site that answers "ok <sub>" behind jwtguard with the
// benchmark's HMAC secret.
func (n *node) writeConfig(secret string) error {
	n.secret = secret
	if err := os.MkdirAll(n.home, 0o755); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`{
	admin %s:%d
	auto_https off
	persist_config off
	jwtguard {
		storage_dir %s
		cluster redis %s {
			prefix %s
			sync_timeout %s
			node %s
		}
	}
}

http://%s:%d {
	bind %s
	jwtguard {
		secret %s
	}
	respond "ok {http.auth.user.id}" 200
}
`, host, n.adminPort, n.store, n.redisURL, *prefix, *syncTO, n.name, host, n.sitePort, host, n.secret)
	return os.WriteFile(n.cfg, []byte(cfg), 0o644)
}

// startNode starts the node's Caddy and waits until its site answers; it
// returns the time from the start to that first answer.
func (b *bench) startNode(n *node, logName string) (time.Duration, error) {
	start := time.Now()
	if err := b.launch(n, logName); err != nil {
		return 0, err
	}
	d, _, err := b.waitServing(n, start, "", logName)
	return d, err
}

// launch starts the node's Caddy, its HOME in the work directory.
func (b *bench) launch(n *node, logName string) error {
	env := []string{
		"HOME=" + n.home,
		"XDG_DATA_HOME=" + filepath.Join(n.home, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(n.home, "config"),
	}
	p, err := b.start("Caddy "+n.name, logName, env, *caddyBin, "run", "--config", n.cfg, "--adapter", "caddyfile")
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

// waitServing asks the node's site, with the token (none when empty),
// every 2 ms until it answers; it returns the time from start to that
// answer and whether it refused the token as revoked. Without a token any
// answer will do (a 401: no token).
func (b *bench) waitServing(n *node, start time.Time, token, logName string) (time.Duration, bool, error) {
	for {
		status, auth, err := b.get(n.site, token)
		if err == nil {
			d := time.Since(start)
			refused := status == http.StatusUnauthorized && strings.Contains(auth, `error_description="token revoked"`)
			if token != "" && !refused && status != http.StatusOK {
				return d, false, fmt.Errorf("%s's first answer: %d (WWW-Authenticate: %s)", n.name, status, auth)
			}
			return d, refused, nil
		}
		if n.proc.exited() {
			return 0, false, fmt.Errorf("Caddy %s exited at start; see %s", n.name, filepath.Join(*outDir, "logs", logName))
		}
		if time.Since(start) > *startWait {
			return 0, false, fmt.Errorf("Caddy %s did not answer within %s; see %s", n.name, *startWait, filepath.Join(*outDir, "logs", logName))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// --- requests -------------------------------------------------------------------

// token mints a fresh HS256 token for sub, valid for an hour.
func (b *bench) token(sub string) string {
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub,
		"jti": sub,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}).SignedString(b.secret)
	if err != nil {
		panic(err)
	}
	return s
}

// get sends GET url with the token as Bearer (none when empty) and returns
// the status and the WWW-Authenticate header.
func (b *bench) get(url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), nil
}

// refuses asks n's site with the token: true when it is refused as revoked,
// false when it is accepted; an error for anything else.
func (b *bench) refuses(n *node, token string) (bool, error) {
	status, auth, err := b.get(n.site, token)
	switch {
	case err != nil:
		return false, err
	case status == http.StatusOK:
		return false, nil
	case status == http.StatusUnauthorized && strings.Contains(auth, `error_description="token revoked"`):
		return true, nil
	}
	return false, fmt.Errorf("%s's site answered %d (WWW-Authenticate: %s)", n.name, status, auth)
}

// revoke makes a token revocation on n through its admin API and expects 201.
func (b *bench) revoke(n *node, token string) error {
	body, _ := json.Marshal(map[string]string{"token": token})
	resp, err := b.client.Post(n.admin+"/jwtguard/revocations", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /jwtguard/revocations on %s answered %d: %s", n.name, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

type status struct {
	Engine    string `json:"engine"`
	Node      string `json:"node"`
	Connected bool   `json:"connected"`
	Pending   int64  `json:"pending"`
	Applied   string `json:"applied"`
	LagMS     int64  `json:"lag_ms"`
}

// status is n's GET /jwtguard/cluster.
func (b *bench) status(n *node) (status, error) {
	var s status
	resp, err := b.client.Get(n.admin + "/jwtguard/cluster")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /jwtguard/cluster on %s answered %d: %s", n.name, resp.StatusCode, bytes.TrimSpace(body))
	}
	err = json.Unmarshal(body, &s)
	return s, err
}

// count pages through n's GET /jwtguard/revocations and counts the entries.
func (b *bench) count(n *node) (int, error) {
	total, cursor := 0, ""
	for {
		u := n.admin + "/jwtguard/revocations?limit=1000"
		if cursor != "" {
			u += "&cursor=" + cursor
		}
		resp, err := b.client.Get(u)
		if err != nil {
			return total, err
		}
		var page struct {
			Revocations []json.RawMessage `json:"revocations"`
			NextCursor  string            `json:"next_cursor"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return total, fmt.Errorf("GET /jwtguard/revocations on %s answered %d", n.name, resp.StatusCode)
		}
		if err != nil {
			return total, err
		}
		total += len(page.Revocations)
		if page.NextCursor == "" {
			return total, nil
		}
		cursor = page.NextCursor
	}
}

// metric reads one sample from n's admin /metrics (NaN when absent).
func (b *bench) metric(n *node, name string) float64 {
	resp, err := b.client.Get(n.admin + "/metrics")
	if err != nil {
		return math.NaN()
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				return v
			}
		}
	}
	return math.NaN()
}

// logEnd is the log stream's last entry id and length, from Redis.
func (b *bench) logEnd() (string, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := "{" + *prefix + "}:log"
	msgs, err := b.rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return "", 0, err
	}
	n, err := b.rdb.XLen(ctx, key).Result()
	if err != nil || len(msgs) == 0 {
		return "", n, errors.Join(err, errors.New("the log is empty"))
	}
	return msgs[0].ID, n, nil
}

// streamLess compares two stream ids (ms-seq).
func streamLess(a, b string) bool {
	pa, pb := parseID(a), parseID(b)
	return pa[0] < pb[0] || (pa[0] == pb[0] && pa[1] < pb[1])
}

func parseID(s string) [2]uint64 {
	ms, seq, _ := strings.Cut(s, "-")
	a, _ := strconv.ParseUint(ms, 10, 64)
	c, _ := strconv.ParseUint(seq, 10, 64)
	return [2]uint64{a, c}
}

// --- the measurements ------------------------------------------------------------

// checkNodes: a fresh token passes on both, and both are in the cluster.
func (b *bench) checkNodes() error {
	tok := b.token("check")
	for _, n := range []*node{b.a, b.b} {
		if refused, err := b.refuses(n, tok); err != nil || refused {
			return fmt.Errorf("%s refuses a fresh token (revoked: %v, %v)", n.name, refused, err)
		}
		s, err := b.status(n)
		if err != nil {
			return err
		}
		if s.Engine != "redis" || !s.Connected {
			return fmt.Errorf("%s's GET /jwtguard/cluster: %+v, want engine redis, connected", n.name, s)
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (b *bench) propagation() error {
	say("propagation: %d revocations on A, each timed to B's first refusal (B asked every %s)", *nProp, *poll)
	f, err := os.Create(filepath.Join(*outDir, "delays.tsv"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	defer w.Flush()
	fmt.Fprintln(w, "i\tdelay_ms\tpolls\trevoke_ms")
	delays := make([]time.Duration, 0, *nProp)
	var revokeTimes []time.Duration
	firstPoll := 0
	progress := time.Now()
	for i := range *nProp {
		tok := b.token(fmt.Sprintf("prop-%d", i))
		sent := time.Now()
		if err := b.revoke(b.a, tok); err != nil {
			return err
		}
		t0 := time.Now()
		revokeTimes = append(revokeTimes, t0.Sub(sent))
		polls := 0
		for {
			asked := time.Now()
			refused, err := b.refuses(b.b, tok)
			polls++
			if err != nil {
				return fmt.Errorf("revocation %d: %w", i, err)
			}
			if refused {
				break
			}
			if time.Since(t0) > *give {
				s, _ := b.status(b.b)
				return fmt.Errorf("revocation %d made on A did not reach B within %s (B's status: %+v)", i, *give, s)
			}
			if d := *poll - time.Since(asked); d > 0 {
				time.Sleep(d)
			}
		}
		d := time.Since(t0)
		if polls == 1 {
			firstPoll++
		}
		delays = append(delays, d)
		fmt.Fprintf(w, "%d\t%.3f\t%d\t%.3f\n", i, ms(d), polls, ms(revokeTimes[i]))
		if time.Since(progress) > 5*time.Second {
			say("  %d of %d", i+1, *nProp)
			progress = time.Now()
		}
	}
	slices.Sort(delays)
	slices.Sort(revokeTimes)
	p99 := percentile(delays, 99)
	met := "met"
	if p99 >= 100*time.Millisecond {
		met = "MISSED"
	}
	b.result("propagation, %d revocations one after another, A's 201 -> B's first refusal (B asked every %s):", *nProp, *poll)
	b.result("  p50 %.1f ms, p99 %.1f ms, max %.1f ms, min %.1f ms (target p99 < 100 ms: %s)",
		ms(percentile(delays, 50)), ms(p99), ms(delays[len(delays)-1]), ms(delays[0]), met)
	b.result("  refused on B's first ask after the 201: %d of %d; A's POST took p50 %.1f ms, p99 %.1f ms",
		firstPoll, *nProp, ms(percentile(revokeTimes, 50)), ms(percentile(revokeTimes, 99)))
	return nil
}

func (b *bench) catchUp() error {
	total := *nCatchUp
	say("catch-up: minting %d tokens", total)
	tokens := make([]string, total)
	for i := range tokens {
		tokens[i] = b.token(fmt.Sprintf("catchup-%d", i))
	}
	say("catch-up: stopping B")
	b.b.proc.stop()

	// Writes, sampling A's pending meanwhile.
	say("catch-up: %d revocations on A from %d clients", total, *writers)
	var (
		next     atomic.Int64
		failed   atomic.Int64
		errMu    sync.Mutex
		errFirst error
		wg       sync.WaitGroup
	)
	stopSampling := make(chan struct{})
	var maxPending atomic.Int64
	var samplerDone sync.WaitGroup
	samplerDone.Add(1)
	go func() {
		defer samplerDone.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				if s, err := b.status(b.a); err == nil && s.Pending > maxPending.Load() {
					maxPending.Store(s.Pending)
				}
			}
		}
	}()
	start := time.Now()
	for range *writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(total) {
					return
				}
				if err := b.revoke(b.a, tokens[i]); err != nil {
					failed.Add(1)
					errMu.Lock()
					if errFirst == nil {
						errFirst = err
					}
					errMu.Unlock()
				}
			}
		}()
	}
	progressDone := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				say("  about %d of %d made", min(next.Load(), int64(total)), total)
			}
		}
	}()
	wg.Wait()
	close(progressDone)
	writeTime := time.Since(start)
	if n := failed.Load(); n > 0 {
		close(stopSampling)
		samplerDone.Wait()
		return fmt.Errorf("%d of %d revocations on A failed; the first: %v", n, total, errFirst)
	}
	say("catch-up: made in %.1f s; waiting for A to publish them (pending 0)", writeTime.Seconds())

	// A publishes: pending 0.
	var pendingAtEnd int64 = -1
	if s, err := b.status(b.a); err == nil {
		pendingAtEnd = s.Pending
	}
	for {
		s, err := b.status(b.a)
		if err == nil && s.Pending == 0 {
			break
		}
		if time.Since(start) > writeTime+*catchWait {
			close(stopSampling)
			return fmt.Errorf("A still has changes to publish %s after the last write (status %+v, %v)", *catchWait, s, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	published := time.Since(start)
	close(stopSampling)
	samplerDone.Wait()
	end, logLen, err := b.logEnd()
	if err != nil {
		return fmt.Errorf("reading the log's end in Redis: %w", err)
	}
	live, _ := b.rdb.HLen(context.Background(), "{"+*prefix+"}:live").Result()
	aCount, err := b.count(b.a)
	if err != nil {
		return fmt.Errorf("counting A's list: %w", err)
	}

	// B starts: time to serving, to its position at the log's end, and to
	// refusing the token revoked last.
	say("catch-up: starting B (%d changes behind; the log holds %d, ends at %s)", total, logLen, end)
	last := tokens[total-1]
	var (
		servingAt, appliedAt, refusesAt time.Duration
		firstAnswerRefused              bool
		appliedErr                      error
	)
	bStart := time.Now()
	if err := b.launch(b.b, "b-restart.log"); err != nil {
		return err
	}
	// From B's start: its GET /jwtguard/cluster (which answers once its
	// config runs, the moment it serves) until its position is at the
	// log's end; its site until it answers (serving), then until it
	// refuses the token revoked last.
	var (
		wgB     sync.WaitGroup
		bStatus status
		stop    atomic.Bool
	)
	if *profile > 0 {
		wgB.Add(1)
		go func() {
			defer wgB.Done()
			if err := b.cpuProfile(b.b, bStart, filepath.Join(*outDir, "b-catchup.pprof")); err != nil {
				say("no CPU profile of B: %v", err)
			}
		}()
	}
	wgB.Add(1)
	go func() {
		defer wgB.Done()
		for !stop.Load() {
			s, err := b.status(b.b)
			if err == nil {
				bStatus = s
				if s.Applied == end || (s.Applied != "" && !streamLess(s.Applied, end)) {
					appliedAt = time.Since(bStart)
					return
				}
			}
			if time.Since(bStart) > *catchWait {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	servingAt, firstAnswerRefused, err = b.waitServing(b.b, bStart, last, "b-restart.log")
	if err != nil {
		stop.Store(true)
		wgB.Wait()
		return err
	}
	if firstAnswerRefused {
		refusesAt = servingAt
	}
	for refusesAt == 0 {
		refused, err := b.refuses(b.b, last)
		if err != nil {
			appliedErr = err
			break
		}
		if refused {
			refusesAt = time.Since(bStart)
			break
		}
		if time.Since(bStart) > *catchWait {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if appliedErr != nil {
		stop.Store(true)
	}
	wgB.Wait()
	if appliedErr != nil {
		return appliedErr
	}
	if appliedAt == 0 || refusesAt == 0 {
		bCount, err := b.count(b.b)
		return fmt.Errorf("B did not catch up within %s of its start (position %q, log end %s; refuses the last token: %v; lists %d entries (%v), A %d)",
			*catchWait, bStatus.Applied, end, refusesAt != 0, bCount, err, aCount)
	}
	appliedTotal := b.metric(b.b, "caddy_jwtguard_cluster_applied_total")
	bCount, err := b.count(b.b)
	if err != nil {
		return fmt.Errorf("counting B's list: %w", err)
	}
	caughtUp := max(appliedAt, refusesAt)
	logLines := grepLog(filepath.Join(*outDir, "logs", "b-restart.log"),
		`cluster replication starting|serving before catching up|snapshot|revocation store opened|cluster: `)

	b.result("catch-up, %d revocations made on A while B was stopped (%d clients):", total, *writers)
	b.result("  writes on A: %.1f s (%.0f/s); A had published them all (pending 0) %.1f s after the first write, %.1f s after the last (pending %d at the last write, at most %d seen)",
		writeTime.Seconds(), float64(total)/writeTime.Seconds(), published.Seconds(), (published - writeTime).Seconds(), pendingAtEnd, maxPending.Load())
	b.result("  Redis: the log holds %d changes, the live set %d entries; A lists %d", logLen, live, aCount)
	b.result("  B start -> serving (first answer on its site, sync_timeout %s): %.2f s", *syncTO, servingAt.Seconds())
	b.result("  B start -> position at the log's end: %.2f s; -> refuses the last token: %.2f s (its first answer %s)",
		appliedAt.Seconds(), refusesAt.Seconds(), map[bool]string{true: "already did", false: "did not"}[firstAnswerRefused])
	after := max(0, caughtUp-servingAt)
	met := "met"
	if after > 5*time.Second {
		met = "MISSED"
	}
	b.result("  B had them all %.2f s after it started serving (target 5 s: %s); %.2f s after its start", after.Seconds(), met, caughtUp.Seconds())
	verdict := "all there"
	if bCount != aCount {
		verdict = fmt.Sprintf("MISSING %d", aCount-bCount)
	}
	b.result("  B lists %d entries, A %d: %s; B's caddy_jwtguard_cluster_applied_total: %.0f", bCount, aCount, verdict, appliedTotal)
	for _, l := range logLines {
		b.result("  B's log: %s", l)
	}
	if bCount != aCount {
		return fmt.Errorf("B lists %d entries, A %d", bCount, aCount)
	}
	return nil
}

// cpuProfile waits for n's admin endpoint to answer (it does before the
// config runs) and saves a CPU profile of -profile to path.
func (b *bench) cpuProfile(n *node, start time.Time, path string) error {
	for {
		resp, err := b.client.Get(n.admin + "/debug/pprof/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Since(start) > *startWait {
			return err
		}
		time.Sleep(2 * time.Millisecond)
	}
	say("profiling B for %s, from %.2f s after its start", *profile, time.Since(start).Seconds())
	c := &http.Client{Transport: b.client.Transport, Timeout: *profile + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", n.admin, int(math.Ceil(profile.Seconds()))))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/debug/pprof/profile answered %d", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// grepLog returns the lines of a Caddy log that match pattern, each cut to
// its level, logger, message and fields (no timestamp).
func grepLog(path, pattern string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	re := regexp.MustCompile(pattern)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if !re.MatchString(l) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			delete(m, "ts")
			short, _ := json.Marshal(m)
			l = string(short)
		}
		out = append(out, l)
	}
	return out
}
