package node

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestStandardPathsTurnsFastPathsOff: ProxyOptions.StandardPaths
// (--standard-paths) reaches every fast path through the node's wiring.
// Without it, marked uncacheable GETs take the direct relay, the tenant's
// origin pool answers a direct round trip (the lean client) and the plain
// listener is proxy/h1 (a request with both Content-Length and
// Transfer-Encoding gets h1's 400). With it: no direct response, the
// pool has no lean client, and net/http's server answers that request by
// its chunked framing and closes the connection. The answers to clients
// are the same otherwise.
func TestStandardPathsTurnsFastPathsOff(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, "uncacheable")
	}))
	t.Cleanup(origin.Close)

	for _, standard := range []bool{false, true} {
		t.Run(fmt.Sprintf("standard=%v", standard), func(t *testing.T) {
			cfg := testConfig(t, "a")
			cfg.BootstrapExpect, cfg.HTTPAddr = 1, "127.0.0.1:0"
			cfg.ProxyOptions.StandardPaths = standard
			n := startNode(t, cfg)
			testkit.Eventually(t, 5*time.Second, "leader", func() bool { return n.store.IsLeader() })
			ts := edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), testToken))
			if _, err := ts.Add(authCtx(testToken), &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{
				Domain: "shop.example", Origin: &edgev1.Origin{Url: origin.URL},
			}}); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, 5*time.Second, "tenant applied", func() bool { return n.store.View().Lookup("shop.example") != nil })

			// The direct relay: the first GET marks the URL, the next ones
			// are offered to the direct path.
			before := directResponses(t, n)
			for i := range 4 {
				req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+"/account", nil)
				req.Host = "shop.example"
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "uncacheable" || resp.Header.Get("Cache-Status") == "" {
					t.Fatalf("GET %d: %d %q, Cache-Status %q", i, resp.StatusCode, b, resp.Header.Get("Cache-Status"))
				}
			}
			direct := directResponses(t, n) - before
			if standard && direct != 0 || !standard && direct != 3 {
				t.Fatalf("%v direct responses out of 3 marked GETs with StandardPaths %v", direct, standard)
			}

			// The lean client: only it answers a direct round trip.
			rt, _, err := n.dp.ups.RoundTripper(n.store.View().Lookup("shop.example"))
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("GET", origin.URL+"/", nil)
			d, resp, ok, err := rt.(upstream.DirectTripper).RoundTripDirect(req, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d != nil {
				d.Body.Close()
			}
			if resp != nil {
				resp.Body.Close()
			}
			if ok == standard {
				t.Fatalf("the origin pool's lean client answered: %v, with StandardPaths %v", ok, standard)
			}

			// The plain listener's server.
			c, err := net.DialTimeout("tcp", n.HTTPAddr(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
			br := bufio.NewReader(c)
			r, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
			want := 400 // proxy/h1
			if standard {
				want = 200 // net/http, Connection: close
			}
			if _, err := br.ReadByte(); r.StatusCode != want || !errors.Is(err, io.EOF) {
				t.Fatalf("CL+TE request: %d, then %v; want %d and the connection closed", r.StatusCode, err, want)
			}
		})
	}
}

// directResponses reads edge_direct_responses_total from the node's registry.
func directResponses(t *testing.T, n *testNode) float64 {
	t.Helper()
	mfs, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "edge_direct_responses_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no edge_direct_responses_total")
	return 0
}

// TestStandardPathsFlag: --standard-paths and EDGE_STANDARD_PATHS set
// ProxyOptions.StandardPaths; the default keeps the fast paths.
func TestStandardPathsFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want bool
	}{
		{nil, "", false},
		{[]string{"--standard-paths"}, "", true},
		{nil, "1", true},
		{[]string{"--standard-paths=false"}, "1", false}, // the command line wins
	} {
		env := map[string]string{"EDGE_STANDARD_PATHS": tc.env}
		c, err := ParseFlags(append([]string{"--id", "x"}, tc.args...), func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.ProxyOptions.StandardPaths != tc.want {
			t.Errorf("%v with EDGE_STANDARD_PATHS=%q: StandardPaths %v, want %v", tc.args, tc.env, c.ProxyOptions.StandardPaths, tc.want)
		}
	}
}
