package node

import (
	"context"
	"fmt"
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
// primaries), and after a restart, with an empty L1, it answers the
// same URLs from L2 without asking the origin.
func TestRedisClusterL2Wiring(t *testing.T) {
	cl := testkit.StartRedisCluster(t, 3, 0)
	var hits atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		io.WriteString(w, "page "+r.URL.Path)
	}))
	t.Cleanup(origin.Close)

	cfg := testConfig(t, "a")
	cfg.BootstrapExpect, cfg.HTTPAddr = 1, "127.0.0.1:0"
	cfg.ProxyOptions.RedisAddr = strings.Join(cl.Addrs(), ",")
	cfg.ProxyOptions.RedisMode = "cluster"
	start := func() *testNode {
		n := startNode(t, cfg)
		testkit.Eventually(t, 5*time.Second, "leader", func() bool { return n.store.IsLeader() })
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

	a := start()
	ts := edgev1.NewTenantServiceClient(dial(t, a.AdminAddr(), testToken))
	if _, err := ts.Add(authCtx(testToken), &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: "shop.example", Origin: &edgev1.Origin{Url: origin.URL}}}); err != nil {
		t.Fatal(err)
	}
	// The first lookups may pass the tier's 5 ms while the client dials
	// (the breaker then drops writes for a second): fill paths of its own
	// until writes land, then the five this test follows.
	warm := func(n *testNode, stores int64) {
		for i := 0; n.cache.Stats().L2.Stores < stores; i++ {
			if i == 300 {
				t.Fatalf("no writes reached the cluster: %+v", n.cache.Stats().L2)
			}
			get(n, "/warm/"+time.Now().Format("150405.000000"))
			time.Sleep(20 * time.Millisecond)
		}
	}
	warm(a, 1)
	stores := a.cache.Stats().L2.Stores
	// Five objects whose L2 write landed. On a loaded machine the tier's
	// breaker may drop a write (and every write for a second after a slow
	// lookup): such an object is replaced by a new one after that second.
	var paths []string
	for i := range 5 {
		for attempt := 0; ; attempt++ {
			p := fmt.Sprintf("/p/%c%d", 'a'+i, attempt)
			before := a.cache.Stats().L2
			get(a, p)
			landed := false
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				st := a.cache.Stats().L2
				if landed = st.Stores > before.Stores; landed || st.DroppedWrites > before.DroppedWrites {
					break
				}
			}
			if landed {
				paths = append(paths, p)
				break
			}
			if attempt == 5 {
				t.Fatalf("%s: no L2 write landed in 6 tries: %+v", p, a.cache.Stats().L2)
			}
			time.Sleep(1100 * time.Millisecond)
		}
	}
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

	// The node restarts with an empty L1 (the same raft state, so the
	// same tenant generation and keys).
	a.stop()
	b := start()
	testkit.Eventually(t, 5*time.Second, "the tenant replayed", func() bool {
		req, _ := http.NewRequest("GET", "http://"+b.HTTPAddr()+"/warm/replayed", nil)
		req.Host = "shop.example"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	warm(b, 10) // 10 objects: most likely a connection to every primary
	// Every object is an L2 hit, except that a lookup may still pass the
	// 5 ms bound on a loaded test machine: such a miss must show as an L2
	// error, and the next lookup waits out the breaker's second.
	found := 0
	for _, p := range paths {
		before, errs := hits.Load(), b.cache.Stats().L2.Errors
		switch cs := get(b, p); {
		case cs == "edge; hit" && hits.Load() == before:
			found++
		case b.cache.Stats().L2.Errors > errs:
			t.Logf("restarted node, %s: an L2 lookup error (the 5 ms bound), a miss", p)
			time.Sleep(1100 * time.Millisecond)
		default:
			t.Fatalf("restarted node, %s: Cache-Status %q, L2 %+v; want an L2 hit", p, cs, b.cache.Stats().L2)
		}
	}
	if found < 3 {
		t.Fatalf("restarted node: %d of 5 objects from L2", found)
	}
}
