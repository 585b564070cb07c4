package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// pairedCost compares two rows measured in pairs (what tracing costs, what
// a cache hit saves over reverse_proxy): the two loaded at the same time,
// sharing the gateway's cores, in short slices. A drift of the machine
// (its clock, another tenant) then lands on both sides of a pair at once;
// measured one after the other, even in alternating slices a second
// apart, the same row moved by ±20–35 % here, far more than the few
// percent being measured.
type pairedCost struct {
	Base, With string // targets
	Kind       string
	Pairs      int
	// Per pair: with's req/s over base's, and with's CPU per request
	// over base's; sorted.
	RPS, CPU []float64
	Errors   int
}

// measurePaired measures test against base for each kind in n slices of
// d each (after a warm-up of both), both loaded at once by conc workers
// each.
func measurePaired(ctx context.Context, client *http.Client, base, test target, kinds []kind, conc, n int, warmup, d time.Duration) []pairedCost {
	var out []pairedCost
	for _, k := range kinds {
		pc := pairedCost{Base: base.name, With: test.name, Kind: k.name, Pairs: n}
		fmt.Fprintf(os.Stderr, "bench: paired %s and %s at once, %s: %d slices of %v…\n", test.name, base.name, k.name, n, d)
		// side is one row's slice: its req/s, CPU time per request (0 when
		// unknown) and errors.
		type side struct {
			rps, cpu float64
			errs     int
		}
		load := func(t target, warm time.Duration) (s side) {
			pid := 0
			if t.proc != nil {
				pid = t.proc.pid()
			}
			mark, cpu := cpuWindow([]int{pid})
			r := runLoad(ctx, client, t.request(t.model, k.stream), conc, warm, d, mark)
			if cpu.err == nil && len(r.Latency) > 0 && pid != 0 {
				s.cpu = float64(cpu.used[0]) / float64(len(r.Latency))
			}
			s.rps, s.errs = r.RPS(), r.Errors
			return s
		}
		// both loads base and test at once.
		both := func(warm time.Duration) (b, t side) {
			var wg sync.WaitGroup
			wg.Go(func() { b = load(base, warm) })
			t = load(test, warm)
			wg.Wait()
			return b, t
		}
		both(warmup)
		for range n {
			if ctx.Err() != nil {
				return out
			}
			// A short settle and no other warm-up: the connections
			// stay open.
			b, t := both(50 * time.Millisecond)
			pc.Errors += b.errs + t.errs
			if b.rps > 0 {
				pc.RPS = append(pc.RPS, t.rps/b.rps)
			}
			if b.cpu > 0 && t.cpu > 0 {
				pc.CPU = append(pc.CPU, t.cpu/b.cpu)
			}
		}
		slices.Sort(pc.RPS)
		slices.Sort(pc.CPU)
		out = append(out, pc)
	}
	return out
}

// median of sorted v (0 when empty).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// renderPaired writes the paired measurements as a table.
func renderPaired(b *strings.Builder, costs []pairedCost, d time.Duration, conc int) {
	if len(costs) == 0 {
		return
	}
	fmt.Fprintf(b, "\n### Paired: two rows loaded at once\n\n%d slices of %v, both rows of a pair loaded at the same time (%d workers each) on the gateway's cores, so that a drift of the machine falls on both at once. Two processes on one core pay for switching between them, so the CPU per request is higher than in the main table; the ratios are what counts. The median over the slices of the second row's req/s over the first's, and of its CPU per request over the first's; the range over the slices in brackets.\n\n", costs[0].Pairs, d, conc)
	b.WriteString("| first | second | kind | req/s, second / first | CPU/req, second / first | errors |\n|---|---|---|--:|--:|--:|\n")
	for _, c := range costs {
		rps, cpu := "–", "–"
		if n := len(c.RPS); n > 0 {
			rps = fmt.Sprintf("%.3f× [%.3f, %.3f]", median(c.RPS), c.RPS[0], c.RPS[n-1])
		}
		if n := len(c.CPU); n > 0 {
			cpu = fmt.Sprintf("%.3f× [%.3f, %.3f]", median(c.CPU), c.CPU[0], c.CPU[n-1])
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %d |\n", c.Base, c.With, c.Kind, rps, cpu, c.Errors)
	}
	b.WriteString("\nTracing costs what the traced row's CPU/req ratio exceeds 1 (and its req/s ratio falls short of it); a cache hit saves what its CPU/req ratio falls short of 1. Only the gateway's processes are pinned to its cores: the discarding OTLP sink runs in the benchmark, with the load generator, and fakellm, which reverse_proxy calls and a hit does not, on the load generator's cores.\n")
}
