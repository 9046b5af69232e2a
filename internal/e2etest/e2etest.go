// Package e2etest runs the real Caddy binary, built from ./cmd/caddy with
// jwtguard in it, for end-to-end tests.
//
// A test builds the binary once per test process with [Build], checks the
// ports it needs with [RequirePortsFree], starts Caddy with [Start] (which
// gives it a throw-away HOME, so its data dir and jwtguard's revocation
// store live in a temp dir) and waits for it with [Process.WaitReady].
// Caddy is stopped when the test ends; [Process.Stop] and [Process.Kill]
// stop it earlier, e.g. to read the complete log or to simulate a crash.
// Starting a second Process with the same [Options.Home] restarts Caddy on
// the same data.
package e2etest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts. Generous because the test machine may be small and shared.
const (
	buildTimeout = 10 * time.Minute // a cold Caddy build takes minutes
	cliTimeout   = 30 * time.Second
	stopTimeout  = 15 * time.Second // graceful shutdown before SIGKILL
	waitDelay    = 5 * time.Second  // for output copying after exit
)

var build struct {
	once sync.Once
	bin  string
	err  error
}

// Build compiles ./cmd/caddy, once per test process, and returns the path
// of the binary. The binary lives in a per-process directory under the
// system temp dir; directories of test processes that are gone are removed
// here, since a test package cannot run code at process exit without a
// TestMain of its own.
func Build(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		build.bin, build.err = buildCaddy()
	})
	if build.err != nil {
		t.Fatalf("building ./cmd/caddy: %v", build.err)
	}
	return build.bin
}

func buildCaddy() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	parent := filepath.Join(os.TempDir(), "jwtguard-e2e")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	removeStaleBuilds(parent)
	dir := filepath.Join(parent, strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "caddy")

	// go test puts its own GOROOT/bin first in PATH, so this is the same
	// toolchain that is running the test.
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return bin, nil
}

// removeStaleBuilds deletes the build directories of test processes that
// no longer run, so each run does not leave a Caddy binary behind.
func removeStaleBuilds(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		os.RemoveAll(filepath.Join(parent, e.Name()))
	}
}

// ModuleRoot returns the directory holding go.mod, found from the working
// directory upwards, so helpers work from a test in any package.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = up
	}
}

// RequirePortsFree fails the test when any of the TCP addresses (as given
// to net.Listen, e.g. ":8080" or "localhost:2019") is in use. A Caddy that
// cannot bind would exit, and another server on the port would answer in
// its place, so this is checked up front with a clear message.
func RequirePortsFree(t testing.TB, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("address %s is needed by this test but cannot be bound (another Caddy, e.g. `make run`, still running?): %v", addr, err)
		}
		ln.Close()
	}
}

// Options says how to start Caddy.
type Options struct {
	// Arguments after the binary, e.g.
	// {"run", "--config", "example/Caddyfile", "--adapter", "caddyfile"}.
	Args []string
	// Extra environment, KEY=VALUE, applied last. The inherited
	// environment has every JWTGUARD_* variable removed, so a config's
	// defaults apply unless set here.
	Env []string
	// HOME for Caddy; XDG_DATA_HOME, XDG_CONFIG_HOME and XDG_CACHE_HOME
	// are set beneath it. Default: a new t.TempDir(). Pass a previous
	// Process's Home to restart on the same data.
	Home string
	// Working directory. Default: the module root, so relative paths such
	// as example/Caddyfile work from any package.
	Dir string
}

// Process is a running Caddy.
type Process struct {
	// Home is Caddy's HOME; DataDir is Caddy's data directory in it (where
	// jwtguard keeps its store by default, in DataDir/jwtguard).
	Home, DataDir string

	cmd     *exec.Cmd
	env     []string
	stderr  *logBuffer
	done    chan struct{} // closed once the process has exited
	waitErr error         // set before done is closed
	stopped sync.Once
}

// Start starts Caddy and arranges for it to be stopped when the test ends,
// logging the tail of its stderr if the test failed.
func Start(t testing.TB, bin string, opts Options) *Process {
	t.Helper()
	if opts.Home == "" {
		opts.Home = t.TempDir()
	}
	if opts.Dir == "" {
		root, err := ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		opts.Dir = root
	}
	data := filepath.Join(opts.Home, ".local", "share")
	p := &Process{
		Home:    opts.Home,
		DataDir: filepath.Join(data, "caddy"),
		env: append(cleanEnv(),
			"HOME="+opts.Home,
			"XDG_DATA_HOME="+data,
			"XDG_CONFIG_HOME="+filepath.Join(opts.Home, ".config"),
			"XDG_CACHE_HOME="+filepath.Join(opts.Home, ".cache"),
		),
		stderr: new(logBuffer),
		done:   make(chan struct{}),
	}
	p.env = append(p.env, opts.Env...)

	p.cmd = exec.Command(bin, opts.Args...)
	p.cmd.Dir = opts.Dir
	p.cmd.Env = p.env
	p.cmd.Stderr = p.stderr
	p.cmd.WaitDelay = waitDelay
	setProcAttr(p.cmd)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() {
			t.Logf("caddy stderr (last lines):\n%s", p.Tail(40))
		}
	})
	return p
}

