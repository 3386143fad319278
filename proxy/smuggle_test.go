package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgeproxy/edge/proxy/cache"
)

// smuggle is a request framed two ways: by its Content-Length the body
// runs to the end, by its Transfer-Encoding it ends at "0\r\n\r\n" and
// a GET /smuggled follows, which a front end framing by Content-Length
// never saw.
func smuggle() string {
	body := "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: shop.example\r\n\r\n"
	return "POST /first HTTP/1.1\r\nHost: shop.example\r\nContent-Length: " + strconv.Itoa(len(body)) +
		"\r\nTransfer-Encoding: chunked\r\n\r\n" + body
}

// pathRecorder is an origin that records the paths it was asked for.
type pathRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (o *pathRecorder) seen(path string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range o.paths {
		if p == path {
			return true
		}
	}
	return false
}

// rawExchange writes raw on c and reads one response, then reports
// whether the proxy closed the connection after it (rather than
// answering anything else).
func rawExchange(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (status int, closed bool) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte()
	var ne net.Error
	closed = errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		(err != nil && !(errors.As(err, &ne) && ne.Timeout()))
	return resp.StatusCode, closed
}

// TestAmbiguousFramingRejectedOrClosed: a request with both
// Content-Length and Transfer-Encoding never gets the bytes after its
// chunked body served as a second request, on any listener. proxy/h1,
// which reads the head itself, answers 400 and closes (nginx's choice);
// net/http (the TLS listener, a connection h1 handed over) has dropped
// the Content-Length before the handler runs, so the request is served
// by its chunked framing and the connection closed (RFC 9112 6.1).
func TestAmbiguousFramingRejectedOrClosed(t *testing.T) {
	o := &pathRecorder{}
	up := origin(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		o.mu.Lock()
		o.paths = append(o.paths, r.URL.Path)
		o.mu.Unlock()
		io.WriteString(w, "ok")
	})
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache=%v", cached), func(t *testing.T) {
			var cfg Config
			if cached {
				// The cache writes the origin's header into the
				// response's map and drops its hop-by-hop fields.
				cfg.Cache, _ = newCacheCompressor(t, cache.Config{MaxBytes: 1 << 20})
			}
			ambiguousFraming(t, o, startProxy(t, routesOf(tenant("shop.example", up.URL)), proxyOpts{tls: true, cfg: cfg}))
		})
	}
}

func ambiguousFraming(t *testing.T, o *pathRecorder, p *testProxy) {
	const warm = "POST /warm HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 2\r\n\r\nhi"

	dialPlain := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", p.srv.HTTPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dialTLS := func(t *testing.T) net.Conn {
		c, err := tls.Dial("tcp", p.srv.HTTPSAddr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for _, tc := range []struct {
		name   string
		dial   func(*testing.T) net.Conn
		warm   bool // a request with a body first: h1 hands the connection to net/http
		req    string
		status int
	}{
		{"h1 CL+TE", dialPlain, false, smuggle(), 400},
		{"h1 duplicate Content-Length", dialPlain, false,
			"POST /first HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", 400},
		{"h1 TE not chunked", dialPlain, false,
			"POST /first HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"handed over CL+TE", dialPlain, true, smuggle(), 200},
		{"handed over conflicting Content-Length", dialPlain, true,
			"POST /first HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!", 400},
		{"TLS CL+TE", dialTLS, false, smuggle(), 200},
		{"TLS conflicting Content-Length", dialTLS, false,
			"POST /first HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!", 400},
		{"TLS TE not chunked", dialTLS, false,
			"POST /first HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o.mu.Lock()
			o.paths = nil
			o.mu.Unlock()
			c := tc.dial(t)
			br := bufio.NewReader(c)
			if tc.warm {
				if st, closed := rawExchangeOpen(t, c, br, warm); st != 200 || closed {
					t.Fatalf("warm-up: %d closed=%v", st, closed)
				}
			}
			st, closed := rawExchange(t, c, br, tc.req)
			if st != tc.status {
				t.Errorf("status %d, want %d", st, tc.status)
			}
			if !closed {
				t.Error("connection kept open after an ambiguously framed request")
			}
			if o.seen("/smuggled") {
				t.Error("the smuggled request reached the origin")
			}
			if tc.status != 200 && o.seen("/first") {
				t.Error("a rejected request reached the origin")
			}
		})
	}
}

// rawExchangeOpen is rawExchange for a request that must leave the
// connection open: it checks that nothing more arrives for a moment.
func rawExchangeOpen(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (int, bool) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Close
}
