package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/edgeproxy/edge/proxy/rawconn"
	"github.com/edgeproxy/edge/scripts/testkit"
)

func TestHTTP2OverTLS(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "via=%s proto=%s", r.Header.Get("Via"), r.Header.Get("X-Forwarded-Proto"))
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{tls: true})
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "shop.example"},
		ForceAttemptHTTP2: true,
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", p.tlsURL+"/", nil)
	req.Host = "shop.example"
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.ProtoMajor != 2 || resp.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("proto %s, ALPN %q; want HTTP/2", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
	if body != "via=2 edge proto=https" || resp.Header.Get("X-Total-Time") == "" {
		t.Fatalf("body %q headers %v", body, resp.Header)
	}
	// Unknown :authority over h2 → 403 as well.
	req, _ = http.NewRequest("GET", p.tlsURL+"/", nil)
	req.Host = "other.example"
	resp, err = (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 403 || body != "edge: unknown domain other.example\n" {
		t.Fatalf("h2 unknown host: %d %q", resp.StatusCode, body)
	}
}

// TestHugeHeaders431 checks net/http's behaviour: a request whose header
// block exceeds MaxHeaderBytes (plus the 4096 bytes of slack net/http
// allows) gets 431 and the connection is closed.
func TestHugeHeaders431(t *testing.T) {
	p := startProxy(t, mapRoutes{}, proxyOpts{server: ServerConfig{MaxHeaderBytes: 8 << 10}})
	c := dialProxy(t, p)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 16<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	// Just under the limit still works (403: no tenant).
	c = dialProxy(t, p)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 7<<10))
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("header under the limit: %v %v", resp, err)
	}
}

// TestSlowloris sends the header one byte every 50 ms; the server must
// close the connection once ReadHeaderTimeout passes, not wait forever.
func TestSlowloris(t *testing.T) {
	p := startProxy(t, mapRoutes{}, proxyOpts{server: ServerConfig{ReadHeaderTimeout: 300 * time.Millisecond}})
	c := dialProxy(t, p)
	closed := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(c) // returns when the server closes
		closed <- err
	}()
	start := time.Now()
	req := "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Slow: " + strings.Repeat("a", 200)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(3 * time.Second)
	for i := 0; ; i++ {
		if i < len(req) {
			c.Write([]byte{req[i]}) // errors once closed: that is the point
		}
		select {
		case <-closed:
		case <-deadline:
			t.Fatal("slow client still connected after 3s")
		case <-tick.C:
			continue
		}
		break
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("connection closed after %v, ReadHeaderTimeout is 300ms", d)
	}
}

func TestGracefulShutdownDrains(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "finished")
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{})
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", p.url+"/", nil)
		req.Host = "shop.example"
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{string(b), err}
	}()
	<-arrived
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- p.srv.Shutdown(ctx)
	}()
	addr := p.srv.HTTPAddr().String()
	testkit.Eventually(t, 5*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: %q %v", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestMaxConns(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{server: ServerConfig{MaxConns: 1}})
	send := func(c net.Conn) <-chan error {
		errc := make(chan error, 1)
		go func() {
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
			}
			errc <- err
		}()
		return errc
	}
	a := dialProxy(t, p)
	if err := <-send(a); err != nil {
		t.Fatal(err)
	}
	b := dialProxy(t, p) // TCP-connected, but not accepted by the server
	bDone := send(b)
	select {
	case err := <-bDone:
		t.Fatalf("second connection served over a cap of 1 (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	a.Close()
	select {
	case err := <-bDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second connection not served after the first closed")
	}
}

func TestWebSocketEcho(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		websocket.Handler(func(ws *websocket.Conn) {
			var msg string
			for websocket.Message.Receive(ws, &msg) == nil {
				if websocket.Message.Send(ws, msg) != nil {
					return
				}
			}
		}).ServeHTTP(w, r)
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{})
	cfg, err := websocket.NewConfig("ws://shop.example/chat", "http://shop.example/")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := websocket.NewClient(cfg, dialProxy(t, p))
	if err != nil {
		t.Fatalf("handshake through the proxy: %v", err)
	}
	defer ws.Close()
	for _, msg := range []string{"hello", strings.Repeat("x", 100_000), "bye"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var back string
		if err := websocket.Message.Receive(ws, &back); err != nil {
			t.Fatal(err)
		}
		if back != msg {
			t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(back))
		}
	}
}

