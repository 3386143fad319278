package node

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// connOrigin is a real origin that counts the connections it has open
// and holds requests to /slow… until released.
type connOrigin struct {
	*httptest.Server
	open    atomic.Int64
	started chan struct{}
	release chan struct{}
}

func newConnOrigin(t *testing.T, body string) *connOrigin {
	t.Helper()
	o := &connOrigin{started: make(chan struct{}, 8), release: make(chan struct{})}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow") {
			o.started <- struct{}{}
			<-o.release
		}
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, body)
	}))
	o.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			o.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			o.open.Add(-1)
		}
	}
	o.Start()
	t.Cleanup(o.Close)
	t.Cleanup(func() { close(o.release) }) // first: Close waits for held requests
	return o
}

// proxyNode starts a one-node cluster with a plain-HTTP proxy whose
// origin connections stay idle for a minute unless something closes them.
func proxyNode(t *testing.T) (*testNode, edgev1.TenantServiceClient) {
	t.Helper()
	cfg := testConfig(t, "a")
	cfg.BootstrapExpect, cfg.HTTPAddr = 1, "127.0.0.1:0"
	cfg.ProxyOptions.IdleConnTimeout = time.Minute
	n := startNode(t, cfg)
	testkit.Eventually(t, 5*time.Second, "leader", func() bool { return n.store.IsLeader() })
	return n, edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), testToken))
}

// fetch sends GET path for host through the node's proxy.
func fetch(n *testNode, host, path string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+path, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// warm opens k keep-alive connections from the node to o for host: k
// requests held at the origin at once, then released.
func warm(t *testing.T, n *testNode, o *connOrigin, host, want string, k int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Distinct paths: the cache would collapse equal requests.
			if code, body, err := fetch(n, host, fmt.Sprintf("/slow/%d", i)); err != nil || code != 200 || body != want {
				t.Errorf("warming %s: %d %q %v", host, code, body, err)
			}
		}()
	}
	for range k {
		select {
		case <-o.started:
		case <-time.After(5 * time.Second):
			t.Fatal("requests did not reach the origin")
		}
	}
	for range k {
		o.release <- struct{}{}
	}
	wg.Wait()
	if got := o.open.Load(); got != int64(k) {
		t.Fatalf("origin has %d connections open after warming, want %d kept alive", got, k)
	}
}

func waitClosed(t *testing.T, o *connOrigin, within time.Duration, after string) {
	t.Helper()
	testkit.Eventually(t, within, "the origin's connections from Edge to close after "+after, func() bool { return o.open.Load() == 0 })
}

// TestTenantRemovalClosesOriginConnections: removing a tenant through the
// admin API closes Edge's idle keep-alive connections to its origin
// within seconds, without waiting for the idle timeout (a minute here)
// or another request.
func TestTenantRemovalClosesOriginConnections(t *testing.T) {
	n, ts := proxyNode(t)
	ctx := authCtx(testToken)
	o := newConnOrigin(t, "shop")
	if _, err := ts.Add(ctx, &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: "shop.example", Origin: &edgev1.Origin{Url: o.URL}}}); err != nil {
		t.Fatal(err)
	}
	warm(t, n, o, "shop.example", "shop", 3)
	if _, err := ts.Remove(ctx, &edgev1.TenantRef{Domain: "shop.example"}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, o, 5*time.Second, "the tenant's removal")
}

// TestTenantOriginChangeClosesOldOriginConnections: moving a tenant to
// another origin through the admin API lets a request in flight at the
// old origin finish with its whole response, then closes Edge's
// connections to the old origin within seconds; the next request goes to
// the new origin.
func TestTenantOriginChangeClosesOldOriginConnections(t *testing.T) {
	n, ts := proxyNode(t)
	ctx := authCtx(testToken)
	oldOrigin, newOrigin := newConnOrigin(t, "old"), newConnOrigin(t, "new")
	if _, err := ts.Add(ctx, &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: "shop.example", Origin: &edgev1.Origin{Url: oldOrigin.URL}}}); err != nil {
		t.Fatal(err)
	}
	warm(t, n, oldOrigin, "shop.example", "old", 2)

	type result struct {
		code int
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		code, body, err := fetch(n, "shop.example", "/slow")
		inflight <- result{code, body, err}
	}()
	<-oldOrigin.started
	u := newOrigin.URL
	if _, err := ts.Update(ctx, &edgev1.UpdateTenantRequest{Domain: "shop.example", Patch: &edgev1.TenantPatch{OriginUrl: &u}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the origin change applied", func() bool {
		return n.store.Lookup("shop.example").Origin.URL == u
	})
	// The idle connections close while the request is still held.
	testkit.Eventually(t, 5*time.Second, "the old origin's idle connections to close", func() bool { return oldOrigin.open.Load() == 1 })
	oldOrigin.release <- struct{}{}
	if r := <-inflight; r.err != nil || r.code != 200 || r.body != "old" {
		t.Fatalf("request in flight across the origin change: %d %q %v, want 200 from the old origin", r.code, r.body, r.err)
	}
	waitClosed(t, oldOrigin, 5*time.Second, "the origin change and the last response")
	if code, body, err := fetch(n, "shop.example", "/"); err != nil || code != 200 || body != "new" {
		t.Fatalf("after the origin change: %d %q %v, want the new origin", code, body, err)
	}
}

