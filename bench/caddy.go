package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one child process of the benchmark: a Caddy started from the
// binary under test, a peer gateway or redis-server.
type proc struct {
	name string
	url  string // http://127.0.0.1:port (empty for redis-server)
	dir  string // temporary config/data/home directory, removed by stop
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	once sync.Once
}

// syncBuffer collects a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep memory bounded; the tail is what matters
		s.b.Reset()
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startCaddy writes caddyfile to a temporary directory and runs
// `caddy run --config FILE --adapter caddyfile` with that directory as its
// home on the CPUs cpus (nil: anywhere), then waits until port accepts
// connections. The returned process must be stopped with stop, also on
// error paths.
func startCaddy(ctx context.Context, bin, name, caddyfile string, port int, cpus []int) (*proc, error) {
	dir, err := os.MkdirTemp("", "aigw-bench-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	return startProc(ctx, name, cmd, dir, port, cpus)
}

// startProc starts cmd on cpus, owning dir (may be empty), and waits until
// port on 127.0.0.1 accepts connections.
func startProc(ctx context.Context, name string, cmd *exec.Cmd, dir string, port int, cpus []int) (*proc, error) {
	p := &proc{
		name: name,
		url:  fmt.Sprintf("http://127.0.0.1:%d", port),
		dir:  dir,
		cmd:  cmd,
		logs: &syncBuffer{},
		done: make(chan struct{}),
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = childProcAttr()
	if err := startPinned(p.cmd, cpus); err != nil {
		if dir != "" {
			os.RemoveAll(dir)
		}
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()

	deadline := time.Now().Add(30 * time.Second)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for {
		select {
		case <-p.done:
			err := fmt.Errorf("%s exited during start:\n%s", name, tail(p.logs.String(), 4000))
			p.stop()
			return nil, err
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not listen on %s within 30s:\n%s", name, addr, tail(p.logs.String(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pid is the child's process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop terminates the process (SIGTERM, SIGKILL after 5 s) and removes its
// directory. It is idempotent.
func (p *proc) stop() {
	p.once.Do(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if p.dir != "" {
			os.RemoveAll(p.dir)
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Caddyfiles of the proxies. All listen on 127.0.0.1 only, with the admin
// endpoint off and no access log, so that they differ only by the handler
// and the ai_gateway options.
const reverseProxyCaddyfile = `{
	admin off
	persist_config off
}

http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	reverse_proxy %[2]s
}
`

// benchSecret is the gateway key of the full-pipeline configurations.
const benchSecret = "sk-bench-0123456789abcdef"

// gatewayCaddyfile returns the ai_gateway configuration on port in front of
// the fakellm at fakeAddr. With pipeline it declares a key with every limit
// (rpm, tpm, concurrency, budget) and model rpm/tpm, all far above what the
// benchmark reaches, so every request pays for every check and none is
// refused; with a non-empty redisURL those checks run in Redis, failing
// closed with a 1 s timeout so that a slow Redis shows up as errors rather
// than as skipped checks.
func gatewayCaddyfile(port int, fakeAddr string, pipeline bool, redisURL string) string {
	var b strings.Builder
	b.WriteString("{\n\tadmin off\n\tpersist_config off\n\tai_gateway {\n")
	fmt.Fprintf(&b, "\t\tprovider fake {\n\t\t\tbase_url http://%s/v1\n\t\t}\n", fakeAddr)
	limits := ""
	if pipeline {
		limits = "\t\t\trpm 1000000000\n\t\t\ttpm 1000000000\n"
	}
	for _, m := range []struct{ name, upstream string }{
		{"bench", "fake-model"}, {slowModel, slowModel}, {pacedModel, pacedModel},
	} {
		fmt.Fprintf(&b, "\t\tmodel %s {\n\t\t\ttarget fake %s\n%s\t\t}\n", m.name, m.upstream, limits)
	}
	if pipeline {
		fmt.Fprintf(&b, "\t\tkey bench {\n\t\t\tsecret %s\n", benchSecret)
		b.WriteString("\t\t\trpm 1000000000\n\t\t\ttpm 1000000000\n\t\t\tconcurrency 1000000\n\t\t\tbudget 1000000000 month\n\t\t}\n")
		b.WriteString("\t\tprice fake-model 0.15 0.6\n\t\tprice bench 0.15 0.6\n")
	}
	if redisURL != "" {
		fmt.Fprintf(&b, "\t\tredis %s {\n\t\t\ttimeout 1s\n\t\t\ton_failure fail_closed\n\t\t}\n", redisURL)
	}
	fmt.Fprintf(&b, "\t}\n}\n\nhttp://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tai_gateway\n}\n", port)
	return b.String()
}
