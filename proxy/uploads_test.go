package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// uploadOrigin counts the connections made to it, the requests whose
// body it is reading, and the bodies that ended in an error (the proxy
// closed the connection mid-body).
type uploadOrigin struct {
	srv                     *httptest.Server
	conns, reading, cutoffs atomic.Int64
}

func startUploadOrigin(t *testing.T) *uploadOrigin {
	t.Helper()
	o := &uploadOrigin{}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.reading.Add(1)
		defer o.reading.Add(-1)
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			o.cutoffs.Add(1)
			return
		}
		io.WriteString(w, "stored")
	}))
	o.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			o.conns.Add(1)
		}
	}
	o.srv.Start()
	t.Cleanup(o.srv.Close)
	return o
}

// trickle starts a POST of 100 bytes through p, sends one, and stalls.
func trickle(t *testing.T, p *testProxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 100\r\n\r\nx")
	return c, bufio.NewReader(c)
}

// TestStalledRequestBodyCut: a client that stops sending its body is
// answered 408 after ClientBodyTimeout, and the origin connection its
// upload held is closed (the origin's body read fails), not kept for as
// long as the client likes.
func TestStalledRequestBodyCut(t *testing.T) {
	o := startUploadOrigin(t)
	p := startProxy(t, routesOf(tenant("shop.example", o.srv.URL)), proxyOpts{cfg: Config{
		Upstreams: newPools(t, upstream.Config{}), IsTimeout: upstream.IsTimeout, ErrorReason: upstream.Reason,
		ClientBodyTimeout: 300 * time.Millisecond,
	}})
	_, br := trickle(t, p)
	start := time.Now()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a stalled upload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("status %d close=%v, want 408 and close", resp.StatusCode, resp.Close)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("answered after %v", d)
	}
	testkit.Eventually(t, 5*time.Second, "the origin connection to be closed", func() bool {
		return o.cutoffs.Load() == 1 && o.reading.Load() == 0
	})
}

// TestUploadsBoundedPerOrigin: with MaxUploadsPerOrigin 2 and two slow
// uploads streaming, a third upload to the same origin is answered 503
// at once and takes no origin connection; a bodiless GET still goes
// through.
func TestUploadsBoundedPerOrigin(t *testing.T) {
	o := startUploadOrigin(t)
	p := startProxy(t, routesOf(tenant("shop.example", o.srv.URL)), proxyOpts{cfg: Config{
		Upstreams: newPools(t, upstream.Config{MaxUploadsPerOrigin: 2}), IsTimeout: upstream.IsTimeout, ErrorReason: upstream.Reason,
	}})
	for range 2 {
		trickle(t, p)
	}
	testkit.Eventually(t, 5*time.Second, "two uploads at the origin", func() bool { return o.reading.Load() == 2 })
	_, br := trickle(t, p)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("third upload: %v\n%s", err, p.logs.String())
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third upload: status %d, want 503 with Retry-After", resp.StatusCode)
	}
	if n := o.conns.Load(); n != 2 {
		t.Log(p.logs.String())
		t.Errorf("origin connections = %d, want 2", n)
	}
	if body := readAll(t, p.do(t, "GET", "shop.example", "/", "", nil)); body != "stored" {
		t.Errorf("GET beside the uploads: %q", body)
	}
}
