package node

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestRedisClusterL2Wiring: --redis-mode cluster with a list in
// --redis-addr reaches the node's cache. A node stores what it fetched in
// a real Redis Cluster (the objects are found on the cluster's
// primaries), and a second node, sharing the cluster only, answers the
// same URL from L2 without asking the origin.
func TestRedisClusterL2Wiring(t *testing.T) {
	cl := testkit.StartRedisCluster(t, 3, 0)
	var hits atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		io.WriteString(w, "page "+r.URL.Path)
	}))
	t.Cleanup(origin.Close)

	start := func(id string) *testNode {
		cfg := testConfig(t, id)
		cfg.BootstrapExpect, cfg.HTTPAddr = 1, "127.0.0.1:0"
		cfg.ProxyOptions.RedisAddr = strings.Join(cl.Addrs(), ",")
		cfg.ProxyOptions.RedisMode = "cluster"
		n := startNode(t, cfg)
		testkit.Eventually(t, 5*time.Second, "leader", func() bool { return n.store.IsLeader() })
		ts := edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), testToken))
		if _, err := ts.Add(authCtx(testToken), &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: "shop.example", Origin: &edgev1.Origin{Url: origin.URL}}}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	get := func(n *testNode, path string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+path, nil)
		req.Host = "shop.example"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "page "+path {
			t.Fatalf("GET %s: %d %q", path, resp.StatusCode, b)
		}
		return resp.Header.Get("Cache-Status")
	}

	a := start("a")
	// The first lookups may pass the tier's 5 ms while the client dials
	// (the breaker then drops writes for a second): fill paths of its own
	// until a write lands, then the five this test follows.
	warm := func(n *testNode) {
		for i := 0; n.cache.Stats().L2.Stores == 0; i++ {
			if i == 300 {
				t.Fatalf("no writes reached the cluster: %+v", n.cache.Stats().L2)
			}
			get(n, "/warm/"+time.Now().Format("150405.000000"))
			time.Sleep(20 * time.Millisecond)
		}
	}
	warm(a)
	stores := a.cache.Stats().L2.Stores
	var paths []string
	for i := range 5 {
		paths = append(paths, "/p/"+string(rune('a'+i)))
		get(a, paths[i])
	}
	testkit.Eventually(t, 10*time.Second, "5 writes", func() bool { return a.cache.Stats().L2.Stores >= stores+5 })
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { _ = direct.Close() })
	var keys atomic.Int64
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(direct.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		keys.Add(n)
		return err
	}))
	if keys.Load() < stores+5 {
		t.Fatalf("%d keys in the cluster, want the node's %d writes", keys.Load(), stores+5)
	}

	b := start("b")
	warm(b)
	before, l2 := hits.Load(), b.cache.Stats().L2.Hits
	for _, p := range paths {
		if cs := get(b, p); cs != "edge; hit" {
			t.Fatalf("second node, %s: Cache-Status %q, want an L2 hit", p, cs)
		}
	}
	if hits.Load() != before || b.cache.Stats().L2.Hits < l2+5 {
		t.Fatalf("second node: %d origin requests, L2 %+v; want the 5 objects from L2", hits.Load()-before, b.cache.Stats().L2)
	}
}
