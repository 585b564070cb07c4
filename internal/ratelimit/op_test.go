package ratelimit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
)

// Each Op calls its Limiter method with its fields.
func TestOpDo(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	m := ratelimit.NewMemory(clk.Now)
	rate := ratelimit.Rate{Limit: 10, Period: time.Minute}
	exp := clk.Now().Add(time.Hour)
	steps := []struct {
		op      ratelimit.Op
		allowed bool
	}{
		{ratelimit.Op{Kind: ratelimit.OpTake, Key: "k", Rate: rate, Amount: 10}, true},
		{ratelimit.Op{Kind: ratelimit.OpTake, Key: "k", Rate: rate, Amount: 1}, false},
		{ratelimit.Op{Kind: ratelimit.OpRefund, Key: "k", Rate: rate, Amount: 1}, false},
		{ratelimit.Op{Kind: ratelimit.OpTake, Key: "k", Rate: rate, Amount: 1}, true},
		{ratelimit.Op{Kind: ratelimit.OpAcquire, Key: "c", ID: "a", Slots: 1, Lease: time.Minute}, true},
		{ratelimit.Op{Kind: ratelimit.OpAcquire, Key: "c", ID: "b", Slots: 1, Lease: time.Minute}, false},
		{ratelimit.Op{Kind: ratelimit.OpRelease, Key: "c", ID: "a"}, false},
		{ratelimit.Op{Kind: ratelimit.OpAcquire, Key: "c", ID: "b", Slots: 1, Lease: time.Minute}, true},
		{ratelimit.Op{Kind: ratelimit.OpReserve, Key: "b", Window: "w", Limit: 100, Amount: 100, Expires: exp}, true},
		{ratelimit.Op{Kind: ratelimit.OpReserve, Key: "b", Window: "w", Limit: 100, Amount: 1, Expires: exp}, false},
		{ratelimit.Op{Kind: ratelimit.OpSettle, Key: "b", Window: "w", Reserved: 100, Amount: 40, Expires: exp}, false},
		{ratelimit.Op{Kind: ratelimit.OpReserve, Key: "b", Window: "w", Limit: 100, Amount: 1, Expires: exp}, true},
	}
	for i, s := range steps {
		res, err := s.op.Do(ctx, m)
		if err != nil {
			t.Fatalf("step %d (%v): %v", i, s.op.Kind, err)
		}
		if res.Allowed != s.allowed {
			t.Fatalf("step %d (%v): allowed %v, want %v", i, s.op.Kind, res.Allowed, s.allowed)
		}
	}
	if spent, reserved, _ := m.Spent(ctx, "b", "w"); spent != 40 || reserved != 1 {
		t.Fatalf("budget spent %d reserved %d, want 40 and 1", spent, reserved)
	}
	bad := ratelimit.Op{Kind: ratelimit.OpKind(99)}
	if _, err := bad.Do(ctx, m); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Fatalf("unknown kind: %v, want ErrInvalid", err)
	}
	for k, want := range map[ratelimit.OpKind]string{ratelimit.OpTake: "take", ratelimit.OpSettle: "settle", 99: "OpKind(99)"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", k, k.String(), want)
		}
	}
}
