package node_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestE2EDirectPath drives the built edged with uncacheable URLs: after
// the first request marks a no-store URL, later ones take the direct path
// (counted by edge_direct_responses_total on the metrics listener) and
// answer exactly as the first did, timing headers, Cache-Status and
// forwarding headers included; a client accepting gzip for compressible
// text still gets it compressed, through the full path.
func TestE2EDirectPath(t *testing.T) {
	c := startE2ECluster(t, 1)
	var requests atomic.Int64
	var lastXFF atomic.Value
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		lastXFF.Store(r.Header.Get("X-Forwarded-For") + "|" + r.Header.Get("Via"))
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Set-Cookie", "s=1")
		fmt.Fprint(w, strings.Repeat("direct path body ", 100)) // 1,700 bytes: compressible
	}))
	defer origin.Close()
	c.mustCtl("--server", c.servers(), "tenant", "add", "direct.example", "--origin", origin.URL)
	n := c.nodes[0]

	get := func(acceptEncoding string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+n.http+"/account", nil)
		req.Host = "direct.example"
		tr := &http.Transport{DisableCompression: true}
		defer tr.CloseIdleConnections()
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	testkit.Eventually(t, 5e9, "tenant served", func() bool {
		resp := get("")
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	before := directCount(t, n.metrics)
	origBefore := requests.Load()
	for i := range 3 {
		resp := get("")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != strings.Repeat("direct path body ", 100) {
			t.Fatalf("request %d: %d, %d bytes", i, resp.StatusCode, len(body))
		}
		h := resp.Header
		for _, k := range []string{"X-Origin-Time", "X-Total-Time", "Server-Timing", "Date"} {
			if h.Get(k) == "" {
				t.Errorf("request %d: no %s", i, k)
			}
		}
		if got := h.Get("Cache-Status"); got != "edge; fwd=miss; detail=no-store" {
			t.Errorf("request %d: Cache-Status %q", i, got)
		}
		if h.Get("Set-Cookie") != "s=1" || h.Get("Vary") != "Accept-Encoding" {
			t.Errorf("request %d: Set-Cookie %q, Vary %q", i, h.Get("Set-Cookie"), h.Get("Vary"))
		}
	}
	want := 3
	if standardPaths() {
		want = 0 // the same answers, none of them direct
	}
	if got := directCount(t, n.metrics) - before; got != want {
		t.Errorf("edge_direct_responses_total rose by %d over 3 marked requests, want %d (--standard-paths %v)", got, want, standardPaths())
	}
	if got := requests.Load() - origBefore; got != 3 {
		t.Errorf("origin saw %d requests for 3, want 3", got)
	}
	if v, _ := lastXFF.Load().(string); !strings.HasPrefix(v, "127.0.0.1|1.1 edge") {
		t.Errorf("origin got X-Forwarded-For|Via %q", v)
	}

	// A compressible body for a gzip client: the full path compresses it.
	before = directCount(t, n.metrics)
	resp := get("gzip")
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("gzip client: Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	if got := directCount(t, n.metrics) - before; got != 0 {
		t.Errorf("a response to compress took the direct path (%d)", got)
	}
}

// directCount reads edge_direct_responses_total from a metrics listener.
func directCount(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "edge_direct_responses_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("edge_direct_responses_total %q", v)
			}
			return int(n)
		}
	}
	t.Fatal("no edge_direct_responses_total in /metrics")
	return 0
}
