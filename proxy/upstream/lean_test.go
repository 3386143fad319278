package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeproxy/edge/proxy/rawconn"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// leanOf returns the lean client behind tenant's pool, failing the test if
// the plain-http pool has none.
func leanOf(t *testing.T, p *Pools, tg Target) *leanPool {
	t.Helper()
	rt, err := p.Get("lean-probe", tg)
	if err != nil {
		t.Fatal(err)
	}
	lp := rt.(*pool).lean
	if lp == nil {
		t.Fatal("plain-http pool has no lean client")
	}
	return lp
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func idleCount(lp *leanPool) int {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return len(lp.idle)
}

func TestLeanKeepAliveReuse(t *testing.T) {
	o := startOrigin(t, nil, nil, false)
	reg := prometheus.NewRegistry()
	p := newPools(t, func(c *Config) { c.Registerer = reg })
	tg := Target{URL: o.url}
	for i := range 10 {
		resp, body := mustGet(t, p, "t", tg)
		if resp.StatusCode != 200 || body != "proto=HTTP/1.1 sni=" {
			t.Fatalf("request %d: status %d body %q", i, resp.StatusCode, body)
		}
	}
	if n := o.newConns.Load(); n != 1 {
		t.Fatalf("origin saw %d connections for 10 sequential requests, want 1", n)
	}
	lp := leanOf(t, p, tg)
	if n := idleCount(lp); n != 1 {
		t.Fatalf("lean idle connections = %d, want 1", n)
	}
	if runtime.GOOS == "linux" {
		lp.mu.Lock()
		_, raw := lp.idle[0].conn.(*rawconn.Conn)
		lp.mu.Unlock()
		if !raw {
			t.Error("the origin connection does not read and write with raw system calls (proxy/rawconn)")
		}
	}
	for name, want := range map[string]float64{"edge_upstream_conns_open": 1, "edge_upstream_dials_total": 1} {
		if v := gathered(t, reg, name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	p.Close()
	testkit.Eventually(t, 5*time.Second, "connection closed by Close", func() bool { return o.closedConns.Load() == 1 })
	if v := gathered(t, reg, "edge_upstream_conns_open"); v != 0 {
		t.Errorf("conns_open after Close = %v", v)
	}
}

func TestLeanDisabledUsesTransport(t *testing.T) {
	o := startOrigin(t, nil, nil, false)
	p := newPools(t, func(c *Config) { c.DisableLeanHTTP1 = true })
	tg := Target{URL: o.url}
	rt, _ := p.Get("t", tg)
	if rt.(*pool).lean != nil {
		t.Fatal("lean client built although disabled")
	}
	mustGet(t, p, "t", tg)
	mustGet(t, p, "t", tg)
	if n := o.newConns.Load(); n != 1 {
		t.Fatalf("connections = %d, want 1", n)
	}
}

func TestLeanEarlyCloseNotReused(t *testing.T) {
	big := strings.Repeat("x", 256<<10)
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }, nil, false)
	p := newPools(t, nil)
	tg := Target{URL: o.url}
	rt, _ := p.Get("t", tg)
	req, _ := http.NewRequest(http.MethodGet, o.url.String(), nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Fatal("Read after Close succeeded")
	}
	testkit.Eventually(t, 5*time.Second, "origin sees the connection closed", func() bool { return o.closedConns.Load() == 1 })
	_, body := mustGet(t, p, "t", tg)
	if len(body) != len(big) {
		t.Fatalf("body %d bytes", len(body))
	}
	if n := o.newConns.Load(); n != 2 {
		t.Fatalf("connections = %d, want 2 (early close must not be reused)", n)
	}
}

func TestLeanConnectionCloseHonoured(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	}, nil, false)
	reg := prometheus.NewRegistry()
	p := newPools(t, func(c *Config) { c.Registerer = reg })
	tg := Target{URL: o.url}
	for range 3 {
		if _, body := mustGet(t, p, "t", tg); body != "bye" {
			t.Fatalf("body %q", body)
		}
	}
	if n := o.newConns.Load(); n != 3 {
		t.Fatalf("connections = %d, want 3", n)
	}
	if v := gathered(t, reg, "edge_upstream_conns_open"); v != 0 {
		t.Fatalf("conns_open = %v, want 0", v)
	}
}

// rawOrigin serves each connection with fn; it counts connections.
func rawOrigin(t *testing.T, fn func(c net.Conn, br *bufio.Reader)) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				fn(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String(), conns
}

func TestLeanHTTP10WithoutKeepAliveNotReused(t *testing.T) {
	addr, conns := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
		io.Copy(io.Discard, br) // keep it open: the client must close
	})
	p := newPools(t, nil)
	tg := Target{URL: mustURL(t, "http://"+addr)}
	for range 2 {
		if _, body := mustGet(t, p, "t", tg); body != "ok" {
			t.Fatalf("body %q", body)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("connections = %d, want 2", n)
	}
}

func TestLeanResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) { <-release }, nil, false)
	t.Cleanup(func() { close(release) })
	reg := prometheus.NewRegistry()
	p := newPools(t, func(c *Config) { c.ResponseHeaderTimeout = 100 * time.Millisecond; c.Registerer = reg })
	leanOf(t, p, Target{URL: o.url})
	err := failGet(t, p, "t", Target{URL: o.url})
	if !IsTimeout(err) || Reason(err) != "response header timeout" {
		t.Fatalf("IsTimeout=%v Reason=%q err=%v", IsTimeout(err), Reason(err), err)
	}
	if v := gathered(t, reg, "edge_upstream_conns_open"); v != 0 {
		t.Fatalf("conns_open = %v after timeout, want 0", v)
	}
}

func TestLeanContextCancelMidBody(t *testing.T) {
	release := make(chan struct{})
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, nil, false)
	t.Cleanup(func() { close(release) })
	p := newPools(t, nil)
	rt, _ := p.Get("t", Target{URL: o.url})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.url.String(), nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	n, err := resp.Body.Read(buf)
	if err != nil || string(buf[:n]) != "first" {
		t.Fatalf("first read %q %v", buf[:n], err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = io.ReadAll(resp.Body)
	if !errors.Is(err, context.Canceled) || IsTimeout(err) {
		t.Fatalf("read after cancel: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	testkit.Eventually(t, 5*time.Second, "connection closed", func() bool { return o.closedConns.Load() == 1 })
}

func TestLeanContextDeadlineIsTimeout(t *testing.T) {
	release := make(chan struct{})
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) { <-release }, nil, false)
	t.Cleanup(func() { close(release) })
	p := newPools(t, nil)
	rt, _ := p.Get("t", Target{URL: o.url})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.url.String(), nil)
	_, err := rt.RoundTrip(req)
	if !IsTimeout(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, IsTimeout %v", err, IsTimeout(err))
	}
}

// An origin that closes its idle keep-alive connections: a GET on the dead
// connection is replayed once on a fresh one; a POST is not replayed. The
// POST finds the dead connection by its peek and dials instead, so it
// succeeds without being sent twice.
func TestLeanStaleConnRetries(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, "ok")
	}, nil, false)
	p := newPools(t, nil)
	tg := Target{URL: o.url}
	rt, _ := p.Get("t", tg)
	lp := leanOf(t, p, tg)
	prime := func() {
		mustGet(t, p, "t", tg)
		o.srv.CloseClientConnections() // drops the idle keep-alive connection
		testkit.Eventually(t, 5*time.Second, "origin closed", func() bool { return o.closedConns.Load() == o.newConns.Load() })
	}

	prime()
	resp, body := mustGet(t, p, "t", tg)
	if body != "ok" || resp.StatusCode != 200 {
		t.Fatalf("GET after idle close: %d %q", resp.StatusCode, body)
	}

	prime()
	req, _ := http.NewRequest(http.MethodPost, o.url.String()+"/pay", strings.NewReader("pay=1"))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("POST after idle close: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n := o.count("POST /pay"); n != 1 {
		t.Fatalf("POST reached the origin %d times", n)
	}
	if n := idleCount(lp); n != 1 {
		t.Fatalf("idle = %d after POST, want 1", n)
	}
}

// An origin that reads a request on a kept-alive connection and drops the
// connection without answering: the POST is not replayed (it reached the
// origin), the GET is, once.
func TestLeanPostNeverRetried(t *testing.T) {
	var conns atomic.Int64
	posts, gets := new(atomic.Int64), new(atomic.Int64)
	addr, _ := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if req.URL.Path == "/drop" {
				if req.Method == http.MethodPost {
					posts.Add(1)
				} else {
					gets.Add(1)
				}
				return // close without a response byte
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p := newPools(t, nil)
	tg := Target{URL: mustURL(t, "http://"+addr)}
	rt, _ := p.Get("t", tg)
	for _, tc := range []struct{ method, body string }{
		{http.MethodPost, "pay=1"}, {http.MethodPost, ""}, {http.MethodGet, ""},
	} {
		m := tc.method
		mustGet(t, p, "t", tg) // an idle connection to reuse
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req, _ := http.NewRequest(m, tg.URL.String()+"/drop", body)
		if resp, err := rt.RoundTrip(req); err == nil {
			resp.Body.Close()
			t.Fatalf("%s to a dropping origin succeeded", m)
		}
	}
	if n := posts.Load(); n != 2 {
		t.Fatalf("2 POSTs reached the origin %d times, want 2", n)
	}
	if n := gets.Load(); n != 2 {
		t.Fatalf("GET reached the origin %d times, want 2 (one replay)", n)
	}
}

func TestLeanRequestBodies(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d %v %s", r.Method, r.ContentLength, r.TransferEncoding, b)
	}, nil, false)
	p := newPools(t, nil)
	rt, _ := p.Get("t", Target{URL: o.url})
	for _, tc := range []struct {
		cl   int64
		want string
	}{
		{5, "PUT 5 [] hello"},
		{-1, "PUT -1 [chunked] hello"},
	} {
		req, _ := http.NewRequest(http.MethodPut, o.url.String(), io.NopCloser(strings.NewReader("hello")))
		req.ContentLength = tc.cl
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.want {
			t.Fatalf("origin saw %q, want %q", b, tc.want)
		}
	}
	if n := o.newConns.Load(); n != 1 {
		t.Fatalf("connections = %d, want 1", n)
	}
}

