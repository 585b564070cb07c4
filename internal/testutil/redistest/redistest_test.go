package redistest_test

import (
	"context"
	"fmt"
	"strings"
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

func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	c := cl.Client()
	ctx := context.Background()
	// Keys in different slots land on different masters; a hash tag keeps
	// keys together so a multi-key command works.
	for i := range 30 {
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	perNode := map[string]int{}
	for _, n := range cl.Nodes {
		perNode[n.Addr()] = len(n.Keys("k*"))
	}
	if len(perNode) != 3 || perNode[cl.Nodes[0].Addr()] == 0 || perNode[cl.Nodes[1].Addr()] == 0 || perNode[cl.Nodes[2].Addr()] == 0 {
		t.Fatalf("keys per node %v: want all three masters used", perNode)
	}
	if n := len(cl.Keys("k*")); n != 30 {
		t.Fatalf("Keys found %d of 30", n)
	}
	if err := c.MSet(ctx, "{t}a", 1, "{t}b", 2).Err(); err != nil {
		t.Fatalf("MSET in one slot: %v", err)
	}
	if err := c.MSet(ctx, "a", 1, "b", 2).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("MSET across slots: %v, want CROSSSLOT", err)
	}
	cl.FlushAll()
	if n := len(cl.Keys("*")); n != 0 {
		t.Fatalf("%d keys after FlushAll", n)
	}
}
