package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

func TestKillRestart(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()

	srv.Kill()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := c.Ping(short).Err(); err == nil {
		t.Fatal("PING succeeded after Kill")
	}

	srv.Restart()
	if srv.Addr() != addr {
		t.Fatalf("Restart moved the server from %s to %s", addr, srv.Addr())
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("existing client after Restart: %v", err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("restarted server kept data: %d, %v", n, err)
	}
}