// cleanEnv is the test's environment without the variables Start sets and
// without JWTGUARD_*, which would change the example's configuration.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "JWTGUARD_"),
			name == "HOME", strings.HasPrefix(name, "XDG_"):
			continue
		}
		env = append(env, kv)
	}
	return env
}

// WaitReady polls url until it answers with any HTTP response, failing the
// test if Caddy exits first or timeout passes.
func (p *Process) WaitReady(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := answered(url, timeout, p.done); err != nil {
		select {
		case <-p.done:
			t.Fatalf("caddy exited before %s answered (%v); stderr:\n%s", url, p.waitErr, p.Tail(40))
		default:
			t.Fatalf("%s did not answer within %v (last error: %v); caddy stderr:\n%s", url, timeout, err, p.Tail(40))
		}
	}
}

// Reloaded waits, after a config load that replaced a server, until url
// is answered. Caddy's old server shares the listener with the new one and
// can still accept a connection just after /load returns; Go's http.Server
// then drops it unanswered (EOF), because it reads the first request after
// its Shutdown began. A client would retry; a test's next request should
// not be the one to meet that.
func Reloaded(t testing.TB, url string) {
	t.Helper()
	if err := answered(url, 10*time.Second, nil); err != nil {
		t.Fatalf("%s not answered after the reload: %v", url, err)
	}
}

// answered polls url until it answers with any HTTP response (nil), stop
// is closed or timeout passes (the last error).
func answered(url string, timeout time.Duration, stop <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.After(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		select {
		case <-stop:
			return err
		case <-deadline:
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop shuts Caddy down gracefully (SIGINT), killing it if it has not
// exited within 15 s, and waits for it to exit, so that Lines is complete
// afterwards. Calling it again does nothing.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	p.stopped.Do(func() {
		if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
			p.cmd.Process.Kill() // no SIGINT on this OS, or already gone
		}
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			t.Errorf("caddy did not exit within %v of SIGINT; killing it", stopTimeout)
			p.cmd.Process.Kill()
			<-p.done // bounded by WaitDelay
		}
	})
}

// Kill stops Caddy with SIGKILL, as a crash would, and waits for it to
// exit. Calling Stop or Kill afterwards does nothing.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	p.stopped.Do(func() {
		if err := p.cmd.Process.Kill(); err != nil {
			t.Logf("kill: %v", err)
		}
		<-p.done
	})
}

// Lines returns Caddy's stderr so far, one log line per element (Caddy
// logs JSON there by default). Call Stop first to be sure it has
// everything: Caddy writes an access log line after the response.
func (p *Process) Lines() []string { return p.stderr.lines() }

// Tail returns the last n lines of Caddy's stderr, for failure messages.
func (p *Process) Tail(n int) string {
	lines := p.Lines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Run runs the binary with args, e.g. {"jwtguard", "sign", ...}, without
// JWTGUARD_* in its environment, failing the test if it fails, and returns
// its trimmed stdout.
func Run(t testing.TB, bin string, args ...string) string {
	t.Helper()
	return runCLI(t, bin, cleanEnv(), args)
}

func runCLI(t testing.TB, bin string, env, args []string) string {
	t.Helper()
	res := tryCLI(t, bin, env, args)
	if res.ExitCode != 0 {
		t.Fatalf("caddy %s: exit status %d\nstderr: %s", strings.Join(args, " "), res.ExitCode, res.Stderr)
	}
	return res.Stdout
}

// logBuffer collects a process's output; the exec package writes to it
// from its own goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) lines() []string {
	b.mu.Lock()
	s := b.buf.String()
	b.mu.Unlock()
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// FreshClient opens a new connection for every request. A killed Caddy
// leaves none behind for the next one's requests, and every config load
// replaces Caddy's admin server, so a kept-alive connection to the one it
// replaced would end a later POST (which Go does not retry) in EOF.
var FreshClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// AdminClient is FreshClient for Caddy's admin endpoint, which every
// config load replaces: the old admin server, shut down in the
// background, can still accept a connection after the load has answered,
// and then closes it unanswered (see [Reloaded]). Caddy read nothing of
// such a request, so AdminClient sends it again, up to three times.
var AdminClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: resendUnanswered{&http.Transport{DisableKeepAlives: true}},
}

type resendUnanswered struct{ next http.RoundTripper }

func (r resendUnanswered) RoundTrip(req *http.Request) (*http.Response, error) {
	for try := 1; ; try++ {
		resp, err := r.next.RoundTrip(req)
		unanswered := errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
		if !unanswered || try == 3 || req.Context().Err() != nil || (req.Body != nil && req.GetBody == nil) {
			return resp, err
		}
		req = req.Clone(req.Context())
		if req.GetBody != nil {
			if req.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Eventually calls cond every 20 ms until it holds (true) or timeout
// passes (false), for the caller to say what did not happen.
func Eventually(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