func TestUpgradeRefusedByOrigin(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upgrade=%q", r.Header.Get("Upgrade"))
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{})
	resp := p.do(t, "GET", "shop.example", "/", "", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}})
	if body := readAll(t, resp); resp.StatusCode != 200 || body != `upgrade="websocket"` {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

func TestNewServerValidates(t *testing.T) {
	h := http.NotFoundHandler()
	for name, cfg := range map[string]ServerConfig{
		"no handler":     {HTTPAddr: "127.0.0.1:0"},
		"no address":     {Handler: h},
		"tls without gc": {Handler: h, HTTPSAddr: "127.0.0.1:0"},
		"bad address":    {Handler: h, HTTPAddr: "256.0.0.1:0"},
	} {
		if s, err := NewServer(cfg); err == nil {
			s.Shutdown(context.Background())
			t.Errorf("%s: no error", name)
		}
	}
}

func TestServerRecoversPlainHandler(t *testing.T) {
	s, err := NewServer(ServerConfig{HTTPAddr: "127.0.0.1:0", Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("plain handler bug")
	})})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Shutdown(context.Background())
	resp, err := http.Get("http://" + s.HTTPAddr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func dialProxy(t *testing.T, p *testProxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func TestUpgradeResponseHasTimingHeaders(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		websocket.Handler(func(ws *websocket.Conn) {}).ServeHTTP(w, r)
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{})
	c := dialProxy(t, p)
	io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: shop.example\r\nConnection: keep-alive, Upgrade\r\n"+
		"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"+
		"Origin: http://shop.example\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
		resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake response: %d %v", resp.StatusCode, resp.Header)
	}
	for _, k := range []string{"X-Origin-Time", "X-Total-Time", "Server-Timing"} {
		if resp.Header.Get(k) == "" {
			t.Errorf("101 lacks %s: %v", k, resp.Header)
		}
	}
}

// The plain listener's connections read and write with raw system calls
// (proxy/rawconn), under the connection cap, and can still be half-closed
// (h1's lingering close looks for CloseWrite); the TLS listener's do not.
func TestPlainListenerUsesRawCalls(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("raw calls are linux only")
	}
	s, err := NewServer(ServerConfig{HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", MaxConns: 10, Handler: http.NotFoundHandler(),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errors.New("none") }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	accept := func(ln net.Listener) net.Conn {
		t.Helper()
		cli, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		lc, ok := c.(*limitConn)
		if !ok {
			t.Fatalf("accepted %T, want the connection cap's *limitConn", c)
		}
		if _, ok := c.(interface{ CloseWrite() error }); !ok {
			t.Fatal("no CloseWrite")
		}
		return lc.Conn
	}
	if c := accept(s.httpLn); reflect.TypeOf(c) != reflect.TypeOf(&rawconn.Conn{}) {
		t.Fatalf("plain listener's connection is %T, want *rawconn.Conn", c)
	}
	if c := accept(s.httpsLn); reflect.TypeOf(c) != reflect.TypeOf(&net.TCPConn{}) {
		t.Fatalf("TLS listener's connection is %T, want *net.TCPConn", c)
	}
}

// TestServerStandardPaths: with StandardPaths the plain listener is
// net/http's own (the handler's writer is net/http's, not h1's, and a
// request with both Content-Length and Transfer-Encoding is served by
// its chunked framing and the connection closed, where h1 answers 400)
// over plain net calls (no rawconn); without it, h1 over raw calls.
func TestServerStandardPaths(t *testing.T) {
	for _, standard := range []bool{false, true} {
		t.Run(fmt.Sprintf("standard=%v", standard), func(t *testing.T) {
			// The listener: what Accept hands out, before anything serves it.
			s, err := NewServer(ServerConfig{HTTPAddr: "127.0.0.1:0", MaxConns: -1, Handler: http.NotFoundHandler(), StandardPaths: standard})
			if err != nil {
				t.Fatal(err)
			}
			cli, err := net.Dial("tcp", s.HTTPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			c, err := s.httpLn.Accept()
			if err != nil {
				t.Fatal(err)
			}
			_, raw := c.(*rawconn.Conn)
			c.Close()
			cli.Close()
			s.Shutdown(context.Background())
			if runtime.GOOS == "linux" && raw == standard {
				t.Fatalf("plain listener's connection is %T (raw calls %v) with StandardPaths %v", c, raw, standard)
			}

			// The server: which one answers.
			var h1Writer atomic.Bool
			o := origin(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
			h, err := New(Config{Routes: routesOf(tenant("shop.example", o.URL)), Upstreams: newTransportUpstreams(t, nil)})
			if err != nil {
				t.Fatal(err)
			}
			s, err = NewServer(ServerConfig{HTTPAddr: "127.0.0.1:0", Handler: spy{next: h, h1: &h1Writer}, HandlerRecovers: true, StandardPaths: standard})
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- s.Serve() }()
			defer func() {
				if err := s.Shutdown(context.Background()); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
				if err := <-served; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}()
			p := &testProxy{srv: s, url: "http://" + s.HTTPAddr().String()}
			resp := p.do(t, "GET", "shop.example", "/", "", nil)
			readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("GET: %d", resp.StatusCode)
			}
			if h1Writer.Load() == standard {
				t.Fatalf("the handler's writer was h1's: %v, with StandardPaths %v", h1Writer.Load(), standard)
			}

			conn := dialProxy(t, p)
			status, closed := rawExchange(t, conn, bufio.NewReader(conn),
				"POST / HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
			want := 400
			if standard {
				want = 200
			}
			if status != want || !closed {
				t.Fatalf("CL+TE: %d, closed %v; want %d and closed", status, closed, want)
			}
		})
	}
}

// spy records whether the writer a request got is h1's (the one the
// direct path writes raw heads to).
type spy struct {
	next http.Handler
	h1   *atomic.Bool
}

func (s spy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, ok := w.(headWriter)
	s.h1.Store(ok)
	s.next.ServeHTTP(w, r)
}
