package testkit

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// RedisSentinelDownAfter is the down-after-milliseconds the sentinel
// starter sets: a primary silent this long is subjectively down, and
// the failover follows once two sentinels agree.
const RedisSentinelDownAfter = time.Second

// RedisSentinelGroup is a primary, its replica and three sentinels
// watching them under MasterName, all redis-server child processes on
// loopback ports (a sentinel is `redis-server sentinel.conf --sentinel`,
// the same binary, so no redis-sentinel package is needed).
type RedisSentinelGroup struct {
	t          testing.TB
	MasterName string
	Primary    *RedisServer // the primary at the start
	Replica    *RedisServer
	Sentinels  []*RedisServer
}

// StartRedisSentinel starts the group, waits until the replica is in
// sync and every sentinel knows the replica and the two other sentinels
// (so a failover can be authorized), and stops everything in t.Cleanup.
func StartRedisSentinel(t testing.TB) *RedisSentinelGroup {
	t.Helper()
	g := &RedisSentinelGroup{t: t, MasterName: "edge"}
	g.Primary = startRedis(t, "", nil)
	host, port, _ := strings.Cut(g.Primary.Addr(), ":")
	g.Replica = startRedis(t, "", []string{"--replicaof", host, port})
	conf := strings.Join([]string{
		fmt.Sprintf("sentinel monitor %s %s %s 2", g.MasterName, host, port),
		fmt.Sprintf("sentinel down-after-milliseconds %s %d", g.MasterName, RedisSentinelDownAfter.Milliseconds()),
		fmt.Sprintf("sentinel failover-timeout %s 10000", g.MasterName),
		fmt.Sprintf("sentinel parallel-syncs %s 1", g.MasterName),
		"",
	}, "\n")
	for range 3 {
		g.Sentinels = append(g.Sentinels, startRedis(t, conf, []string{"--sentinel"}))
	}
	EventuallyNil(t, 30*time.Second, g.ready)
	return g
}

// SentinelAddrs are the sentinels' host:port.
func (g *RedisSentinelGroup) SentinelAddrs() []string {
	var out []string
	for _, s := range g.Sentinels {
		out = append(out, s.Addr())
	}
	return out
}

// MasterAddr is the primary's address as the first running sentinel
// reports it.
func (g *RedisSentinelGroup) MasterAddr() (string, error) {
	for _, s := range g.Sentinels {
		if !s.running() {
			continue
		}
		v, err := redisDo(s.Addr(), "SENTINEL", "get-master-addr-by-name", g.MasterName)
		if err != nil {
			return "", err
		}
		// [host port]
		f := strings.Fields(strings.Trim(v, "[]"))
		if len(f) != 2 {
			return "", fmt.Errorf("sentinel %s: master address %q", s.Addr(), v)
		}
		return f[0] + ":" + f[1], nil
	}
	return "", fmt.Errorf("testkit: no sentinel running")
}

func (g *RedisSentinelGroup) ready() error {
	repl, err := redisDo(g.Replica.Addr(), "INFO", "replication")
	if err != nil {
		return err
	}
	if !strings.Contains(repl, "master_link_status:up") {
		return fmt.Errorf("redis replica %s: link to its primary not up", g.Replica.Addr())
	}
	for _, s := range g.Sentinels {
		q, err := redisDo(s.Addr(), "SENTINEL", "CKQUORUM", g.MasterName)
		if err != nil {
			return err
		}
		if !strings.Contains(q, "3 usable") {
			return fmt.Errorf("sentinel %s: %s", s.Addr(), q)
		}
		r, err := redisDo(s.Addr(), "SENTINEL", "REPLICAS", g.MasterName)
		if err != nil {
			return err
		}
		if !strings.Contains(r, g.Replica.Addr()[strings.LastIndex(g.Replica.Addr(), ":")+1:]) {
			return fmt.Errorf("sentinel %s does not know the replica yet", s.Addr())
		}
	}
	return nil
}
