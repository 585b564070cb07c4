package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartSentinel launches a Redis Sentinel on a free 127.0.0.1 port that
// monitors master under the name name, waits until it reports master's
// address and registers its termination with t.Cleanup.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	s := start(t, freePort, func(s *Server) []string {
		// A sentinel rewrites its configuration file, so it needs one.
		conf := filepath.Join(s.dir, "sentinel.conf")
		host, port, _ := net.SplitHostPort(master.Addr())
		body := fmt.Sprintf("sentinel monitor %s %s %s 1\n", name, host, port)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		s.conf = conf
		return []string{"--sentinel"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
	defer sc.Close()
	for {
		addr, err := sc.GetMasterAddrByName(ctx, name).Result()
		if err == nil && net.JoinHostPort(addr[0], addr[1]) == master.Addr() {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: sentinel on %s does not know master %q: %v %v", s.Addr(), name, addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
