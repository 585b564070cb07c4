package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// caddyProc is one running Caddy started from the binary under test.
type caddyProc struct {
	name string
	url  string // http://127.0.0.1:port
	dir  string // temporary config/data/home directory
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
// home, then waits until port accepts connections. The returned process must
// be stopped with stop, also on error paths.
func startCaddy(ctx context.Context, bin, name, caddyfile string, port int) (*caddyProc, error) {
	dir, err := os.MkdirTemp("", "aigw-bench-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p := &caddyProc{
		name: name,
		url:  fmt.Sprintf("http://127.0.0.1:%d", port),
		dir:  dir,
		logs: &syncBuffer{},
		done: make(chan struct{}),
	}
	p.cmd = exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	p.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = childProcAttr()
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
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

// stop terminates Caddy (SIGTERM, SIGKILL after 5 s) and removes its
// directory. It is idempotent.
func (p *caddyProc) stop() {
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
		os.RemoveAll(p.dir)
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Caddyfiles of the two proxies. Both listen on 127.0.0.1 only, with the
// admin endpoint off and no access log, so that they differ only by the
// handler.
const reverseProxyCaddyfile = `{
	admin off
	persist_config off
}

http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	reverse_proxy %[2]s
}
`

const gatewayCaddyfile = `{
	admin off
	persist_config off
	ai_gateway {
		provider fake {
			base_url http://%[2]s/v1
		}
		model bench {
			target fake fake-model
		}
	}
}

http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	ai_gateway
}
`
