// Package redistest runs redis-server processes for tests: Debian's
// redis-server package, on a free 127.0.0.1 port, in a temporary
// directory, never the system's service. make test installs the package
// when it is missing; so does Server when it runs as root with apt-get.
package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binOnce sync.Once
	bin     string
	binErr  error
)

// Binary finds redis-server, installing it when it is missing and this
// process may (root with apt-get, as on CI machines).
func Binary() (string, error) {
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

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts a redis-server. With aof its data survives Kill and Start
// (appendfsync always); without, it comes back empty. It is killed when
// the test ends.
func Start(t testing.TB, aof bool) *Server {
	t.Helper()
	b, err := Binary()
	if err != nil {
		t.Fatalf("no Redis to test against: %v", err)
	}
	s := &Server{t: t, bin: b, dir: t.TempDir(), port: freePort(t), aof: aof}
	s.Start()
	t.Cleanup(s.Kill)
	return s
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

// Wipe kills the server and deletes its data: the next Start is a Redis
// restarted empty, or replaced.
func (s *Server) Wipe() {
	s.Kill()
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(s.dir, e.Name()))
	}
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
