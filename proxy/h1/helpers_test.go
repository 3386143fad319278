package h1

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// testServer is an h1.Server on 127.0.0.1 wired as proxy.Server wires it:
// the connections it hands over go to a net/http server serving a Handoff.
// Every response says which of the two served it in X-Served-By.
type testServer struct {
	addr     string
	h1       *Server
	std      *http.Server
	logs     *testkit.SyncBuffer
	serveErr chan error

	// handedOver counts connections the fallback saw with HandedOver true;
	// notHandedOver those it saw without.
	handedOver, notHandedOver atomic.Int32
	// h1NewHandedOver counts StateNew calls from h1 for connections that
	// claim to be handed over (must stay 0).
	h1NewHandedOver atomic.Int32
	// open counts connections as proxy.Server's connStats does, across
	// both servers: it must return to 0 once every client left.
	open atomic.Int32
}

func startH1(t *testing.T, h http.Handler, opts ...func(*Server, *http.Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), logs: &testkit.SyncBuffer{}, serveErr: make(chan error, 1)}
	hand := NewHandoff(ln.Addr())
	ts.h1 = &Server{
		Handler:           servedBy("h1", h),
		Fallback:          hand.Offer,
		ReadHeaderTimeout: 2 * time.Second,
		MaxHeaderBytes:    64 << 10,
		Logger:            slog.New(slog.NewTextHandler(ts.logs, nil)),
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateNew && HandedOver(c) {
				ts.h1NewHandedOver.Add(1)
			}
			ts.track(c, st)
		},
	}
	ts.std = &http.Server{
		Handler:           servedBy("std", h),
		ReadHeaderTimeout: 2 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
		ConnState: func(c net.Conn, st http.ConnState) {
			ts.track(c, st)
			if st != http.StateNew {
				return
			}
			if HandedOver(c) {
				ts.handedOver.Add(1)
			} else {
				ts.notHandedOver.Add(1)
			}
		},
	}
	for _, o := range opts {
		o(ts.h1, ts.std)
	}
	go func() { ts.serveErr <- ts.h1.Serve(ln) }()
	go func() { _ = ts.std.Serve(hand) }()
	t.Cleanup(func() {
		ts.h1.Close()
		ts.std.Close()
	})
	return ts
}

// startStd runs h on a plain net/http server, configured like the
// fallback of startH1.
func startStd(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           servedBy("std", h),
		ReadHeaderTimeout: 2 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func servedBy(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", name)
		h.ServeHTTP(w, r)
	})
}

// client returns a net/http client for ts that keeps one connection.
func (ts *testServer) client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// track is proxy.Server's connection count.
func (ts *testServer) track(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		if !HandedOver(c) {
			ts.open.Add(1)
		}
	case http.StateClosed, http.StateHijacked:
		ts.open.Add(-1)
	}
}

func (ts *testServer) url(path string) string { return "http://" + ts.addr + path }

// rawConn is a client connection speaking bytes.
type rawConn struct {
	t *testing.T
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return &rawConn{t: t, Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// resp is a response read off a rawConn, body included.
type resp struct {
	*http.Response
	body string
}

// tryRead reads one response to a request with the given method.
func (c *rawConn) tryRead(method string) (resp, error) {
	r, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return resp{}, err
	}
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	return resp{r, string(b)}, err
}

func (c *rawConn) read(method string) resp {
	c.t.Helper()
	r, err := c.tryRead(method)
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	return r
}

// expectClosed asserts the server closes the connection (EOF or reset)
// within d, without sending anything more.
func (c *rawConn) expectClosed(d time.Duration) {
	c.t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	b, err := c.br.ReadByte()
	if err == nil {
		rest, _ := c.br.Peek(c.br.Buffered())
		c.t.Fatalf("connection open: got %q", string(b)+string(rest))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open after %v", d)
	}
}

// echoed is what the echo handler reports about the request it saw.
type echoed struct {
	Method, RequestURI, Path, RawPath, RawQuery, URL, Host, Proto string
	ProtoMajor, ProtoMinor                                        int
	ForceQuery, Close, RemoteAddrSet                              bool
	ContentLength                                                 int64
	TransferEncoding                                              []string
	Header                                                        http.Header
	Body                                                          string
}

// echo answers with the request as the handler saw it, as JSON, without a
// Content-Type (so the server's sniffing is part of the comparison).
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e := echoed{
		Method: r.Method, RequestURI: r.RequestURI, Path: r.URL.Path, RawPath: r.URL.RawPath,
		RawQuery: r.URL.RawQuery, URL: r.URL.String(), Host: r.Host, Proto: r.Proto,
		ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor, ForceQuery: r.URL.ForceQuery,
		Close: r.Close, RemoteAddrSet: r.RemoteAddr != "", ContentLength: r.ContentLength,
		TransferEncoding: r.TransferEncoding, Header: r.Header, Body: string(body),
	}
	b, _ := json.Marshal(e)
	w.Write(b)
})

func decodeEcho(t *testing.T, body string) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("echo body %q: %v", body, err)
	}
	return e
}

func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: example.com\r\n\r\n"
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}

// waitWatching waits until a request on ts has its client-gone watch
// running (armed by Done, started by the sweep), so that a test acts on
// the watched path rather than guessing how long the sweep takes.
func waitWatching(t *testing.T, ts *testServer) {
	t.Helper()
	testkit.Eventually(t, 2*time.Second, "the client-gone watch to start", func() bool {
		ts.h1.mu.Lock()
		defer ts.h1.mu.Unlock()
		for c := range ts.h1.conns {
			if x := c.watched.Load(); x != nil && x.state.Load() == watchRunning {
				return true
			}
		}
		return false
	})
}
