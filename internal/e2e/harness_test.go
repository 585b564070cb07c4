package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// caddyBin is the gateway binary built once by TestMain.
var caddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aigw-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddyBin = filepath.Join(dir, "caddy")
	args := []string{"build", "-o", caddyBin}
	if raceEnabled {
		// The gateway under test runs with the race detector too.
		args = append(args, "-race")
	}
	args = append(args, "github.com/caddy-ai-gateway/caddy-ai-gateway/cmd/caddy")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building caddy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a free TCP port on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Fake is an in-process fakellm upstream.
type Fake struct {
	*fakellm.Server
	URL string
}

func startFake(t testing.TB, opts fakellm.Options) *Fake {
	t.Helper()
	s := fakellm.New(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return &Fake{Server: s, URL: ts.URL}
}

// Gateway is a running Caddy.
type Gateway struct {
	URL       string // http://127.0.0.1:port
	AdminURL  string
	Port      int
	AdminPort int
	cmd       *exec.Cmd
	logs      *syncBuffer
	done      chan struct{}
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

// Logs returns what Caddy printed so far.
func (g *Gateway) Logs() string { return g.logs.String() }

// startGateway renders caddyfile as a text/template with .Port, .AdminPort
// and data's fields, starts Caddy and waits until it serves.
func startGateway(t testing.TB, caddyfile string, data map[string]any) *Gateway {
	t.Helper()
	g := &Gateway{Port: freePort(t), AdminPort: freePort(t), logs: &syncBuffer{}, done: make(chan struct{})}
	g.URL = fmt.Sprintf("http://127.0.0.1:%d", g.Port)
	g.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", g.AdminPort)
	if data == nil {
		data = map[string]any{}
	}
	data["Port"], data["AdminPort"] = g.Port, g.AdminPort
	var buf bytes.Buffer
	if err := template.Must(template.New("Caddyfile").Option("missingkey=error").Parse(caddyfile)).Execute(&buf, data); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(caddyBin, "run", "--config", path, "--adapter", "caddyfile")
	g.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	g.cmd.Stdout, g.cmd.Stderr = g.logs, g.logs
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("caddy logs:\n%s", tail(g.Logs(), 6000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-g.done:
			t.Fatalf("caddy exited during start:\n%s", g.Logs())
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", g.Port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not start:\n%s", g.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop terminates Caddy gracefully (SIGKILL after 10 s).
func (g *Gateway) Stop() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// client returns an official OpenAI SDK client pointed at the gateway.
func (g *Gateway) client(opts ...option.RequestOption) openai.Client {
	base := []option.RequestOption{
		option.WithBaseURL(g.URL + "/v1/"),
		option.WithAPIKey("client-key-never-forwarded"),
		option.WithMaxRetries(0),
		option.WithRequestTimeout(30 * time.Second),
	}
	return openai.NewClient(append(base, opts...)...)
}

// post sends a raw request and returns status, headers and body.
func post(t testing.TB, url, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, req)
}

func do(t testing.TB, req *http.Request) (int, http.Header, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, b.String()
}

// reload posts the gateway's own Caddyfile to the admin API again, forcing
// a reload of an identical config. Caddy restarts its admin endpoint on every
// load and closes the old server's idle connections, which a POST is not
// retried on: the reload goes on a connection of its own, and the idle
// connections of the default client are dropped after it.
func (g *Gateway) reload(t testing.TB) {
	t.Helper()
	cfg, err := os.ReadFile(g.cmd.Args[3])
	if err != nil {
		t.Fatal(err)
	}
	req := mustReq(t, http.MethodPost, g.AdminURL+"/load", string(cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	req.Close = true
	if s, _, b := do(t, req); s != 200 {
		t.Fatalf("reload: %d %s", s, b)
	}
	http.DefaultClient.CloseIdleConnections()
	// A connection opened while Caddy switches servers may be closed
	// unanswered (seen once in CI: a POST right after the reload got
	// EOF). Wait until a fresh connection is answered, by any status.
	for i := 0; ; i++ {
		probe := mustReq(t, http.MethodGet, g.URL+"/", "")
		probe.Close = true
		resp, err := http.DefaultClient.Do(probe)
		if err == nil {
			resp.Body.Close()
			return
		}
		if i == 50 {
			t.Fatalf("the gateway does not answer after the reload: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(msg, args...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
