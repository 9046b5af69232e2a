// Package redistest runs redis-server processes for tests: Debian's
// redis-server package, on a free 127.0.0.1 port, in a temporary
// directory, never the system's service; also a Redis Cluster of three
// masters and a Sentinel. make test installs the package when it is
// missing; so does Server when it runs as root with apt-get.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	binOnce sync.Once
	bin     string
	binErr  error
)

// binary finds redis-server, installing it when it is missing and this
// process may (root with apt-get, as on CI machines).
func binary() (string, error) {
	binOnce.Do(func() {
		if p, err := exec.LookPath("redis-server"); err == nil {
			bin = p
			return
		}
		if os.Geteuid() != 0 {
			binErr = fmt.Errorf("redis-server is not installed (apt-get install redis-server) and this user cannot install it")
			return
		}
		if _, err := exec.LookPath("apt-get"); err != nil {
			binErr = fmt.Errorf("redis-server is not installed and there is no apt-get to install it")
			return
		}
		out, err := exec.Command("sh", "-c", "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("installing redis-server: %v\n%s", err, out)
			return
		}
		bin, binErr = exec.LookPath("redis-server")
	})
	return bin, binErr
}

// Server is one redis-server the test owns.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	aof  bool
	args []string // more redis-server options

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts a redis-server. With aof its data survives Kill and Start
// (appendfsync always); without, it comes back empty. It is killed when
// the test ends.
func Start(t testing.TB, aof bool) *Server {
	t.Helper()
	b, err := binary()
	if err != nil {
		t.Fatalf("no Redis to test against: %v", err)
	}
	s := &Server{t: t, bin: b, dir: t.TempDir(), port: freePort(t), aof: aof}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Client is a plain client for looking at what a test's code wrote.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.port), Protocol: 2})
	s.t.Cleanup(func() { c.Close() })
	return c
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

// Start runs the server (again), on the same port and directory, and
// waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--save", "", "--daemonize", "no", "--logfile", filepath.Join(s.dir, "redis.log"),
	}
	args = append(args, s.args...)
	if s.aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for !s.answers() {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server did not answer PING\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answers sends PING over a raw connection: no client library needed.
func (s *Server) answers() bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 7)
	n, _ := c.Read(buf)
	return string(buf[:n]) == "+PONG\r\n"
}

// Kill ends the server as a crash would, and waits for it.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused process dies only once resumed
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// Restart brings the server back on the same port: with its data when
// aof, else empty.
func (s *Server) Restart() {
	s.Kill()
	s.Start()
}

// Wipe restarts the server without its data: a Redis restarted empty, or
// replaced.
func (s *Server) Wipe() {
	s.Kill()
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "appendonly") || e.Name() == "dump.rdb" {
			_ = os.RemoveAll(filepath.Join(s.dir, e.Name()))
		}
	}
	s.Start()
}

// SaveData copies the server's data files (AOF) aside; RestoreData puts
// them back, as a restore from an older backup would. Both with the
// server stopped.
func (s *Server) SaveData() string {
	s.t.Helper()
	dst := s.t.TempDir()
	if out, err := exec.Command("cp", "-a", filepath.Join(s.dir, "appendonlydir"), dst).CombinedOutput(); err != nil {
		s.t.Fatalf("saving Redis's data: %v %s", err, out)
	}
	return dst
}

func (s *Server) RestoreData(saved string) {
	s.t.Helper()
	_ = os.RemoveAll(filepath.Join(s.dir, "appendonlydir"))
	if out, err := exec.Command("cp", "-a", filepath.Join(saved, "appendonlydir"), s.dir).CombinedOutput(); err != nil {
		s.t.Fatalf("restoring Redis's data: %v %s", err, out)
	}
}

// StartCluster starts a Redis Cluster of three masters and returns their
// URLs.
func StartCluster(t *testing.T) []string {
	t.Helper()
	b, err := binary()
	if err != nil {
		t.Fatalf("no Redis to test against: %v", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("no redis-cli (Debian's redis-tools) to create a Redis Cluster with")
	}
	var urls, addrs []string
	for range 3 {
		s := &Server{t: t, bin: b, dir: t.TempDir(), port: freePort(t)}
		s.args = []string{"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(freePort(t)), "--cluster-node-timeout", "2000"}
		s.Start()
		t.Cleanup(s.Kill)
		urls = append(urls, fmt.Sprintf("redis://127.0.0.1:%d", s.port)) // no database number in a cluster
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", s.port))
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("creating the cluster: %v\n%s", err, out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a, Protocol: 2})
		for {
			info, _ := c.ClusterInfo(context.Background()).Result()
			if strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok on %s: %s", a, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return urls
}

// StartSentinel starts a Sentinel watching srv as master "jwtguard-master"
// and returns the URL engines use to find the master through it.
func StartSentinel(t *testing.T, srv *Server) string {
	t.Helper()
	s := &Server{t: t, bin: srv.bin, dir: t.TempDir(), port: freePort(t)}
	conf := filepath.Join(s.dir, "sentinel.conf")
	txt := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor jwtguard-master 127.0.0.1 %d 1\n", s.port, s.dir, srv.port)
	if err := os.WriteFile(conf, []byte(txt), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.bin, conf, "--sentinel", "--logfile", filepath.Join(s.dir, "sentinel.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	t.Cleanup(s.Kill)
	c := redis.NewSentinelClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.port), Protocol: 2})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		addr, err := c.GetMasterAddrByName(context.Background(), "jwtguard-master").Result()
		if err == nil && len(addr) == 2 && addr[1] == strconv.Itoa(srv.port) {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "sentinel.log"))
			t.Fatalf("sentinel does not know the master: %v %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("redis://127.0.0.1:%d/0?master_name=jwtguard-master", s.port)
}

// Pause stops the process (SIGSTOP): connections stay open and nothing
// answers, like a server that hangs. Resume continues it.
func (s *Server) Pause()  { s.signal(syscall.SIGSTOP) }
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}
