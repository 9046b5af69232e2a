package cluster

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

// The tests run their own redis-server (Debian's redis-server package) on
// a free 127.0.0.1 port in a temporary directory, never a system service.

var (
	redisBinOnce sync.Once
	redisBin     string
	redisBinErr  error
)

// redisServerBin finds redis-server, installing the Debian package when it
// is missing and this process may (root with apt-get, as on CI machines).
func redisServerBin() (string, error) {
	redisBinOnce.Do(func() {
		if p, err := exec.LookPath("redis-server"); err == nil {
			redisBin = p
			return
		}
		if os.Geteuid() != 0 {
			redisBinErr = fmt.Errorf("redis-server is not installed (apt-get install redis-server) and this user cannot install it")
			return
		}
		if _, err := exec.LookPath("apt-get"); err != nil {
			redisBinErr = fmt.Errorf("redis-server is not installed and there is no apt-get to install it")
			return
		}
		out, err := exec.Command("sh", "-c", "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server").CombinedOutput()
		if err != nil {
			redisBinErr = fmt.Errorf("installing redis-server: %v\n%s", err, out)
			return
		}
		redisBin, redisBinErr = exec.LookPath("redis-server")
	})
	return redisBin, redisBinErr
}

// redisServer is one redis-server process the test owns.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	aof  bool
	args []string // more redis-server options

	mu  sync.Mutex
	cmd *exec.Cmd
}

// startRedis starts a redis-server; with aof, its data survives restarts
// (appendfsync always), else it comes back empty.
func startRedis(t testing.TB, aof bool) *redisServer {
	t.Helper()
	bin, err := redisServerBin()
	if err != nil {
		t.Skipf("no Redis to test against: %v", err)
	}
	s := &redisServer{t: t, bin: bin, dir: t.TempDir(), port: freePort(t), aof: aof}
	s.start()
	t.Cleanup(s.stop)
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

func (s *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func (s *redisServer) start() {
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
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.port), Protocol: 2, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server did not answer: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the process (as a crash would) and waits for it.
func (s *redisServer) stop() {
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

// restart brings Redis back on the same port: with its data when aof,
// else empty.
func (s *redisServer) restart() {
	s.stop()
	s.start()
}

// wipe makes the next start an empty Redis.
func (s *redisServer) wipe() {
	s.stop()
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "appendonly") || e.Name() == "dump.rdb" {
			_ = os.RemoveAll(filepath.Join(s.dir, e.Name()))
		}
	}
	s.start()
}

func (s *redisServer) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// client is a plain client for looking at what the engines wrote.
func (s *redisServer) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.port), Protocol: 2})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// startRedisCluster starts a Redis Cluster of three masters and returns
// their URLs.
func startRedisCluster(t *testing.T) []string {
	t.Helper()
	bin, err := redisServerBin()
	if err != nil {
		t.Skipf("no Redis to test against: %v", err)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("no redis-cli to create a Redis Cluster with")
	}
	var urls, addrs []string
	for range 3 {
		s := &redisServer{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
		s.args = []string{"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(freePort(t)), "--cluster-node-timeout", "2000"}
		s.start()
		t.Cleanup(s.stop)
		urls = append(urls, s.url()[:len(s.url())-2]) // no database number in a cluster
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

// saveData copies the server's data files (AOF) aside; restoreData puts
// them back, as a restore from an older backup would. Both with the
// server stopped.
func (s *redisServer) saveData() string {
	s.t.Helper()
	dst := s.t.TempDir()
	if out, err := exec.Command("cp", "-a", filepath.Join(s.dir, "appendonlydir"), dst).CombinedOutput(); err != nil {
		s.t.Fatalf("saving Redis's data: %v %s", err, out)
	}
	return dst
}

func (s *redisServer) restoreData(saved string) {
	s.t.Helper()
	_ = os.RemoveAll(filepath.Join(s.dir, "appendonlydir"))
	if out, err := exec.Command("cp", "-a", filepath.Join(saved, "appendonlydir"), s.dir).CombinedOutput(); err != nil {
		s.t.Fatalf("restoring Redis's data: %v %s", err, out)
	}
}

// startSentinel starts a Sentinel watching srv as master "jwtguard-master"
// and returns the URL engines use to find the master through it.
func startSentinel(t *testing.T, srv *redisServer) string {
	t.Helper()
	s := &redisServer{t: t, bin: srv.bin, dir: t.TempDir(), port: freePort(t)}
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
	t.Cleanup(s.stop)
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
