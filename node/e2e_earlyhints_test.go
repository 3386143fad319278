package node_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestE2EEarlyHints: through a real edged, the origin's 103 reaches a
// client on a miss and is not replayed on the hit that follows; after
// `edgectl tenant update --early-hints` the hit gets a 103 built from the
// cached page's preload Link, and the origin is still asked once.
func TestE2EEarlyHints(t *testing.T) {
	c := startE2ECluster(t, 1)
	c.waitStatus(1)
	var hits atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Link", "</origin.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Link", "</cached.js>; rel=preload; as=script")
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Cache-Control", "public, max-age=300")
		fmt.Fprintf(w, "<html>%s</html>", r.URL.Path)
	}))
	defer origin.Close()
	srv := c.servers()
	c.mustCtl("--server", srv, "tenant", "add", "shop.example", "--origin", origin.URL)

	// get returns the Link values of the 103s the client saw, and the status.
	get := func(path string) ([]string, int) {
		t.Helper()
		var hints []string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, fmt.Sprintf("%d %s", code, strings.Join(h["Link"], ", ")))
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", "http://"+c.nodes[0].http+path, nil)
		req.Host = "shop.example"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return hints, resp.StatusCode
	}
	testkit.Eventually(t, 3*time.Second, "the tenant served", func() bool { _, code := get("/warm"); return code == 200 })

	if h, code := get("/page"); code != 200 || len(h) != 1 || h[0] != "103 </origin.css>; rel=preload; as=style" {
		t.Fatalf("miss: %d, 103s %q, want the origin's", code, h)
	}
	if h, code := get("/page"); code != 200 || len(h) != 0 {
		t.Fatalf("hit without the setting: %d, 103s %q, want none", code, h)
	}
	c.mustCtl("--server", srv, "tenant", "update", "shop.example", "--early-hints")
	testkit.Eventually(t, 3*time.Second, "a 103 from the cached page", func() bool {
		h, code := get("/page")
		return code == 200 && len(h) == 1 && h[0] == "103 </cached.js>; rel=preload; as=script"
	})
	if n := hits.Load(); n != 2 { // /warm and /page once each
		t.Fatalf("origin asked %d times, want 2", n)
	}
}
