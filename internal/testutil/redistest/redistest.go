// Package redistest runs real redis-server processes for tests.
//
// Start launches redis-server on a free 127.0.0.1 port without persistence
// and stops it when the test ends; StartCluster does the same for a
// three-master Redis Cluster and StartSentinel for a Sentinel watching a
// server. When redis-server (or, for a cluster,
// redis-cli) is not on PATH the test is skipped, unless the environment
// variable CI is set, in which case it fails: CI must exercise the Redis code
// paths.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a redis-server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	conf string   // configuration file, the first argument when set
	args []string // extra redis-server arguments

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start launches a redis-server on a free 127.0.0.1 port, waits until it
// answers PING and registers its termination with t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, freePort, nil)
}

// start launches a redis-server with args on a port from pick.
func start(t testing.TB, pick func() (int, error), args func(s *Server) []string) *Server {
	t.Helper()
	s := &Server{t: t, bin: lookPath(t, "redis-server"), dir: t.TempDir()}
	t.Cleanup(s.Kill)
	// A free port can be taken by someone else between probing and binding;
	// try a few.
	var lastErr error
	for range 5 {
		s.port, lastErr = pick()
		if lastErr != nil {
			continue
		}
		if args != nil {
			s.args = args(s)
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
}

// lookPath finds a Redis program on PATH, skipping the test (failing it
// when CI is set) when it is missing.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redistest: %s not found on PATH (required when CI is set): %v", name, err)
		}
		t.Skipf("redistest: %s not found on PATH: %v", name, err)
	}
	return bin
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr returns host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("already running")
	}
	out := &bytes.Buffer{}
	var argv []string
	if s.conf != "" {
		argv = append(argv, s.conf)
	}
	cmd := exec.Command(s.bin, append(append(argv,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	), s.args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	if err := waitPing(s.Addr(), done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%w; output:\n%s", err, out.String())
	}
	s.cmd, s.done = cmd, done
	return nil
}

// waitPing polls addr with a raw PING until it answers +PONG, the process
// exits (done) or startTimeout passes.
func waitPing(addr string, done <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		if ping(addr) == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server exited before answering PING")
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within %v", addr, startTimeout)
		}
	}
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}

// Kill stops the server abruptly with SIGKILL (no-op when not running).
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart kills the server if it is running and starts a fresh, empty one on
// the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	// The port was ours a moment ago; retry briefly in case the kernel has
	// not released it yet.
	for range 50 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restarting redis-server on %s: %v", s.Addr(), err)
}

// Client returns a new go-redis client for the server, closed when the test
// ends. Each call returns a separate client (connection pool), e.g. to
// simulate several gateway processes.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:        s.Addr(),
		DialTimeout: time.Second,
	})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Keys returns the keys on the server matching pattern.
func (s *Server) Keys(pattern string) []string {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := c.Keys(ctx, pattern).Result()
	if err != nil {
		s.t.Fatalf("redistest: KEYS on %s: %v", s.Addr(), err)
	}
	return keys
}

// FlushAll empties the server.
func (s *Server) FlushAll() {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.FlushAll(ctx).Err(); err != nil {
		s.t.Fatalf("redistest: FLUSHALL: %v", err)
	}
}
