package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// ErrShuttingDown is the cause with which a Drain cancels the upstream
// attempts of live streams.
var ErrShuttingDown = errors.New("gateway: shutting down")

// Drain ends the live streams of the gateways sharing it when the process
// exits: Drain cancels the upstream attempt of every stream request under
// way with ErrShuttingDown, and each ends with a terminal error event in its
// client's format (code gateway_shutting_down) rather than being cut when
// the server's grace period runs out. A stream request that has not sent a
// byte yet answers 503 gateway_shutting_down.
//
// Only stream requests register (one map insert and delete each, no
// goroutine); other requests never touch the drain. The zero value is ready
// to use.
type Drain struct {
	drained   atomic.Bool
	scheduled atomic.Bool

	mu   sync.Mutex
	next uint64
	live map[uint64]context.CancelCauseFunc
}

// Drain ends every live stream and any that starts afterwards.
func (d *Drain) Drain() {
	d.mu.Lock()
	d.drained.Store(true)
	live := d.live
	d.live = nil
	d.mu.Unlock()
	for _, cancel := range live {
		cancel(ErrShuttingDown)
	}
}

// DrainIn calls Drain after wait, at once if wait <= 0. Only the first
// call counts.
func (d *Drain) DrainIn(wait time.Duration) {
	if !d.scheduled.CompareAndSwap(false, true) {
		return
	}
	if wait <= 0 {
		d.Drain()
		return
	}
	time.AfterFunc(wait, d.Drain)
}

// Drained reports whether Drain was called. A nil drain never drains.
func (d *Drain) Drained() bool { return d != nil && d.drained.Load() }

// track binds r to a context that Drain cancels and registers it until
// untrack(id).
func (d *Drain) track(r *http.Request) (*http.Request, uint64) {
	ctx, cancel := context.WithCancelCause(r.Context())
	d.mu.Lock()
	if d.drained.Load() {
		d.mu.Unlock()
		cancel(ErrShuttingDown)
		return r.WithContext(ctx), 0
	}
	if d.live == nil {
		d.live = make(map[uint64]context.CancelCauseFunc)
	}
	d.next++
	id := d.next
	d.live[id] = cancel
	d.mu.Unlock()
	return r.WithContext(ctx), id
}

func (d *Drain) untrack(id uint64) {
	d.mu.Lock()
	cancel := d.live[id]
	delete(d.live, id)
	d.mu.Unlock()
	if cancel != nil {
		cancel(nil)
	}
}

// errShuttingDown is what a drained request tells its client.
func errShuttingDown() *openai.Error {
	return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "gateway_shutting_down",
		Message: "The gateway is shutting down. Retry the request.", RetryAfter: 1}
}
