package route

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

func TestSharedCooldowns(t *testing.T) {
	rs := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := NewHealth(1, time.Minute), NewHealth(1, time.Minute)
	for _, h := range []*Health{a, b} {
		sc := &SharedCooldowns{Client: rs.Client(), Key: "test:cooldowns", Poll: 50 * time.Millisecond}
		go sc.Run(ctx, h)
	}
	time.Sleep(100 * time.Millisecond) // both running
	now := time.Now()
	a.Failure("p\x00m", now, 0) // max_fails 1: open for a minute
	deadline := time.Now().Add(2 * time.Second)
	for b.Available("p\x00m", time.Now()) {
		if time.Now().After(deadline) {
			t.Fatal("b never learned a's cooldown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := b.State("p\x00m", time.Now()); got != "open" {
		t.Fatalf("b's breaker %s", got)
	}
	// An ended cooldown's entry is deleted by the pollers; the live one
	// stays.
	past := strconv.FormatInt(time.Now().Add(-time.Second).UnixMilli(), 10)
	rs.Client().HSet(ctx, "test:cooldowns", "q\x00m", past)
	deadline = time.Now().Add(3 * time.Second)
	for {
		m, _ := rs.Client().HGetAll(ctx, "test:cooldowns").Result()
		if _, ok := m["p\x00m"]; ok && len(m) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entries %v", m)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !b.Available("q\x00m", time.Now()) {
		t.Fatal("an ended cooldown cooled b down")
	}
	// The target answers on a again (its half-open probe): b takes it
	// back too.
	a.Success("p\x00m")
	deadline = time.Now().Add(2 * time.Second)
	for !b.Available("p\x00m", time.Now()) {
		if time.Now().After(deadline) {
			t.Fatal("b kept the cooldown a's success ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n, _ := rs.Client().HLen(ctx, "test:cooldowns").Result(); n != 0 {
		t.Fatalf("%d entries left", n)
	}
}

func TestSetOnCoolUnsetKeepsANewerOne(t *testing.T) {
	h := NewHealth(1, time.Minute)
	var got []string
	unsetOld := h.SetOnCool(func(k string, _ time.Time) { got = append(got, "old:"+k) })
	h.SetOnCool(func(k string, _ time.Time) { got = append(got, "new:"+k) })
	unsetOld() // a reload's old config stopping after the new one started
	h.Failure("k", time.Now(), 0)
	if len(got) != 1 || got[0] != "new:k" {
		t.Fatalf("got %v", got)
	}
}
