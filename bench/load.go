package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// result is what one load run measured.
type result struct {
	Target, Kind string
	Stream       bool
	Window       time.Duration   // measured window
	Latency      []time.Duration // full request time (whole stream for streams), sorted
	TTFT         []time.Duration // streams: time to the first content token, sorted
	Errors       int
	FirstErr     error
	Redis        *redisDelta // Redis commands in the window; nil without Redis
	CPU          *cpuDelta   // CPU time of the proxy (and redis-server) in the window

	// Over the rounds (medianRounds): every round's req/s, and the
	// median of the round's req/s over reverse_proxy's in the same
	// round (0 when not computed).
	RoundRPS []float64
	Ratio    float64
}

// RPS is the completed requests per second in the window.
func (r *result) RPS() float64 { return float64(len(r.Latency)) / r.Window.Seconds() }

// percentile returns the nearest-rank percentile p (0..1) of sorted d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*p+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// newClient returns the client shared by every worker: one transport, enough
// idle connections per host for all workers, no proxy, no compression, no
// redirects.
func newClient(conc int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:               nil, // requests go to 127.0.0.1 only, never through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4*conc + 16,
		MaxIdleConnsPerHost: 2*conc + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     16 << 10,
		ReadBufferSize:      16 << 10,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("unexpected redirect")
		},
	}
}

// doneTail is how a complete OpenAI chat stream ends.
var doneTail = []byte("data: [DONE]\n\n")

// contentMark starts a chat chunk's content string; the first one followed
// by a character other than the closing quote is the first token (the role
// chunk before it carries "content":"").
var contentMark = []byte(`"content":"`)

// request is what a worker sends: one URL, body and header set.
type request struct {
	url    string
	body   []byte
	header http.Header // extra headers (gateway key, peer routing)
	stream bool
}

// worker holds one load-generating goroutine's scratch space.
type worker struct {
	client *http.Client
	request
	buf  []byte
	tail []byte
}

// do sends one request and reads the answer to the end. ttft is, for a
// stream, the time to the first content token.
func (w *worker) do(ctx context.Context) (ttft time.Duration, err error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(w.body))
	if err != nil {
		return 0, err
	}
	for k, v := range w.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	if w.stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	w.tail = w.tail[:0]
	total := 0
	for {
		n, rerr := resp.Body.Read(w.buf)
		if n > 0 {
			total += n
			w.tail = append(w.tail, w.buf[:n]...)
			if w.stream && ttft == 0 && firstToken(w.tail) {
				ttft = time.Since(start)
			}
			if len(w.tail) > 64 {
				w.tail = append(w.tail[:0], w.tail[len(w.tail)-64:]...)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, rerr
		}
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d: %q", resp.StatusCode, w.tail)
	}
	if total == 0 {
		return 0, errors.New("empty body")
	}
	if w.stream && !bytes.HasSuffix(w.tail, doneTail) {
		return 0, fmt.Errorf("stream did not end with [DONE]: …%q", w.tail)
	}
	if w.stream && ttft == 0 {
		return 0, errors.New("stream without a content token")
	}
	return ttft, nil
}

// firstToken reports whether b holds a content string that is not empty.
// b is the tail of what was read so far, so a mark split between two reads
// is found on the second.
func firstToken(b []byte) bool {
	for {
		i := bytes.Index(b, contentMark)
		if i < 0 || i+len(contentMark) >= len(b) {
			return false
		}
		if b[i+len(contentMark)] != '"' {
			return true
		}
		b = b[i+len(contentMark):]
	}
}

// runLoad drives r with conc closed-loop workers: warmup first, then dur
// of measurement. A request counts when it completes inside the window.
// mark, when set, is called when the window opens (false) and closes (true);
// runLoad waits for both calls before returning.
func runLoad(ctx context.Context, client *http.Client, r request, conc int, warmup, dur time.Duration, mark func(end bool)) *result {
	return runSpread(ctx, client, r, conc, 0, warmup, dur, mark)
}