// TestShutdownClosesOriginConnections: a node that shuts down closes every
// keep-alive connection it had to its origins.
func TestShutdownClosesOriginConnections(t *testing.T) {
	n, ts := proxyNode(t)
	ctx := authCtx(testToken)
	a, b := newConnOrigin(t, "a"), newConnOrigin(t, "b")
	for d, o := range map[string]*connOrigin{"a.example": a, "b.example": b} {
		if _, err := ts.Add(ctx, &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: d, Origin: &edgev1.Origin{Url: o.URL}}}); err != nil {
			t.Fatal(err)
		}
	}
	warm(t, n, a, "a.example", "a", 3)
	warm(t, n, b, "b.example", "b", 1)
	n.stop()
	waitClosed(t, a, 2*time.Second, "shutdown")
	waitClosed(t, b, 2*time.Second, "shutdown")
}

// TestFailedNewReleasesWhatItOpened: a New that fails part way (its proxy
// or metrics port is taken), and a New closed without running, leave
// nothing behind: every port it had bound can be bound again at once and
// the goroutines it started have ended.
func TestFailedNewReleasesWhatItOpened(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cases := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"proxy port taken", func(c *Config) { c.HTTPAddr = taken.Addr().String() }, "listen"},
		{"https port taken", func(c *Config) { c.HTTPSAddr = taken.Addr().String() }, "listen"},
		{"metrics port taken", func(c *Config) { c.MetricsAddr = taken.Addr().String() }, "metrics listener"},
		{"closed without Run", func(*Config) {}, ""},
	}
	attempt := func(t *testing.T, mutate func(*Config), wantErr string) []string {
		t.Helper()
		cfg := testConfig(t, "a")
		cfg.BootstrapExpect = 1
		cfg.HTTPAddr, cfg.HTTPSAddr, cfg.MetricsAddr = testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
		mutate(&cfg)
		ports := []string{cfg.AdminAddr, cfg.RaftAddr, cfg.HTTPAddr, cfg.HTTPSAddr, cfg.MetricsAddr}
		n, err := New(cfg)
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("New: %v", err)
		case wantErr == "":
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
		case err == nil:
			n.Close()
			t.Fatalf("New succeeded, want an error about %q", wantErr)
		case !strings.Contains(err.Error(), wantErr):
			t.Fatalf("New: %v, want an error about %q", err, wantErr)
		}
		return ports
	}
	// A first attempt starts what a process starts once (gRPC, raft and
	// HTTP internals); the goroutines counted are those of one node.
	attempt(t, cases[0].mutate, cases[0].wantErr)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			for _, addr := range attempt(t, tc.mutate, tc.wantErr) {
				if addr == taken.Addr().String() {
					continue
				}
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Fatalf("port %s still bound after New returned: %v", addr, err)
				}
				ln.Close()
			}
			var now int
			deadline := time.Now().Add(5 * time.Second)
			for now = runtime.NumGoroutine(); now > before && time.Now().Before(deadline); now = runtime.NumGoroutine() {
				time.Sleep(20 * time.Millisecond)
			}
			if now > before {
				buf := make([]byte, 1<<20)
				t.Fatalf("%d goroutines, %d before New:\n%s", now, before, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

// TestMaxConnsFlag: --max-conns caps the client connections a node has
// open at once (a second client waits until the first leaves), and a
// negative value removes the cap, as its help text says.
func TestMaxConnsFlag(t *testing.T) {
	for _, tc := range []struct {
		flag   string
		capped bool
	}{{"1", true}, {"-1", false}} {
		t.Run(tc.flag, func(t *testing.T) {
			parsed, err := ParseFlags([]string{"--id", "a", "--max-conns", tc.flag}, func(string) string { return "" }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, "a")
			cfg.BootstrapExpect, cfg.HTTPAddr = 1, "127.0.0.1:0"
			cfg.ProxyOptions.MaxConns = parsed.ProxyOptions.MaxConns
			n := startNode(t, cfg)
			send := func() (net.Conn, <-chan error) {
				c, err := net.Dial("tcp", n.HTTPAddr())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				errc := make(chan error, 1)
				go func() {
					io.WriteString(c, "GET / HTTP/1.1\r\nHost: nobody.example\r\n\r\n")
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err == nil {
						_, err = io.ReadAll(resp.Body)
					}
					errc <- err
				}()
				return c, errc
			}
			first, done := send()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			_, second := send() // first is still open, kept alive
			select {
			case err := <-second:
				if tc.capped {
					t.Fatalf("a second connection was served over a cap of 1 (err %v)", err)
				}
				return
			case <-time.After(300 * time.Millisecond):
				if !tc.capped {
					t.Fatal("a second connection waits without a cap")
				}
			}
			first.Close()
			select {
			case err := <-second:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the second connection was not served after the first closed")
			}
		})
	}
}
