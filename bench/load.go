package main

import (
	"bytes"
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
	TTFB         []time.Duration // streams: time to the first body byte, sorted
	Errors       int
	FirstErr     error
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

// worker holds one load-generating goroutine's scratch space.
type worker struct {
	client *http.Client
	url    string
	body   []byte
	stream bool
	buf    []byte
	tail   []byte
}

// do sends one request and reads the answer to the end. ttfb is the time to
// the first body byte.
func (w *worker) do(ctx context.Context) (ttfb time.Duration, err error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(w.body))
	if err != nil {
		return 0, err
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
			if total == 0 {
				ttfb = time.Since(start)
			}
			total += n
			w.tail = append(w.tail, w.buf[:n]...)
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
	return ttfb, nil
}

// runLoad drives url with conc closed-loop workers: warmup first, then dur
// of measurement. A request counts when it completes inside the window.
func runLoad(ctx context.Context, client *http.Client, url string, body []byte, stream bool, conc int, warmup, dur time.Duration) *result {
	res := &result{Stream: stream, Window: dur}
	begin := time.Now()
	from, to := begin.Add(warmup), begin.Add(warmup+dur)

	type sample struct{ lat, ttfb time.Duration }
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		samples  = make([][]sample, conc)
		errs     int
		firstErr error
	)
	for i := range conc {
		wg.Go(func() {
			w := &worker{client: client, url: url, body: body, stream: stream, buf: make([]byte, 32<<10)}
			s := make([]sample, 0, 1<<14)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(to) {
					break
				}
				ttfb, err := w.do(ctx)
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
				s = append(s, sample{t1.Sub(t0), ttfb})
			}
			samples[i] = s
		})
	}
	wg.Wait()
	client.CloseIdleConnections()

	for _, s := range samples {
		for _, x := range s {
			res.Latency = append(res.Latency, x.lat)
			if stream {
				res.TTFB = append(res.TTFB, x.ttfb)
			}
		}
	}
	slices.Sort(res.Latency)
	slices.Sort(res.TTFB)
	res.Errors, res.FirstErr = errs, firstErr
	return res
}

// check sends one request and reports whether the target answers correctly,
// so that a misconfiguration fails fast instead of filling a table with
// errors.
func check(ctx context.Context, client *http.Client, url string, body []byte, stream bool) error {
	w := &worker{client: client, url: url, body: body, stream: stream, buf: make([]byte, 32<<10)}
	_, err := w.do(ctx)
	return err
}
