package redistest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTimeout bounds how long a new cluster may take to agree on its
// slots.
const clusterTimeout = 30 * time.Second

// Cluster is a local Redis Cluster of three masters and no replicas, each a
// redis-server owned by the test.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster launches three cluster-enabled redis-servers on free
// 127.0.0.1 ports (each with its nodes.conf in its own temporary
// directory), joins them with `redis-cli --cluster create`, waits until
// every node reports cluster_state:ok and registers the termination of all
// three with t.Cleanup.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli := lookPath(t, "redis-cli")
	c := &Cluster{t: t}
	for range 3 {
		c.Nodes = append(c.Nodes, start(t, freeClusterPort, func(s *Server) []string {
			return []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
				"--cluster-node-timeout", "5000",
			}
		}))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitOK(ctx); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return c
}

// freeClusterPort returns a free port whose cluster bus port (port+10000,
// the default of every Redis version) is free too.
func freeClusterPort() (int, error) {
	for range 20 {
		p, err := freePort()
		if err != nil {
			return 0, err
		}
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free port with a free cluster bus port")
}

// waitOK polls CLUSTER INFO on every node until all of them know the three
// masters and every slot, and say cluster_state:ok.
func (c *Cluster) waitOK(ctx context.Context) error {
	var last string
	for {
		ready := true
		for _, n := range c.Nodes {
			info, err := clusterInfo(ctx, n.Addr())
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, "cluster_slots_assigned:16384") ||
				!strings.Contains(info, "cluster_known_nodes:3") {
				ready, last = false, fmt.Sprintf("%s: %v %s", n.Addr(), err, info)
				break
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ok within %v; last CLUSTER INFO %s", clusterTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func clusterInfo(ctx context.Context, addr string) (string, error) {
	nc := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	defer nc.Close()
	info, err := nc.ClusterInfo(ctx).Result()
	return strings.ReplaceAll(info, "\r", ""), err
}

// Addrs returns host:port of the three nodes.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Client returns a new go-redis cluster client seeded with every node,
// closed when the test ends. Each call returns a separate client, e.g. to
// simulate several gateway processes.
func (c *Cluster) Client() *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:       c.Addrs(),
		DialTimeout: time.Second,
	})
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// FlushAll empties every master.
func (c *Cluster) FlushAll() {
	c.t.Helper()
	for _, n := range c.Nodes {
		n.FlushAll()
	}
}

// Keys returns the keys matching pattern on every master (KEYS only sees
// the node it is sent to).
func (c *Cluster) Keys(pattern string) []string {
	c.t.Helper()
	var keys []string
	for _, n := range c.Nodes {
		keys = append(keys, n.Keys(pattern)...)
	}
	return keys
}
