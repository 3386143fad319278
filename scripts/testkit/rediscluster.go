package testkit

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClusterNodeTimeout is the cluster-node-timeout the cluster
// starter sets: a primary silent this long is marked failing and its
// replica takes over about a second later.
const RedisClusterNodeTimeout = time.Second

// RedisCluster is a Redis Cluster of redis-server child processes on
// loopback ports, created with `redis-cli --cluster create`: each
// primary has its replicas, and the slots are split evenly over the
// primaries.
type RedisCluster struct {
	t     testing.TB
	Nodes []*RedisServer // in the order given to redis-cli: primaries first
}

// StartRedisCluster starts masters primaries with replicas replicas each,
// creates the cluster, waits until every node says cluster_state:ok and
// every replica is in sync, and stops every process in t.Cleanup.
func StartRedisCluster(t testing.TB, masters, replicas int) *RedisCluster {
	t.Helper()
	cli, ok := lookPath("redis-cli", "/usr/bin", "/usr/local/bin")
	if !ok {
		missing(t, "redis-cli", "install the Debian package redis-server (redis-tools)")
	}
	c := &RedisCluster{t: t}
	args := []string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", fmt.Sprint(RedisClusterNodeTimeout.Milliseconds()),
		"--cluster-require-full-coverage", "no",
		"--repl-diskless-sync", "yes",
		"--repl-diskless-sync-delay", "0",
	}
	n := masters * (1 + replicas)
	for range n {
		c.Nodes = append(c.Nodes, startRedis(t, "", args))
	}
	create := append([]string{"--cluster", "create"}, c.Addrs()...)
	create = append(create, "--cluster-replicas", fmt.Sprint(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, create...).CombinedOutput(); err != nil {
		t.Fatalf("testkit: redis-cli --cluster create: %v\n%s", err, out)
	}
	EventuallyNil(t, 30*time.Second, func() error { return c.healthy(masters, n-masters) })
	return c
}

// Addrs are every node's host:port, stopped ones included.
func (c *RedisCluster) Addrs() []string {
	var out []string
	for _, s := range c.Nodes {
		out = append(out, s.Addr())
	}
	return out
}

// Node is the node listening on addr, or nil.
func (c *RedisCluster) Node(addr string) *RedisServer {
	for _, s := range c.Nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// WaitHealthy waits up to d until the running nodes agree the cluster is
// ok with masters primaries and replicas replicas in sync.
func (c *RedisCluster) WaitHealthy(d time.Duration, masters, replicas int) {
	c.t.Helper()
	EventuallyNil(c.t, d, func() error { return c.healthy(masters, replicas) })
}

// Masters are the primaries that a running node sees as connected and
// serving slots, each with its connected replicas.
func (c *RedisCluster) Masters() (map[string][]string, error) { return c.topology() }

// topology reads CLUSTER NODES from the first running node: each
// connected primary with slots, and its connected replicas.
func (c *RedisCluster) topology() (map[string][]string, error) {
	for _, s := range c.Nodes {
		if !s.running() {
			continue
		}
		out, err := redisDo(s.Addr(), "CLUSTER", "NODES")
		if err != nil {
			return nil, err
		}
		ids := map[string]string{}
		masters := map[string][]string{}
		type replica struct{ addr, master string }
		var reps []replica
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			ids[f[0]] = addr
			live := f[7] == "connected" && !strings.Contains(f[2], "fail")
			switch {
			case !live:
			case strings.Contains(f[2], "master") && len(f) > 8:
				masters[addr] = nil
			case strings.Contains(f[2], "slave"):
				reps = append(reps, replica{addr, f[3]})
			}
		}
		for _, r := range reps {
			if m, ok := masters[ids[r.master]]; ok {
				masters[ids[r.master]] = append(m, r.addr)
			}
		}
		return masters, nil
	}
	return nil, fmt.Errorf("testkit: no redis cluster node running")
}

func (c *RedisCluster) healthy(masters, replicas int) error {
	for _, s := range c.Nodes {
		if !s.running() {
			continue
		}
		info, err := redisDo(s.Addr(), "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return fmt.Errorf("redis cluster node %s: not ok yet:\n%s", s.Addr(), info)
		}
		repl, err := redisDo(s.Addr(), "INFO", "replication")
		if err != nil {
			return err
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("redis cluster replica %s: link to its primary not up", s.Addr())
		}
	}
	m, err := c.topology()
	if err != nil {
		return err
	}
	n := 0
	for _, r := range m {
		n += len(r)
	}
	if len(m) != masters || n != replicas {
		return fmt.Errorf("redis cluster: %d primaries with %d replicas, want %d and %d: %v", len(m), n, masters, replicas, m)
	}
	return nil
}

// running reports whether the server process is up.
func (s *RedisServer) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// redisDo runs one command on one node and returns its reply as text.
func redisDo(addr string, args ...any) (string, error) {
	cl := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1, DisableIdentity: true, Protocol: 2})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, err := cl.Do(ctx, args...).Result()
	if err != nil {
		return "", fmt.Errorf("redis %s %v: %w", addr, args, err)
	}
	return fmt.Sprint(v), nil
}
