package proxy

import (
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/proxy/compress"
	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// These tests run the handler with the real upstream pools and compressor,
// wired the way node wires them.

func newPools(t *testing.T, cfg upstream.Config) *PoolUpstreams {
	t.Helper()
	p, err := upstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return NewPoolUpstreams(p)
}

func TestWithUpstreamPools(t *testing.T) {
	a := origin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin A") })
	b := origin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin B") })
	slow := origin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()

	var view atomic.Pointer[mapRoutes]
	set := func(ts ...*tenantcfg.Tenant) { m := routesOf(ts...); view.Store(&m) }
	set(tenant("shop.example", a.URL), tenant("slow.example", slow.URL), tenant("dead.example", dead))
	p := startProxy(t, routesFunc(func(h string) *tenantcfg.Tenant { return (*view.Load())[h] }), proxyOpts{cfg: Config{
		Upstreams:   newPools(t, upstream.Config{ResponseHeaderTimeout: 200 * time.Millisecond}),
		IsTimeout:   upstream.IsTimeout,
		ErrorReason: upstream.Reason,
	}})

	if body := readAll(t, p.do(t, "GET", "shop.example", "/", "", nil)); body != "origin A" {
		t.Fatalf("got %q", body)
	}
	set(tenant("shop.example", b.URL)) // edgectl tenant set --origin …
	if body := readAll(t, p.do(t, "GET", "shop.example", "/", "", nil)); body != "origin B" {
		t.Fatalf("after origin change got %q", body)
	}
	set(tenant("slow.example", slow.URL), tenant("dead.example", dead))
	if resp := p.do(t, "GET", "slow.example", "/", "", nil); resp.StatusCode != 504 {
		t.Fatalf("slow origin: %d", resp.StatusCode)
	}
	if resp := p.do(t, "GET", "dead.example", "/", "", nil); resp.StatusCode != 502 {
		t.Fatalf("dead origin: %d", resp.StatusCode)
	}
	logs := p.logs.String()
	for _, want := range []string{`"tenant":"dead.example","host":"dead.example","status":502,"reason":"connect: connection refused"`,
		`"tenant":"slow.example","host":"slow.example","status":504,"reason":"response header timeout"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

func TestWithCompressor(t *testing.T) {
	page := strings.Repeat("<p>hello edge</p>\n", 1000)
	var pre bytes.Buffer
	zw := gzip.NewWriter(&pre)
	io.WriteString(zw, page)
	zw.Close()
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/pre" {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(pre.Bytes())
			return
		}
		io.WriteString(w, page)
	})
	c, err := compress.New(compress.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{cfg: Config{WrapWriter: CompressWriter(c)}})

	for _, tc := range []struct{ path, accept, wantCE string }{
		{"/", "gzip", "gzip"},
		{"/", "br;q=1, gzip;q=0.5", "br"},
		{"/", "", ""},
		{"/pre", "gzip", "gzip"}, // pass-through
		{"/pre", "identity", ""}, // decoded for a client without gzip
	} {
		req, _ := http.NewRequest("GET", p.url+tc.path, nil)
		req.Host = "shop.example"
		req.Header.Set("Accept-Encoding", tc.accept)
		resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		raw := readAll(t, resp)
		if ce := resp.Header.Get("Content-Encoding"); ce != tc.wantCE {
			t.Errorf("%s %q: Content-Encoding %q, want %q", tc.path, tc.accept, ce, tc.wantCE)
		}
		if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("%s %q: no Vary: Accept-Encoding", tc.path, tc.accept)
		}
		if resp.Header.Get("X-Total-Time") == "" {
			t.Errorf("%s %q: no timing headers", tc.path, tc.accept)
		}
		switch tc.wantCE {
		case "":
			if raw != page {
				t.Errorf("%s %q: identity body differs", tc.path, tc.accept)
			}
		case "gzip":
			zr, err := gzip.NewReader(strings.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(zr); string(b) != page {
				t.Errorf("%s %q: gzip body differs", tc.path, tc.accept)
			}
			if tc.path == "/pre" && raw != pre.String() {
				t.Errorf("pre-compressed body was re-encoded, not passed through")
			}
		}
	}
}
