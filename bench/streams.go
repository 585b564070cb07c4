package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Models fakellm is scripted with for the stream measurements.
const (
	slowModel  = "bench-slow"  // a stream that stays open: one chunk a second
	pacedModel = "bench-paced" // 64 content chunks, 20 ms apart
)

// pacedLength is about how long one paced stream lasts.
const pacedLength = 64 * 20 * time.Millisecond

// memResult is the memory one proxy process holds per open stream.
type memResult struct {
	Target        string
	Opened, Tried int
	Before, Open  int64 // RSS in bytes: idle, and with the streams open
	Err           error
}

// PerStream is the RSS growth per open stream in bytes.
func (m memResult) PerStream() float64 {
	if m.Opened == 0 {
		return 0
	}
	return float64(m.Open-m.Before) / float64(m.Opened)
}

// openStreams opens n slow streams through r at once, each on its own
// connection, waits until every one has delivered its first content token
// (or failed), reads the RSS of pid before and while they are open, then
// closes them all.
func openStreams(ctx context.Context, r request, n int, pid int) memResult {
	res := memResult{Tried: n}
	tr := &http.Transport{
		Proxy:              nil,
		DialContext:        (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	runtimeSettle()
	before, err := rssBytes(pid)
	if err != nil {
		res.Err = err
		return res
	}
	res.Before = before

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		ready    sync.WaitGroup
		opened   atomic.Int64
		errOnce  sync.Once
		firstErr error
	)
	ready.Add(n)
	for range n {
		wg.Go(func() {
			first := false
			defer func() {
				if !first {
					ready.Done()
				}
			}()
			err := holdStream(sctx, client, r, func() { first = true; opened.Add(1); ready.Done() })
			if err != nil && sctx.Err() == nil {
				errOnce.Do(func() { firstErr = err })
			}
		})
	}
	waitTimeout(&ready, 60*time.Second)
	time.Sleep(time.Second) // let the proxy settle with everything open
	open, err := rssBytes(pid)
	res.Opened = int(opened.Load())
	res.Open = open
	if err != nil {
		res.Err = err
	} else if firstErr != nil {
		res.Err = firstErr
	}
	cancel()
	wg.Wait()
	return res
}

// holdStream sends r and reads the stream until ctx ends; opened is called
// at the first content token.
func holdStream(ctx context.Context, client *http.Client, r request, opened func()) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(r.body))
	if err != nil {
		return err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return fmt.Errorf("status %d: %q", resp.StatusCode, b)
	}
	buf := make([]byte, 4<<10)
	var tail []byte
	seen := false
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 && !seen {
			tail = append(tail, buf[:n]...)
			if firstToken(tail) {
				seen = true
				opened()
			}
		}
		if err != nil {
			if !seen && err == io.EOF {
				return errors.New("stream ended before its first token")
			}
			return err
		}
	}
}

// runtimeSettle gives a proxy a moment to finish the work of earlier
// requests (idle connections closing, timers) before its RSS is read.
func runtimeSettle() { time.Sleep(500 * time.Millisecond) }

// waitTimeout waits for wg for at most d.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
