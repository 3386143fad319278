package upstream

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// poolKind is one of the three kinds of pool a tenant can get, with its
// origin.
type poolKind struct {
	name   string
	target Target
	origin *origin
}

// poolKinds starts an origin serving h for each kind of pool: plain http
// (lean client), https with HTTP/1.1 (lean client over TLS) and https
// with HTTP/2 (http.Transport).
func poolKinds(t *testing.T, h http.HandlerFunc) []poolKind {
	t.Helper()
	ca := testkit.NewCA(t, "CA")
	leaf := ca.Issue(t, []string{"127.0.0.1"}).TLS
	plain := startOrigin(t, h, nil, false)
	h1 := startOrigin(t, h, &tls.Config{Certificates: []tls.Certificate{leaf}}, false)
	h2 := startOrigin(t, h, &tls.Config{Certificates: []tls.Certificate{leaf}}, true)
	return []poolKind{
		{"http", Target{URL: plain.url}, plain},
		{"https-h1", Target{URL: h1.url, TLS: TLS{CAPEM: ca.PEM}}, h1},
		{"https-h2", Target{URL: h2.url, TLS: TLS{CAPEM: ca.PEM}}, h2},
	}
}

// openConns is how many of the origin's connections are still open, as
// the origin sees them.
func (o *origin) openConns() int64 { return o.newConns.Load() - o.closedConns.Load() }

// TestCloseClosesIdleOriginConnections: after Pools.Close (node
// shutdown) every origin sees all its keep-alive connections closed at
// once, not after IdleConnTimeout, and Get fails.
func TestCloseClosesIdleOriginConnections(t *testing.T) {
	hold := make(chan struct{})
	kinds := poolKinds(t, func(w http.ResponseWriter, r *http.Request) {
		<-hold // concurrent requests each take their own connection
		io.WriteString(w, "ok")
	})
	p := newPools(t, func(c *Config) { c.IdleConnTimeout = time.Minute })
	var wg sync.WaitGroup
	for _, k := range kinds {
		rt, err := p.Get(k.name, k.target)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, body, err := get(rt, k.target.URL); err != nil || body != "ok" {
					t.Errorf("%s: %q %v", k.name, body, err)
				}
			}()
		}
	}
	for _, k := range kinds {
		testkit.Eventually(t, 5*time.Second, k.name+" requests at the origin", func() bool { return k.origin.count("GET /") == 3 })
	}
	close(hold)
	wg.Wait()
	for _, k := range kinds {
		if n := k.origin.openConns(); n < 1 {
			t.Fatalf("%s: %d keep-alive connections open before Close, want some", k.name, n)
		}
	}
	p.Close()
	for _, k := range kinds {
		testkit.Eventually(t, 5*time.Second, k.name+" origin connections closed", func() bool { return k.origin.openConns() == 0 })
	}
	if _, err := p.Get("late", kinds[0].target); err == nil {
		t.Fatal("Get after Close succeeded")
	}
}

// TestRetiredPoolFinishesInFlightThenCloses: a tenant removed while its
// request is at the origin still gets the whole response; the connection
// closes once the response is done (at the latest on the next sweep, a
// second later). A request that took the pool before the removal and
// dials after it leaves no connection idle until IdleConnTimeout either.
func TestRetiredPoolFinishesInFlightThenCloses(t *testing.T) {
	body := strings.Repeat("x", 64<<10)
	started := make(chan struct{}, 1)
	release := make(chan struct{}, 1)
	kinds := poolKinds(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, body)
	})
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			p := newPools(t, func(c *Config) { c.IdleConnTimeout = time.Minute })
			rt, err := p.Get("a", k.target)
			if err != nil {
				t.Fatal(err)
			}
			slow := *k.target.URL
			slow.Path = "/slow"
			type result struct {
				body string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				_, b, err := get(rt, &slow)
				done <- result{b, err}
			}()
			<-started
			p.Remove("a") // the pool's last tenant: it retires
			release <- struct{}{}
			if r := <-done; r.err != nil || r.body != body {
				t.Fatalf("in-flight request on the retired pool: %d bytes, %v; want the whole response", len(r.body), r.err)
			}
			testkit.Eventually(t, 5*time.Second, "the finished request's connection closed", func() bool { return k.origin.openConns() == 0 })

			// rt was taken before the removal; its dial comes after.
			if _, b, err := get(rt, k.target.URL); err != nil || b != body {
				t.Fatalf("request on a pool taken before the removal: %v", err)
			}
			testkit.Eventually(t, 5*time.Second, "the late connection closed", func() bool { return k.origin.openConns() == 0 })
		})
	}
}
