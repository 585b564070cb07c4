// Command bench is a load benchmark of the gateway's overhead. It starts an
// in-process fakellm and two Caddy processes from the binary under test — a
// bare reverse_proxy and the ai_gateway handler, both in front of that
// fakellm — and drives each of the three targets with closed-loop workers,
// for non-stream and stream chat completions. It prints a markdown table of
// throughput and latency percentiles, with the latency each proxy adds over
// calling fakellm directly.
//
//	make build && go run ./bench -caddy bin/caddy [-c 32] [-d 5s] [-out FILE]
//
// All traffic stays on 127.0.0.1. The load generator, fakellm and Caddy share
// the machine's CPUs, so absolute numbers are a lower bound of what a
// dedicated gateway does; the differences between targets are the point.
package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

type config struct {
	caddy      string
	conc       int
	dur        time.Duration
	warmup     time.Duration
	chunks     int
	ttft       time.Duration
	chunkDelay time.Duration
	timeout    time.Duration
	out        string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.caddy, "caddy", "bin/caddy", "Caddy binary with the ai_gateway module (make build)")
	flag.IntVar(&cfg.conc, "c", 32, "concurrent closed-loop workers")
	flag.DurationVar(&cfg.dur, "d", 5*time.Second, "measured duration per target and kind")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "warm-up before each measurement")
	flag.IntVar(&cfg.chunks, "chunks", 20, "fakellm content chunks (words) per answer")
	flag.DurationVar(&cfg.ttft, "ttft", 0, "fakellm delay before the first token")
	flag.DurationVar(&cfg.chunkDelay, "chunk-delay", 0, "fakellm delay between stream chunks")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "per-request timeout")
	flag.StringVar(&cfg.out, "out", "", "also write the markdown report to this file")
	flag.Parse()
	if flag.NArg() > 0 || cfg.conc < 1 || cfg.dur <= 0 || cfg.warmup < 0 || cfg.chunks < 1 {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

type target struct {
	name  string
	url   string // chat completions URL
	model string
}

type kind struct {
	name   string
	stream bool
}

func run(ctx context.Context, cfg config) error {
	if _, err := os.Stat(cfg.caddy); err != nil {
		return fmt.Errorf("caddy binary: %w (run make build)", err)
	}

	// fakellm on a real listener, as the proxies see any upstream.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fake := &http.Server{
		Handler:           fakellm.New(fakellm.Options{Chunks: cfg.chunks, TTFT: cfg.ttft, ChunkDelay: cfg.chunkDelay, Name: "bench"}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = fake.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fake.Shutdown(sctx)
	}()
	fakeAddr := ln.Addr().String()

	rpPort, err := freePort()
	if err != nil {
		return err
	}
	gwPort, err := freePort()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: fakellm on %s, starting Caddy (%s)…\n", fakeAddr, cfg.caddy)
	rp, err := startCaddy(ctx, cfg.caddy, "reverse_proxy", fmt.Sprintf(reverseProxyCaddyfile, rpPort, fakeAddr), rpPort)
	if err != nil {
		return err
	}
	defer rp.stop()
	gw, err := startCaddy(ctx, cfg.caddy, "ai_gateway", fmt.Sprintf(gatewayCaddyfile, gwPort, fakeAddr), gwPort)
	if err != nil {
		return err
	}
	defer gw.stop()

	const path = "/v1/chat/completions"
	targets := []target{
		{"fakellm (direct)", "http://" + fakeAddr + path, "fake-model"},
		{"reverse_proxy", rp.url + path, "fake-model"},
		{"ai_gateway", gw.url + path, "bench"},
	}
	kinds := []kind{{"chat", false}, {"chat stream", true}}
	procs := map[string]*caddyProc{"reverse_proxy": rp, "ai_gateway": gw}

	client := newClient(cfg.conc, cfg.timeout)
	defer client.CloseIdleConnections()

	// Fail fast on a misconfiguration.
	for _, t := range targets {
		for _, k := range kinds {
			if err := check(ctx, client, t.url, chatBody(t.model, k.stream), k.stream); err != nil {
				msg := fmt.Sprintf("%s %s: sanity request failed: %v", t.name, k.name, err)
				if p := procs[t.name]; p != nil {
					msg += "\n" + tail(p.logs.String(), 4000)
				}
				return errors.New(msg)
			}
		}
	}

	var results []*result
	for _, t := range targets {
		for _, k := range kinds {
			fmt.Fprintf(os.Stderr, "bench: %-16s %-11s c=%d warm-up %v, measure %v…\n", t.name, k.name, cfg.conc, cfg.warmup, cfg.dur)
			r := runLoad(ctx, client, t.url, chatBody(t.model, k.stream), k.stream, cfg.conc, cfg.warmup, cfg.dur)
			if err := ctx.Err(); err != nil {
				return err
			}
			r.Target, r.Kind = t.name, k.name
			if r.Errors > 0 {
				fmt.Fprintf(os.Stderr, "bench: %s %s: %d errors, first: %v\n", t.name, k.name, r.Errors, r.FirstErr)
			}
			results = append(results, r)
		}
	}

	report := render(cfg, results)
	fmt.Print(report)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// chatBody is a typical small chat request (~1 KB): a system prompt and a
// short conversation.
func chatBody(model string, stream bool) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"` + model + `","messages":[`)
	b.WriteString(`{"role":"system","content":"You are a helpful assistant for a software company. Answer concisely, cite the documentation when you can, and ask a clarifying question when the request is ambiguous. Never invent configuration options."},`)
	b.WriteString(`{"role":"user","content":"How do I put a reverse proxy in front of two backends with health checks and sticky sessions?"},`)
	b.WriteString(`{"role":"assistant","content":"Use a reverse_proxy with two upstreams, set lb_policy cookie for sticky sessions, and enable active health checks with health_uri and health_interval."},`)
	b.WriteString(`{"role":"user","content":"Thanks. And how do I make it retry a failed request on the other backend, but only for idempotent methods, with a short timeout?"}`)
	b.WriteString(`],"temperature":0.2,"user":"bench-user-0001"`)
	if stream {
		b.WriteString(`,"stream":true`)
	}
	b.WriteString(`}`)
	return []byte(b.String())
}

// render formats the report as markdown.
func render(cfg config, results []*result) string {
	var b strings.Builder
	caddyInfo := "unknown"
	if bi, err := buildinfo.ReadFile(cfg.caddy); err == nil {
		caddyInfo = bi.GoVersion
		for _, d := range bi.Deps {
			if d.Path == "github.com/caddyserver/caddy/v2" {
				caddyInfo = "caddy " + d.Version + ", " + bi.GoVersion
			}
		}
	}
	fmt.Fprintf(&b, "## Gateway load benchmark\n\n")
	fmt.Fprintf(&b, "%s/%s, %d CPUs, %s (binary: %s), %s\n\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), caddyInfo, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "flags: `-c %d -d %v -warmup %v -chunks %d -ttft %v -chunk-delay %v`; request body %d B; load generator, fakellm and Caddy share the machine.\n\n",
		cfg.conc, cfg.dur, cfg.warmup, cfg.chunks, cfg.ttft, cfg.chunkDelay, len(chatBody("fake-model", false)))
	b.WriteString("| target | kind | req/s | p50 | p99 | TTFB p50 | added p50 vs direct | added p99 vs direct | errors |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
	direct := map[string]*result{}
	for _, r := range results {
		if _, ok := direct[r.Kind]; !ok {
			direct[r.Kind] = r // the first target is fakellm itself
		}
	}
	for _, r := range results {
		p50, p99 := percentile(r.Latency, .50), percentile(r.Latency, .99)
		ttfb, add50, add99 := "–", "–", "–"
		if r.Stream {
			ttfb = ms(percentile(r.TTFB, .50))
		}
		if d := direct[r.Kind]; d != r && len(d.Latency) > 0 && len(r.Latency) > 0 {
			add50 = signedMs(p50 - percentile(d.Latency, .50))
			add99 = signedMs(p99 - percentile(d.Latency, .99))
		}
		p50s, p99s := "–", "–"
		if len(r.Latency) > 0 {
			p50s, p99s = ms(p50), ms(p99)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %s | %s | %s | %d |\n",
			r.Target, r.Kind, r.RPS(), p50s, p99s, ttfb, add50, add99, r.Errors)
	}
	b.WriteString("\n\"added\" is a difference of percentiles (target minus direct), not a percentile of differences; with everything on one machine p99 is noisy and can come out negative. TTFB is the time to the first body byte.\n")
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func signedMs(d time.Duration) string {
	return fmt.Sprintf("%+.3f ms", float64(d)/float64(time.Millisecond))
}
