package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedis runs a redis-server without persistence on a free 127.0.0.1
// port (on cpus), like internal/testutil/redistest, and returns it with a
// client for INFO. Both must be closed (proc.stop, Client.Close).
func startRedis(ctx context.Context, cpus []int) (*proc, *redis.Client, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, nil, err
	}
	var lastErr error
	for range 5 { // the free port can be taken before redis-server binds it
		port, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		dir, err := os.MkdirTemp("", "aigw-bench-redis-")
		if err != nil {
			return nil, nil, err
		}
		cmd := exec.Command(bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--daemonize", "no", "--loglevel", "warning")
		p, err := startProc(ctx, "redis-server", cmd, dir, port, cpus)
		if err != nil {
			lastErr = err
			continue
		}
		p.url = fmt.Sprintf("redis://127.0.0.1:%d", port)
		c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = c.Ping(pctx).Err()
		cancel()
		if err != nil {
			c.Close()
			p.stop()
			lastErr = err
			continue
		}
		return p, c, nil
	}
	return nil, nil, fmt.Errorf("starting redis-server: %w", lastErr)
}

// commandCalls reads INFO commandstats: calls per command. The INFO
// commands the benchmark sends itself are left out. Commands a Lua script
// runs (redis.call) are counted as well, under their own names.
func commandCalls(ctx context.Context, c *redis.Client) (map[string]int64, error) {
	s, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	calls := map[string]int64{}
	for _, l := range strings.Split(s, "\n") {
		// cmdstat_evalsha:calls=12,usec=34,usec_per_call=2.83,...
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		name, isStat := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isStat || name == "info" {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		if n, ok := strings.CutPrefix(v, "calls="); ok {
			if x, err := strconv.ParseInt(n, 10, 64); err == nil {
				calls[name] = x
			}
		}
	}
	return calls, nil
}

// redisDelta is the commands Redis ran during a measured window.
type redisDelta struct {
	calls map[string]int64
	err   error
}

// scriptCommands are the commands a client sends to run a script; the
// commands a script runs are counted separately by Redis.
var scriptCommands = []string{"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}

// perRequest returns all commands and the script invocations among them,
// divided by n requests.
func (d *redisDelta) perRequest(n int) (all, scripts float64) {
	if n == 0 {
		return 0, 0
	}
	var a, s int64
	for name, c := range d.calls {
		a += c
		if slices.Contains(scriptCommands, name) {
			s += c
		}
	}
	return float64(a) / float64(n), float64(s) / float64(n)
}

// breakdown lists the commands per request, most frequent first.
func (d *redisDelta) breakdown(n int) string {
	names := make([]string, 0, len(d.calls))
	for name, c := range d.calls {
		if c > 0 {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		if d.calls[a] != d.calls[b] {
			return int(d.calls[b] - d.calls[a])
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %.2f", name, float64(d.calls[name])/float64(max(n, 1)))
	}
	return strings.Join(parts, ", ")
}

// windowCounter returns a runLoad mark function that snapshots INFO
// commandstats when the window opens and closes, and the delta it fills in.
func windowCounter(ctx context.Context, c *redis.Client) (func(end bool), *redisDelta) {
	d := &redisDelta{calls: map[string]int64{}}
	var (
		mu     sync.Mutex
		before map[string]int64
	)
	mark := func(end bool) {
		mu.Lock()
		defer mu.Unlock()
		calls, err := commandCalls(ctx, c)
		if err != nil {
			d.err = err
			return
		}
		if !end {
			before = calls
			return
		}
		for name, n := range calls {
			d.calls[name] = n - before[name]
		}
	}
	return mark, d
}