// runSpread is runLoad with the workers' first requests spread evenly
// over spread, so that long requests (paced streams) arrive one after
// another as real traffic does, instead of in bursts of conc at once
// whose queueing would dominate the time to first token.
func runSpread(ctx context.Context, client *http.Client, r request, conc int, spread, warmup, dur time.Duration, mark func(end bool)) *result {
	stream := r.stream
	res := &result{Stream: stream, Window: dur}
	begin := time.Now()
	from, to := begin.Add(warmup), begin.Add(warmup+dur)
	var marks sync.WaitGroup
	if mark != nil {
		marks.Add(2)
		time.AfterFunc(warmup, func() { defer marks.Done(); mark(false) })
		time.AfterFunc(warmup+dur, func() { defer marks.Done(); mark(true) })
	}

	type sample struct{ lat, ttft time.Duration }
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		samples  = make([][]sample, conc)
		errs     int
		firstErr error
	)
	for i := range conc {
		wg.Go(func() {
			w := &worker{client: client, request: r, buf: make([]byte, 32<<10)}
			s := make([]sample, 0, 1<<14)
			if spread > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(spread * time.Duration(i) / time.Duration(conc)):
				}
			}
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(to) {
					break
				}
				ttft, err := w.do(ctx)
				t1 := time.Now()
				if t1.Before(from) || t1.After(to) {
					continue
				}
				if err != nil {
					if ctx.Err() != nil {
						break
					}
					mu.Lock()
					errs++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				s = append(s, sample{t1.Sub(t0), ttft})
			}
			samples[i] = s
		})
	}
	wg.Wait()
	marks.Wait()
	client.CloseIdleConnections()

	for _, s := range samples {
		for _, x := range s {
			res.Latency = append(res.Latency, x.lat)
			if stream {
				res.TTFT = append(res.TTFT, x.ttft)
			}
		}
	}
	slices.Sort(res.Latency)
	slices.Sort(res.TTFT)
	res.Errors, res.FirstErr = errs, firstErr
	return res
}

// check sends one request and reports whether the target answers correctly,
// so that a misconfiguration fails fast instead of filling a table with
// errors.
func check(ctx context.Context, client *http.Client, r request) error {
	w := &worker{client: client, request: r, buf: make([]byte, 32<<10)}
	_, err := w.do(ctx)
	return err
}

// medianRounds turns rounds of the same rows (rounds[i][j] is row j of
// round i) into one row each: the round whose req/s is the row's median,
// with every round's req/s and the median ratio to reverse_proxy of the
// same kind measured in the same round, which cancels a drift that hits
// a whole round.
func medianRounds(rounds [][]*result) []*result {
	if len(rounds) == 0 {
		return nil
	}
	out := make([]*result, len(rounds[0]))
	for j := range rounds[0] {
		rows := make([]*result, 0, len(rounds))
		var rps, ratios []float64
		for _, rs := range rounds {
			r := rs[j]
			rows = append(rows, r)
			rps = append(rps, r.RPS())
			for _, b := range rs {
				if b.Target == reverseProxy && b.Kind == r.Kind && b.RPS() > 0 {
					ratios = append(ratios, r.RPS()/b.RPS())
				}
			}
		}
		slices.SortFunc(rows, func(a, b *result) int { return cmp.Compare(a.RPS(), b.RPS()) })
		m := rows[len(rows)/2]
		m.RoundRPS = rps
		if len(ratios) > 0 {
			slices.Sort(ratios)
			m.Ratio = ratios[len(ratios)/2]
		}
		out[j] = m
	}
	return out
}

// cpuDelta is the CPU time processes used in a measured window.
type cpuDelta struct {
	pids   []int // the proxy, redis-server; 0: none
	used   []time.Duration
	before []time.Duration
	err    error
}

// cpuWindow returns a mark for runLoad that reads the CPU time of pids at
// the start and the end of the measured window.
func cpuWindow(pids []int) (func(end bool), *cpuDelta) {
	d := &cpuDelta{pids: pids, used: make([]time.Duration, len(pids)), before: make([]time.Duration, len(pids))}
	var mu sync.Mutex
	return func(end bool) {
		mu.Lock()
		defer mu.Unlock()
		for i, pid := range d.pids {
			if pid == 0 {
				continue
			}
			t, err := cpuTime(pid)
			if err != nil {
				d.err = err
				return
			}
			if end {
				d.used[i] = t - d.before[i]
			} else {
				d.before[i] = t
			}
		}
	}, d
}

// perRequest formats the CPU time per request: the proxy's, and
// redis-server's after a + when measured.
func (d *cpuDelta) perRequest(n int) string {
	if d == nil || d.err != nil || n == 0 || len(d.pids) == 0 || d.pids[0] == 0 {
		return "–"
	}
	s := fmt.Sprintf("%.0f µs", float64(d.used[0].Microseconds())/float64(n))
	if len(d.pids) > 1 && d.pids[1] != 0 {
		s += fmt.Sprintf(" + %.0f µs", float64(d.used[1].Microseconds())/float64(n))
	}
	return s
}
