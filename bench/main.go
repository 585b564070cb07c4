// Command bench is a load benchmark of the gateway's overhead. It starts an
// in-process fakellm and Caddy processes from the binary under test — a bare
// reverse_proxy, the ai_gateway handler passing requests through, and the
// full ai_gateway pipeline (a key with rpm, tpm, concurrency and a budget,
// model rpm/tpm) with its state in process and in a redis-server it starts,
// and in process with every request traced to a discarding OTLP sink —
// plus peer gateways when installed (Portkey, `make bench-peers`), all in
// front of that fakellm. It drives each target with closed-loop workers for
// non-stream and stream chat completions and prints a markdown table of
// throughput, latency percentiles, the latency each proxy adds over calling
// fakellm directly and, for the Redis rows, the Redis commands per request
// (INFO commandstats). It also measures the memory each proxy holds per open
// stream and the time to first token each adds to a paced stream.
//
//	make build && go run ./bench -caddy bin/caddy [-c 32] [-d 5s] [-out FILE]
//
// All traffic stays on 127.0.0.1. Where there are two CPUs or more, the
// gateway under test runs on the upper half and the load generator, fakellm
// and redis-server on the lower half; absolute numbers are still a lower
// bound of what a dedicated gateway does, the differences between targets
// are the point.
package main

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

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
	streams    int
	pacedDur   time.Duration
	pacedConc  int
	rounds     int
	pairs      int
	pairDur    time.Duration
	only       *regexp.Regexp
	redis      bool
	pin        bool
	peers      string
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
	flag.StringVar(&cfg.out, "out", "", "also write the markdown report to this file, and the req/s chart next to it (.png)")
	flag.IntVar(&cfg.streams, "streams", 2000, "slow streams held open at once for the memory-per-stream measurement (0: skip)")
	flag.DurationVar(&cfg.pacedDur, "paced-d", 5*time.Second, "measured duration of the paced-stream TTFT measurement per target (0: skip)")
	flag.IntVar(&cfg.pacedConc, "paced-c", 32, "concurrent paced streams")
	only := flag.String("only", "", "measure only the targets whose name matches this regular expression (fakellm direct and reverse_proxy always run, for the ratios)")
	flag.IntVar(&cfg.pairs, "pairs", 8, "slices of the paired rows (traced against untraced, cache hit against reverse_proxy), both rows loaded at once (0: skip)")
	flag.DurationVar(&cfg.pairDur, "pair-d", 2*time.Second, "measured duration of each of those slices")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds of the req/s table: every row is measured once per round, in turn, and the median round is shown")
	flag.BoolVar(&cfg.redis, "redis", true, "also run the full pipeline with Redis (needs redis-server on PATH)")
	flag.BoolVar(&cfg.pin, "pin", true, "pin the gateway under test and the rest to separate CPUs (Linux, 2+ CPUs)")
	flag.StringVar(&cfg.peers, "peers", "bench/peers", "directory of the peer gateways installed by make bench-peers (empty: skip peers)")
	flag.Parse()
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -only:", err)
			os.Exit(2)
		}
		cfg.only = re
	}
	if flag.NArg() > 0 || cfg.conc < 1 || cfg.dur <= 0 || cfg.warmup < 0 || cfg.chunks < 1 || cfg.streams < 0 || cfg.pacedDur < 0 || cfg.pacedConc < 1 || cfg.rounds < 1 || cfg.pairs < 0 || cfg.pairDur <= 0 {
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

// target is one thing the load goes to.
type target struct {
	name   string
	url    string      // chat completions URL
	model  string      // model of the main load
	header http.Header // extra request headers
	proc   *proc       // the proxy process; nil for fakellm itself
	redis  *redis.Client
	// memOnly targets are measured in the memory table only.
	memOnly bool
}

func (t target) request(model string, stream bool) request {
	return request{url: t.url, body: chatBody(model, stream), header: t.header, stream: stream}
}

type kind struct {
	name   string
	stream bool
}

// Target names; the ratio column is relative to reverseProxy and the
// added-latency columns to direct.
const (
	direct = "fakellm (direct)"
	// passthroughH2C is passthrough to an h2c upstream, in the memory
	// table only.
	passthroughH2C = "ai_gateway passthrough, h2c upstream"
	reverseProxy   = "reverse_proxy"
	// fullTraced is fullInProcess with every request traced: the paired
	// rows whose difference is the cost of tracing.
	fullInProcess = "ai_gateway full (in process)"
	fullTraced    = "ai_gateway full, traced"
)

// findTarget is the target named name, or nil.
func findTarget(ts []target, name string) *target {
	for i := range ts {
		if ts[i].name == name {
			return &ts[i]
		}
	}
	return nil
}

// report is everything one run measured, for render.
type report struct {
	results []*result
	mem     []memResult
	paced   []*result
	pin     pinning
	pinned  []string // "name: cpus" as the kernel reports them
	paired  []pairedCost
	notes   []string // what was skipped and why
	peers   []string // peer versions
}

func run(ctx context.Context, cfg config) error {
	if _, err := os.Stat(cfg.caddy); err != nil {
		return fmt.Errorf("caddy binary: %w (run make build)", err)
	}
	var rep report

	if cfg.pin {
		rep.pin = planPinning()
		if rep.pin.enabled() {
			if err := pinSelf(rep.pin.others); err != nil {
				rep.pin = pinning{note: fmt.Sprintf("not pinned: %v", err)}
			}
		}
	} else {
		rep.pin.note = "not pinned (-pin=false)"
	}
	if rep.pin.note != "" {
		rep.notes = append(rep.notes, rep.pin.note)
	}

	// fakellm on a real listener, as the proxies see any upstream.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fl := fakellm.New(fakellm.Options{Chunks: cfg.chunks, TTFT: cfg.ttft, ChunkDelay: cfg.chunkDelay, Name: "bench"})
	fl.Script(slowModel, fakellm.Behavior{Chunks: 3600, ChunkDelay: time.Second})
	fl.Script(pacedModel, fakellm.Behavior{Chunks: 64, ChunkDelay: pacedLength / 64})
	fake := &http.Server{Handler: fl, ReadHeaderTimeout: 10 * time.Second, Protocols: fakellm.Protocols()}
	go func() { _ = fake.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if fake.Shutdown(sctx) != nil {
			_ = fake.Close()
		}
	}()
	fakeAddr := ln.Addr().String()
	rep.pinned = append(rep.pinned, fmt.Sprintf("load generator + fakellm: CPU %s", cpusAllowed(os.Getpid())))

	const path = "/v1/chat/completions"
	targets := []target{{name: direct, url: "http://" + fakeAddr + path, model: "fake-model"}}
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	addCaddy := func(name, caddyfile, model string, header http.Header, rc *redis.Client) error {
		port, err := freePort()
		if err != nil {
			return err
		}
		p, err := startCaddy(ctx, cfg.caddy, name, fmt.Sprintf(caddyfile, port), port, rep.pin.gateway)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		rep.pinned = append(rep.pinned, fmt.Sprintf("%s: CPU %s", name, cpusAllowed(p.pid())))
		targets = append(targets, target{name: name, url: p.url + path, model: model, header: header, proc: p, redis: rc})
		return nil
	}
	keyHeader := http.Header{"Authorization": {"Bearer " + benchSecret}}
	fmt.Fprintf(os.Stderr, "bench: fakellm on %s, starting Caddy (%s)…\n", fakeAddr, cfg.caddy)
	// Each Caddyfile keeps one %d for the port, which addCaddy fills in.
	if err := addCaddy(reverseProxy, strings.Replace(reverseProxyCaddyfile, "%[2]s", fakeAddr, 1), "fake-model", nil, nil); err != nil {
		return err
	}
	if err := addCaddy("ai_gateway passthrough", esc(gatewayCaddyfile(0, fakeAddr, false, "")), "bench", nil, nil); err != nil {
		return err
	}
	// The same over h2c: streams share upstream connections, as they do
	// over TLS with HTTP/2 providers.
	h2c := strings.Replace(gatewayCaddyfile(0, fakeAddr, false, ""), "/v1\n", "/v1\n\t\t\th2c\n", 1)
	if err := addCaddy(passthroughH2C, esc(h2c), "bench", nil, nil); err != nil {
		return err
	}
	targets[len(targets)-1].memOnly = true
	if err := addCaddy(cacheHit, esc(cacheCaddyfile(fakeAddr)), "bench", nil, nil); err != nil {
		return err
	}
	if err := addCaddy(fullInProcess, esc(gatewayCaddyfile(0, fakeAddr, true, "")), "bench", keyHeader, nil); err != nil {
		return err
	}
	sink, err := startTraceSink(ctx)
	if err != nil {
		return err
	}
	if err := addCaddy(fullTraced, esc(tracedCaddyfile(fakeAddr, sink)), "bench", keyHeader, nil); err != nil {
		return err
	}
	if err := addCaddy("ai_gateway full, guardrails", esc(guardrailsCaddyfile(fakeAddr)), "bench", keyHeader, nil); err != nil {
		return err
	}
	redisPid := 0
	if cfg.redis {
		if _, err := exec.LookPath("redis-server"); err != nil {
			rep.notes = append(rep.notes, "Redis rows skipped: redis-server not on PATH")
		} else {
			rp, rc, err := startRedis(ctx, rep.pin.others)
			if err != nil {
				return err
			}
			procs = append(procs, rp)
			redisPid = rp.pid()
			defer rc.Close()
			rep.pinned = append(rep.pinned, fmt.Sprintf("redis-server: CPU %s", cpusAllowed(rp.pid())))
			if err := addCaddy("ai_gateway full (Redis)", esc(gatewayCaddyfile(0, fakeAddr, true, rp.url)), "bench", keyHeader, rc); err != nil {
				return err
			}
		}
	} else {
		rep.notes = append(rep.notes, "Redis rows skipped (-redis=false)")
	}
	if cfg.peers != "" {
		p, h, note, err := startPortkey(ctx, cfg.peers, rep.pin.gateway, "http://"+fakeAddr+"/v1")
		switch {
		case err != nil:
			rep.notes = append(rep.notes, fmt.Sprintf("Portkey skipped: %v", firstLine(err.Error())))
		case note != "":
			rep.notes = append(rep.notes, note)
		default:
			procs = append(procs, p)
			name := "Portkey " + packageVersion(filepath.Join(cfg.peers, "node_modules/@portkey-ai/gateway/package.json"))
			rep.peers = append(rep.peers, name+" (Node "+strings.TrimPrefix(nodeVersion(), "v")+", @hono/node-server "+
				packageVersion(filepath.Join(cfg.peers, "node_modules/@hono/node-server/package.json"))+")")
			rep.pinned = append(rep.pinned, fmt.Sprintf("%s: CPU %s", name, cpusAllowed(p.pid())))
			targets = append(targets, target{name: name, url: p.url + path, model: "fake-model", header: h, proc: p})
		}
	}

	if cfg.only != nil {
		targets = slices.DeleteFunc(targets, func(t target) bool {
			return t.name != direct && t.name != reverseProxy && !cfg.only.MatchString(t.name)
		})
		rep.notes = append(rep.notes, fmt.Sprintf("only the targets matching %q (-only)", cfg.only))
	}
	kinds := []kind{{"chat", false}, {"chat stream", true}}
	client := newClient(max(cfg.conc, cfg.pacedConc), cfg.timeout)
	defer client.CloseIdleConnections()

	// Fail fast on a misconfiguration.
	for _, t := range targets {
		for _, k := range kinds {
			if err := check(ctx, client, t.request(t.model, k.stream)); err != nil {
				msg := fmt.Sprintf("%s %s: sanity request failed: %v", t.name, k.name, err)
				if t.proc != nil {
					msg += "\n" + tail(t.proc.logs.String(), 4000)
				}
				return errors.New(msg)
			}
		}
	}

	// Memory first, while the proxies have served little else.
	if cfg.streams > 0 {
		for _, t := range targets {
			if t.proc == nil {
				continue
			}
			fmt.Fprintf(os.Stderr, "bench: %-28s %d open streams…\n", t.name, cfg.streams)
			m := openStreams(ctx, t.request(slowModel, true), cfg.streams, t.proc.pid())
			if err := ctx.Err(); err != nil {
				return err
			}
			m.Target = t.name
			rep.mem = append(rep.mem, m)
		}
	} else {
		rep.notes = append(rep.notes, "memory per open stream skipped (-streams 0)")
	}
	if cfg.pacedDur > 0 {
		for _, t := range targets {
			if t.memOnly {
				continue
			}
			if t.name == cacheHit {
				// A hit replays the stored stream at once, unpaced: its
				// time to first token is in the main table.
				continue
			}
			fmt.Fprintf(os.Stderr, "bench: %-28s paced stream c=%d, measure %v…\n", t.name, cfg.pacedConc, cfg.pacedDur)
			// A paced stream lasts ~1.3 s: spread the starts over that
			// and warm up past it, so that streams begin one after
			// another.
			r := runSpread(ctx, client, t.request(pacedModel, true), cfg.pacedConc, pacedLength, pacedLength+500*time.Millisecond, cfg.pacedDur, nil)
			if err := ctx.Err(); err != nil {
				return err
			}
			r.Target, r.Kind = t.name, "paced stream"
			rep.paced = append(rep.paced, r)
		}
	} else {
		rep.notes = append(rep.notes, "paced-stream TTFT skipped (-paced-d 0)")
	}

	// Every row once per round, in turn, so that a drift of the machine
	// (another process, the CPU's clock) spreads over all rows instead of
	// landing on one.
	var rounds [][]*result
	for round := range cfg.rounds {
		var rs []*result
		for _, t := range targets {
			if t.memOnly {
				continue
			}
			for _, k := range kinds {
				fmt.Fprintf(os.Stderr, "bench: round %d/%d %-28s %-11s c=%d warm-up %v, measure %v…\n", round+1, cfg.rounds, t.name, k.name, cfg.conc, cfg.warmup, cfg.dur)
				var delta *redisDelta
				var redisMark func(bool)
				pids := []int{0, 0}
				if t.proc != nil {
					pids[0] = t.proc.pid()
				}
				if t.redis != nil {
					redisMark, delta = windowCounter(ctx, t.redis)
					pids[1] = redisPid
				}
				cpuMark, cpu := cpuWindow(pids)
				mark := func(end bool) {
					cpuMark(end)
					if redisMark != nil {
						redisMark(end)
					}
				}
				r := runLoad(ctx, client, t.request(t.model, k.stream), cfg.conc, cfg.warmup, cfg.dur, mark)
				if err := ctx.Err(); err != nil {
					return err
				}
				r.Target, r.Kind, r.Redis, r.CPU = t.name, k.name, delta, cpu
				if r.Errors > 0 {
					fmt.Fprintf(os.Stderr, "bench: %s %s: %d errors, first: %v\n", t.name, k.name, r.Errors, r.FirstErr)
				}
				rs = append(rs, r)
			}
		}
		rounds = append(rounds, rs)
	}
	rep.results = medianRounds(rounds)

	if cfg.pairs > 0 {
		for _, pr := range [][2]string{{fullInProcess, fullTraced}, {reverseProxy, cacheHit}} {
			base, with := findTarget(targets, pr[0]), findTarget(targets, pr[1])
			if base == nil || with == nil {
				continue
			}
			rep.paired = append(rep.paired, measurePaired(ctx, client, *base, *with, kinds, cfg.conc, cfg.pairs, cfg.warmup, cfg.pairDur)...)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	} else {
		rep.notes = append(rep.notes, "paired rows skipped (-pairs 0)")
	}

	out := render(cfg, &rep)
	if cfg.out != "" {
		png := strings.TrimSuffix(cfg.out, filepath.Ext(cfg.out)) + ".png"
		if err := writeChart(png, "Gateway load benchmark: req/s ("+time.Now().UTC().Format("2006-01-02")+")", rep.results); err != nil {
			out += "\nChart not written: " + err.Error() + "\n"
		} else {
			out += "\nChart: `" + png + "`\n"
		}
	}
	fmt.Print(out)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(out), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// esc makes a finished Caddyfile with a zero port into a format string for
// addCaddy: every %% is doubled and the port becomes %%d.
func esc(caddyfile string) string {
	s := strings.ReplaceAll(caddyfile, "%", "%%")
	return strings.Replace(s, "http://127.0.0.1:0 {", "http://127.0.0.1:%d {", 1)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// packageVersion is the "version" of an npm package.json, or "?".
func packageVersion(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	var p struct{ Version string }
	if json.Unmarshal(b, &p) != nil || p.Version == "" {
		return "?"
	}
	return p.Version
}

func nodeVersion() string {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
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
func render(cfg config, rep *report) string {
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
	fmt.Fprintf(&b, "flags: `-c %d -d %v -warmup %v -chunks %d -ttft %v -chunk-delay %v -streams %d -paced-d %v -paced-c %d -rounds %d -pairs %d -pair-d %v`; request body %d B.\n\n",
		cfg.conc, cfg.dur, cfg.warmup, cfg.chunks, cfg.ttft, cfg.chunkDelay, cfg.streams, cfg.pacedDur, cfg.pacedConc, cfg.rounds, cfg.pairs, cfg.pairDur, len(chatBody("fake-model", false)))
	if rep.pin.enabled() {
		fmt.Fprintf(&b, "pinning: gateway under test on CPU %s, everything else on CPU %s (sched_setaffinity; as the kernel reports it: %s).\n\n",
			cpuList(rep.pin.gateway), cpuList(rep.pin.others), strings.Join(rep.pinned, "; "))
	} else {
		fmt.Fprintf(&b, "pinning: %s; load generator, fakellm and the gateways share the CPUs.\n\n", rep.pin.note)
	}
	if len(rep.peers) > 0 {
		fmt.Fprintf(&b, "peers: %s.\n\n", strings.Join(rep.peers, "; "))
	}

	b.WriteString("| target | kind | req/s | vs reverse_proxy | p50 | p99 | added p50 | added p99 | TTFT p50 | CPU/req | Redis cmds/req | errors |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	base := func(name, kind string) *result {
		for _, r := range rep.results {
			if r.Target == name && r.Kind == kind {
				return r
			}
		}
		return nil
	}
	for _, r := range rep.results {
		p50, p99 := percentile(r.Latency, .50), percentile(r.Latency, .99)
		ttft, add50, add99, ratio, rcalls := "–", "–", "–", "–", "–"
		if r.Stream && len(r.TTFT) > 0 {
			ttft = ms(percentile(r.TTFT, .50))
		}
		if d := base(direct, r.Kind); d != nil && d != r && len(d.Latency) > 0 && len(r.Latency) > 0 {
			add50 = signedMs(p50 - percentile(d.Latency, .50))
			add99 = signedMs(p99 - percentile(d.Latency, .99))
		}
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f×", r.Ratio)
		} else if rp := base(reverseProxy, r.Kind); rp != nil && rp.RPS() > 0 {
			ratio = fmt.Sprintf("%.2f×", r.RPS()/rp.RPS())
		}
		rps := fmt.Sprintf("%.0f", r.RPS())
		if len(r.RoundRPS) > 1 {
			lo, hi := slices.Min(r.RoundRPS), slices.Max(r.RoundRPS)
			rps += fmt.Sprintf(" (%.0f–%.0f)", lo, hi)
		}
		if r.Redis != nil {
			if r.Redis.err != nil {
				rcalls = "error"
			} else {
				all, scripts := r.Redis.perRequest(len(r.Latency))
				rcalls = fmt.Sprintf("%.2f (%.2f scripts)", all, scripts)
			}
		}
		p50s, p99s := "–", "–"
		if len(r.Latency) > 0 {
			p50s, p99s = ms(p50), ms(p99)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n",
			r.Target, r.Kind, rps, ratio, p50s, p99s, add50, add99, ttft, r.CPU.perRequest(len(r.Latency)), rcalls, r.Errors)
	}
	if cfg.rounds > 1 {
		fmt.Fprintf(&b, "\n%d rounds: each round measures every row in turn; a row shows its median round (req/s, latencies, Redis counts), the range of its req/s over the rounds in brackets, and the median over the rounds of its req/s divided by reverse_proxy's in the same round.\n", cfg.rounds)
	}
	b.WriteString("\n\"added\" is a difference of percentiles (target minus fakellm direct), not a percentile of differences; p99 is noisy and can come out negative. TTFT is the time to the first content token. ")
	b.WriteString("CPU/req is the CPU time (user + system, /proc/PID/stat) the proxy process used in the measured window divided by the requests completed in it, plus redis-server's after a + for the Redis rows: what a request costs, whatever else loads the machine. ")
	b.WriteString("The full pipeline is a gateway key with rpm, tpm, concurrency and a budget plus model rpm/tpm, limits far above the load so that nothing is refused. ")
	b.WriteString("Redis cmds/req is the sum of `INFO commandstats` calls between the start and the end of the measured window divided by the requests completed in it; commands a Lua script runs count too, so the script invocations (eval/evalsha/fcall, one round trip each) are shown apart.\n")
	for _, r := range rep.results {
		if r.Redis != nil {
			if r.Redis.err != nil {
				fmt.Fprintf(&b, "\nRedis, %s %s: INFO failed: %v\n", r.Target, r.Kind, r.Redis.err)
			} else {
				fmt.Fprintf(&b, "\nRedis per request, %s %s: %s\n", r.Target, r.Kind, r.Redis.breakdown(len(r.Latency)))
			}
		}
	}

	if len(rep.mem) > 0 {
		fmt.Fprintf(&b, "\n### Memory per open stream\n\n%d slow streams (one chunk a second) held open at once, each on its own connection; RSS (VmRSS) of the proxy process before and while they are open.\n\n", cfg.streams)
		b.WriteString("| target | streams open | RSS idle | RSS open | per stream |\n|---|--:|--:|--:|--:|\n")
		for _, m := range rep.mem {
			per := "–"
			if m.Opened > 0 {
				per = fmt.Sprintf("%.1f KiB", m.PerStream()/1024)
			}
			fmt.Fprintf(&b, "| %s | %d / %d | %.1f MiB | %.1f MiB | %s |\n", m.Target, m.Opened, m.Tried, mib(m.Before), mib(m.Open), per)
		}
		for _, m := range rep.mem {
			if m.Err != nil {
				fmt.Fprintf(&b, "\n%s: %v\n", m.Target, m.Err)
			}
		}
	}

	if len(rep.paced) > 0 {
		fmt.Fprintf(&b, "\n### TTFT on a paced stream\n\n64 content chunks 20 ms apart, %d concurrent streams for %v, their starts spread over one stream's length; TTFT measured by the client.\n\n", cfg.pacedConc, cfg.pacedDur)
		b.WriteString("| target | streams | TTFT p50 | TTFT p99 | TTFT added p50 vs reverse_proxy | stream p50 | errors |\n|---|--:|--:|--:|--:|--:|--:|\n")
		var rp *result
		for _, r := range rep.paced {
			if r.Target == reverseProxy {
				rp = r
			}
		}
		for _, r := range rep.paced {
			added := "–"
			if rp != nil && rp != r && len(rp.TTFT) > 0 && len(r.TTFT) > 0 {
				added = signedMs(percentile(r.TTFT, .5) - percentile(rp.TTFT, .5))
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %d |\n", r.Target, len(r.Latency),
				ms(percentile(r.TTFT, .5)), ms(percentile(r.TTFT, .99)), added, ms(percentile(r.Latency, .5)), r.Errors)
		}
	}

	renderPaired(&b, rep.paired, cfg.pairDur, cfg.conc)

	if len(rep.notes) > 0 {
		b.WriteString("\nSkipped: " + strings.Join(rep.notes, "; ") + ".\n")
	}
	return b.String()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func signedMs(d time.Duration) string {
	return fmt.Sprintf("%+.3f ms", float64(d)/float64(time.Millisecond))
}