func TestLeanChunkedStreamedAndTrailers(t *testing.T) {
	next := make(chan struct{})
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "one")
		w.(http.Flusher).Flush()
		<-next
		io.WriteString(w, "two")
		w.Header().Set("X-Sum", "6")
	}, nil, false)
	p := newPools(t, nil)
	rt, _ := p.Get("t", Target{URL: o.url})
	req, _ := http.NewRequest(http.MethodGet, o.url.String(), nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 {
		t.Fatalf("not chunked: length %d TE %v", resp.ContentLength, resp.TransferEncoding)
	}
	buf := make([]byte, 16)
	n, err := resp.Body.Read(buf) // arrives before the origin writes "two"
	if err != nil || string(buf[:n]) != "one" {
		t.Fatalf("first chunk %q %v", buf[:n], err)
	}
	close(next)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "two" || resp.Trailer.Get("X-Sum") != "6" {
		t.Fatalf("rest %q err %v trailer %v", rest, err, resp.Trailer)
	}
	mustGet(t, p, "t", Target{URL: o.url})
	if n := o.newConns.Load(); n != 1 {
		t.Fatalf("connections = %d, want 1 (chunked body read to EOF is reusable)", n)
	}
}

// A response far larger than any buffer streams through: the origin's
// writes proceed only as the client reads.
func TestLeanLargeResponseStreams(t *testing.T) {
	const total = 256 << 20
	var written atomic.Int64
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(total))
		chunk := make([]byte, 64<<10)
		for written.Load() < total {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}, nil, false)
	p := newPools(t, nil)
	rt, _ := p.Get("t", Target{URL: o.url})
	req, _ := http.NewRequest(http.MethodGet, o.url.String(), nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let an eager reader (if any) run ahead
	if w := written.Load(); w > 32<<20 {
		t.Fatalf("origin wrote %d MiB while the client read 1 MiB: response is buffered", w>>20)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != total-1<<20 {
		t.Fatalf("read %d, %v", n, err)
	}
}

func TestLeanIdleTimeout(t *testing.T) {
	o := startOrigin(t, nil, nil, false)
	p := newPools(t, func(c *Config) { c.IdleConnTimeout = 100 * time.Millisecond })
	tg := Target{URL: o.url}
	mustGet(t, p, "t", tg)
	testkit.Eventually(t, 5*time.Second, "idle connection closed by the sweeper", func() bool { return o.closedConns.Load() == 1 })
	mustGet(t, p, "t", tg)
	if n := o.newConns.Load(); n != 2 {
		t.Fatalf("connections = %d, want 2", n)
	}
}

func TestLeanMaxIdlePerHost(t *testing.T) {
	gate := make(chan struct{})
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) { <-gate }, nil, false)
	p := newPools(t, func(c *Config) { c.MaxIdleConnsPerHost = 2 })
	tg := Target{URL: o.url}
	done := make(chan error)
	for range 4 {
		go func() {
			rt, _ := p.Get("t", tg)
			_, _, err := get(rt, tg.URL)
			done <- err
		}()
	}
	testkit.Eventually(t, 5*time.Second, "4 connections", func() bool { return o.newConns.Load() == 4 })
	close(gate)
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := idleCount(leanOf(t, p, tg)); n != 2 {
		t.Fatalf("idle = %d, want 2", n)
	}
	testkit.Eventually(t, 5*time.Second, "2 connections closed", func() bool { return o.closedConns.Load() == 2 })
}

func TestLeanSkips1xxAndUpgradeUsesTransport(t *testing.T) {
	addr, conns := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Header.Get("Upgrade") == "echo" {
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
				io.Copy(c, br)
				return
			}
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine")
		}
	})
	p := newPools(t, nil)
	tg := Target{URL: mustURL(t, "http://"+addr)}
	if _, body := mustGet(t, p, "t", tg); body != "fine" {
		t.Fatalf("body %q", body)
	}
	rt, _ := p.Get("t", tg)
	req, _ := http.NewRequest(http.MethodGet, tg.URL.String(), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok {
		t.Fatalf("status %d, body writable %v", resp.StatusCode, ok)
	}
	defer rwc.Close()
	io.WriteString(rwc, "ping")
	b := make([]byte, 4)
	if _, err := io.ReadFull(rwc, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("connections = %d, want 2 (lean keep-alive + upgraded)", n)
	}
}

func BenchmarkLeanRoundTrip(b *testing.B) {
	for _, lean := range []bool{true, false} {
		b.Run(map[bool]string{true: "lean", false: "transport"}[lean], func(b *testing.B) {
			o := startOrigin(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }, nil, false)
			p, err := New(Config{DisableLeanHTTP1: !lean})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			rt, _ := p.Get("t", Target{URL: o.url})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, o.url.String(), nil)
				for pb.Next() {
					resp, err := rt.RoundTrip(req)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
