package node

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// benchCluster starts 3 in-process nodes with the production default raft
// timings (not the tight test timings), over loopback TCP.
func benchCluster(b *testing.B, mutate ...func(*Config)) []*testNode {
	b.Helper()
	var nodes []*testNode
	cfgs := make([]Config, 3)
	var join []string
	for i := range cfgs {
		cfgs[i] = benchConfig(b, fmt.Sprintf("b%d", i))
		for _, m := range mutate {
			m(&cfgs[i])
		}
		join = append(join, cfgs[i].AdminAddr)
	}
	for i := range cfgs {
		cfgs[i].Join, cfgs[i].BootstrapExpect = join, 3
		n, err := New(cfgs[i])
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		tn := &testNode{Node: n, cfg: cfgs[i], cancel: cancel, done: make(chan error, 1)}
		go func() { tn.done <- n.Run(ctx) }()
		b.Cleanup(tn.stop)
		nodes = append(nodes, tn)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok := true
		for _, n := range nodes {
			ok = ok && len(n.store.View().Members()) == 3 && n.readyTermOK()
		}
		if ok && leaderNode(nodes) != nil {
			return nodes
		}
		if time.Now().After(deadline) {
			b.Fatal("cluster did not form")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (tn *testNode) readyTermOK() bool {
	if !tn.store.IsLeader() {
		return true
	}
	return tn.readyTerm.Load() == tn.store.Term()
}

func benchConfig(b *testing.B, id string) Config {
	cfg := Config{ID: id, DataDir: b.TempDir(), RaftAddr: "127.0.0.1:0", AdminToken: testToken, ClusterKeys: [][]byte{[]byte(testClusterKey)}, Voters: 3, JoinRetry: 50 * time.Millisecond, RaftLogLevel: "error"}
	cfg.AdminAddr = testkit.FreeAddr(b)
	cfg.Logger = discardLogger()
	return cfg
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func addCmd(domain string) *raftstore.Command {
	t := &tenantcfg.Tenant{Domain: domain, Origin: tenantcfg.Origin{URL: "http://127.0.0.1:9"}, License: tenantcfg.License{Status: tenantcfg.LicenseActive}}
	// A request ID, as every API write has: apply retries a command whose
	// leader changed mid-commit, and the ID is what makes that safe.
	cmd, _ := raftstore.NewCommand(raftstore.CmdTenantAdd, requestID(context.Background()), time.Now(), t)
	return cmd
}

// BenchmarkWriteVisibleOnAllNodes: time from proposing a tenant write on a
// follower (forwarded to the leader) until all three nodes serve it.
func BenchmarkWriteVisibleOnAllNodes(b *testing.B) {
	nodes := benchCluster(b)
	f := follower(nodes)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d := fmt.Sprintf("vis-%d.example", i)
		start := time.Now()
		if _, err := f.apply(context.Background(), addCmd(d)); err != nil {
			b.Fatal(err)
		}
		for _, n := range nodes {
			for n.store.Lookup(d) == nil {
				time.Sleep(50 * time.Microsecond)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkUnplannedFailover: the leader stops abruptly (no leadership
// transfer, like kill -9); time until a write succeeds on a survivor.
func BenchmarkUnplannedFailover(b *testing.B) {
	var lat []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		nodes := benchCluster(b)
		l := leaderNode(nodes)
		var rest []*testNode
		for _, n := range nodes {
			if n != l {
				rest = append(rest, n)
			}
		}
		b.StartTimer()
		start := time.Now()
		_ = l.store.Close() // crash: raft stops answering, no handover
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := rest[0].apply(ctx, addCmd(fmt.Sprintf("fo-%d.example", i)))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		for _, n := range nodes {
			n.stop()
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(percentile(lat, 0.5).Milliseconds()), "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Milliseconds()), "p99-ms")
}

// BenchmarkPlannedTransfer: how long writes are blocked while leadership
// moves (edgectl cluster transfer-leader, or SIGTERM on the leader).
func BenchmarkPlannedTransfer(b *testing.B) {
	nodes := benchCluster(b)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l := leaderNode(nodes)
		start := time.Now()
		if err := l.store.Raft().LeadershipTransfer().Error(); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := l.apply(ctx, addCmd(fmt.Sprintf("tr-%d.example", i)))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkPurgeAllNodes: an `edgectl cache purge` as the API runs it —
// through raft, applied by every node's cache, confirmed by all three.
func BenchmarkPurgeAllNodes(b *testing.B) {
	// With a proxy (and so a cache) on every node.
	nodes := benchCluster(b, func(c *Config) { c.HTTPAddr = "127.0.0.1:0" })
	f := follower(nodes)
	if _, err := f.apply(context.Background(), addCmd("shop.example")); err != nil {
		b.Fatal(err)
	}
	for f.store.Lookup("shop.example") == nil {
		time.Sleep(time.Millisecond)
	}
	svc := &cacheService{n: f.Node}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		resp, err := svc.Purge(context.Background(), &edgev1.PurgeRequest{Domain: "shop.example", Urls: []string{fmt.Sprintf("/p/%d", i)}})
		if err != nil || resp.GetAcknowledged() != 3 {
			b.Fatalf("purge: %v %v", resp, err)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}
