// Package chromatest starts a real Chroma server for tests: the npm
// package chromadb (with its native bindings) that `make deps-chroma`
// installs under .deps/chroma in the repository, run as
// `npx chroma run --path DIR --host 127.0.0.1 --port N` on a free port.
package chromatest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Dir is where `make deps-chroma` installs the package, relative to the
// repository's root.
const Dir = ".deps/chroma"

// startTimeout bounds the wait for the first heartbeat.
const startTimeout = 60 * time.Second

// Server is a running Chroma server owned by a test.
type Server struct {
	// URL is http://127.0.0.1:port.
	URL string
	cmd *exec.Cmd
	out *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Installed returns the directory holding the installed package, or an
// error saying how to install it.
func Installed() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			dir := filepath.Join(d, Dir)
			if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", "chroma")); err != nil {
				return "", fmt.Errorf("chroma is not installed in %s: run `make deps-chroma`", dir)
			}
			return dir, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}

// Start runs a Chroma server with its data in a temporary directory and
// stops it when the test ends. Without the package it fails the test
// when CI is set and skips it otherwise.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartAt(t, t.TempDir())
}

// StartAt is Start with the data under dataDir (a restart keeps it).
func StartAt(t testing.TB, dataDir string) *Server {
	t.Helper()
	dir, err := Installed()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromatest: %v (required when CI is set)", err)
		}
		t.Skipf("chromatest: %v", err)
	}
	npx, err := exec.LookPath("npx")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromatest: npx not on PATH (required when CI is set): %v", err)
		}
		t.Skipf("chromatest: npx not on PATH: %v", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", port), out: &syncBuffer{}}
	s.cmd = exec.Command(npx, "--no-install", "chroma", "run", "--path", dataDir, "--host", "127.0.0.1", "--port", fmt.Sprint(port))
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // npx runs the server as a child: stop the group
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("chromatest: starting chroma: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("chroma output:\n%s", s.out.String())
		}
	})
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			t.Fatalf("chromatest: chroma exited during start:\n%s", s.out.String())
		default:
		}
		resp, err := http.Get(s.URL + "/api/v2/heartbeat")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromatest: no heartbeat within %v:\n%s", startTimeout, s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
