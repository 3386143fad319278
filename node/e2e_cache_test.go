package node_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestE2ECachePurgeAcrossCluster drives `edgectl cache purge` against a
// 3-node cluster and checks, through each node's proxy, that purged objects
// are fetched from the origin again while others stay cached.
func TestE2ECachePurgeAcrossCluster(t *testing.T) {
	c := startE2ECluster(t, 3)
	var hits atomic.Int64
	perPath := map[string]*atomic.Int64{}
	for _, p := range []string{"/a", "/img/b", "/tagged", "/other"} {
		perPath[p] = new(atomic.Int64)
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if n := perPath[r.URL.Path]; n != nil {
			n.Add(1)
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		if r.URL.Path == "/tagged" {
			w.Header().Set("Surrogate-Key", "product-42 catalog")
		}
		fmt.Fprintf(w, "body of %s", r.URL.Path)
	}))
	defer origin.Close()
	srv := c.servers()
	c.mustCtl("--server", srv, "tenant", "add", "shop.example", "--origin", origin.URL)

	// Warm every node's cache with every path; the second round is all hits.
	fetch := func(node int, path string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+c.nodes[node].http+path, nil)
		req.Host = "shop.example"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s on node %d: %d", path, node, resp.StatusCode)
		}
		return resp.Header.Get("Cache-Status")
	}
	for _, path := range []string{"/a", "/img/b", "/tagged", "/other"} {
		for n := range c.nodes {
			testkit.Eventually(t, 3e9, "tenant on node", func() bool {
				req, _ := http.NewRequest("GET", "http://"+c.nodes[n].http+path, nil)
				req.Host = "shop.example"
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == 200
			})
			if cs := fetch(n, path); !strings.Contains(cs, "hit") {
				t.Fatalf("second GET %s on node %d: Cache-Status %q, want a hit", path, n, cs)
			}
		}
	}
	before := hits.Load()

	purge := func(args ...string) map[string]any {
		t.Helper()
		out := c.mustCtl(append([]string{"--server", srv, "cache", "purge", "shop.example", "-o", "json"}, args...)...)
		var r map[string]any
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("purge output %q: %v", out, err)
		}
		if r["acknowledged"] != float64(3) || r["total"] != float64(3) {
			t.Fatalf("purge %v: %v, want acknowledged by 3/3", args, r)
		}
		return r
	}
	expectMiss := func(path string, want bool) {
		t.Helper()
		for n := range c.nodes {
			cs := fetch(n, path)
			if got := !strings.Contains(cs, "; hit"); got != want {
				t.Errorf("node %d %s after purge: Cache-Status %q, want miss=%v", n, path, cs, want)
			}
		}
	}

	purge("--url", "/a")
	expectMiss("/a", true)
	expectMiss("/other", false)
	purge("--prefix", "/img/")
	expectMiss("/img/b", true)
	purge("--tag", "product-42")
	expectMiss("/tagged", true)
	expectMiss("/other", false)
	if got := hits.Load() - before; got != 9 {
		t.Errorf("origin fetches after three targeted purges: %d, want 9 (each of 3 nodes refetches each of the 3 purged paths once)", got)
	}
	// Never-cached URL: fine, acknowledged everywhere.
	purge("--url", "/never/cached")
	purge("--all")
	expectMiss("/other", true)

	// Bad selectors get a clear error and no purge.
	if _, errs, code := c.ctl("--server", srv, "cache", "purge", "shop.example", "--tag", "a b"); code != 1 || !strings.Contains(errs, "tag") {
		t.Errorf("bad tag: exit %d, %q", code, errs)
	}
	if _, _, code := c.ctl("--server", srv, "cache", "purge", "shop.example"); code != 2 {
		t.Errorf("no selector: exit %d, want 2", code)
	}
	if _, errs, code := c.ctl("--server", srv, "cache", "purge", "unknown.example", "--all"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("unknown tenant: exit %d, %q", code, errs)
	}
}
