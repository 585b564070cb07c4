package gateway

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"
)

func TestDrain(t *testing.T) {
	var d Drain
	r := httptest.NewRequest("POST", "/v1/chat/completions", nil)
	live, liveID := d.track(r)
	done, doneID := d.track(r)
	d.untrack(doneID) // a stream that ended on its own
	if c := context.Cause(done.Context()); c != context.Canceled {
		t.Fatalf("an untracked stream's context: cause %v, want a plain cancel", c)
	}
	if live.Context().Err() != nil || d.Drained() {
		t.Fatal("drained before Drain")
	}

	d.DrainIn(0)
	d.DrainIn(time.Hour) // only the first call counts
	if !d.Drained() || !errors.Is(context.Cause(live.Context()), ErrShuttingDown) {
		t.Fatalf("after Drain: drained %v, cause %v", d.Drained(), context.Cause(live.Context()))
	}
	late, lateID := d.track(r)
	if !errors.Is(context.Cause(late.Context()), ErrShuttingDown) {
		t.Fatalf("a stream starting after Drain: cause %v", context.Cause(late.Context()))
	}
	d.untrack(liveID)
	d.untrack(lateID)
	if len(d.live) != 0 {
		t.Fatalf("%d streams still registered", len(d.live))
	}
	if r.Context().Err() != nil {
		t.Fatal("the drain cancelled the request's own context")
	}
	var none *Drain
	if none.Drained() {
		t.Fatal("a nil drain drained")
	}
}
