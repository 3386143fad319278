package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// headWriter is what a proxy relaying an origin's header lines finds on
// the ResponseWriter.
type headWriter interface {
	WriteHead(code int, fields []byte, contentLength int64, hasDate bool) bool
}

// afterFuncer is the context method the upstream client looks for.
type afterFuncer interface {
	AfterFunc(f func()) (stop func() bool)
}

const originDate = "Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n"

// relayHandler answers /relay/<code>/<length>[/dated] with WriteHead and
// a body of length bytes; WriteHead's result goes in the header map, which
// WriteHead does not send (so X-Write-Head shows only when it declined).
func relayHandler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/relay/"), "/")
		code, _ := strconv.Atoi(parts[0])
		n, _ := strconv.Atoi(parts[1])
		dated := len(parts) > 2 && parts[2] == "dated"
		fields := "Content-Type: text/plain\r\nx-lower:  v \r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
		if dated {
			fields += originDate
		}
		hw, ok := w.(headWriter)
		if !ok {
			t.Errorf("%T has no WriteHead", w)
			return
		}
		if !hw.WriteHead(code, []byte(fields), int64(n), dated) {
			w.Header().Set("X-Write-Head", "false")
			w.WriteHeader(code)
		}
		if _, err := w.Write([]byte(strings.Repeat("x", n))); err != nil && n > 0 {
			t.Errorf("Write: %v", err)
		}
	}
}

// rawHead reads a response head off c as bytes: the status line and the
// field lines.
func (c *rawConn) rawHead() (status string, lines []string) {
	c.t.Helper()
	for {
		ln, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read head: %v (after %q %q)", err, status, lines)
		}
		if !strings.HasSuffix(ln, "\r\n") {
			c.t.Fatalf("line %q does not end in CRLF", ln)
		}
		ln = strings.TrimSuffix(ln, "\r\n")
		switch {
		case status == "":
			status = ln
		case ln == "":
			return status, lines
		default:
			lines = append(lines, ln)
		}
	}
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, ln := range lines {
		if strings.HasPrefix(strings.ToLower(ln), strings.ToLower(prefix)) {
			n++
		}
	}
	return n
}

// TestWriteHeadWire checks the bytes WriteHead sends: the status line, the
// fields as given and in order, Content-Length, one Date, and no field of
// the header map; the connection stays open for the next request.
func TestWriteHeadWire(t *testing.T) {
	ts := startH1(t, relayHandler(t))
	c := dialRaw(t, ts.addr)
	for _, tc := range []struct {
		path, status string
		n            int
		dated        bool
	}{
		{"/relay/200/5", "HTTP/1.1 200 OK", 5, false},
		{"/relay/201/0/dated", "HTTP/1.1 201 Created", 0, true},
		{"/relay/404/9", "HTTP/1.1 404 Not Found", 9, false},
		{"/relay/599/2", "HTTP/1.1 599 status code 599", 2, false},
		{"/relay/200/20000", "HTTP/1.1 200 OK", 20000, false}, // more than the write buffer
	} {
		c.send(get(tc.path))
		status, lines := c.rawHead()
		if status != tc.status {
			t.Fatalf("%s: status line %q, want %q", tc.path, status, tc.status)
		}
		want := []string{"Content-Type: text/plain", "x-lower:  v ", "Set-Cookie: a=1", "Set-Cookie: b=2"}
		if tc.dated {
			want = append(want, strings.TrimSuffix(originDate, "\r\n"))
		}
		want = append(want, "Content-Length: "+strconv.Itoa(tc.n))
		if len(lines) < len(want) || strings.Join(lines[:len(want)], "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: fields %q, want %q first", tc.path, lines, want)
		}
		if n := countPrefix(lines, "Date:"); n != 1 {
			t.Fatalf("%s: %d Date fields in %q", tc.path, n, lines)
		}
		if tc.dated && countPrefix(lines, originDate[:len(originDate)-2]) != 1 {
			t.Fatalf("%s: the handler's Date was replaced: %q", tc.path, lines)
		}
		for _, name := range []string{"Connection:", "X-Served-By:", "X-Write-Head:", "Transfer-Encoding:"} {
			if countPrefix(lines, name) != 0 {
				t.Fatalf("%s: %s sent: %q", tc.path, name, lines)
			}
		}
		extra := 1 // the server's Date
		if tc.dated {
			extra = 0
		}
		if len(lines) != len(want)+extra {
			t.Fatalf("%s: unexpected fields in %q", tc.path, lines)
		}
		body := make([]byte, tc.n)
		if _, err := io.ReadFull(c.br, body); err != nil || string(body) != strings.Repeat("x", tc.n) {
			t.Fatalf("%s: body %d bytes: %v", tc.path, len(body), err)
		}
	}
	// Nothing beyond the bodies; the connection is still open.
	c.send(get("/relay/200/1"))
	if r := c.read("GET"); r.body != "x" || r.Close {
		t.Fatalf("next response: %q, close %v", r.body, r.Close)
	}
}

// TestWriteHeadNetHTTPClient: net/http reads a WriteHead response like any
// other, and reuses the connection.
func TestWriteHeadNetHTTPClient(t *testing.T) {
	ts := startH1(t, relayHandler(t))
	client := ts.client(t)
	var reused []bool
	for i := range 3 {
		var gotReused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) { gotReused = ci.Reused },
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.url("/relay/200/5"), nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "xxxxx" {
			t.Fatalf("request %d: body %q, %v", i, body, err)
		}
		h := resp.Header
		if resp.StatusCode != 200 || resp.ContentLength != 5 || h.Get("Content-Type") != "text/plain" ||
			h.Get("X-Lower") != "v" || len(h["Set-Cookie"]) != 2 || len(h["Date"]) != 1 || h.Get("X-Served-By") != "" {
			t.Fatalf("request %d: %d, length %d, header %v", i, resp.StatusCode, resp.ContentLength, h)
		}
		reused = append(reused, gotReused)
	}
	if fmt.Sprint(reused) != "[false true true]" {
		t.Fatalf("connection reused %v, want [false true true]", reused)
	}
}

// TestWriteHeadConnectionClose: Connection: close is sent, and the
// connection closed, when the request asked for it or the server is
// shutting down.
func TestWriteHeadConnectionClose(t *testing.T) {
	t.Run("request asked", func(t *testing.T) {
		ts := startH1(t, relayHandler(t))
		c := dialRaw(t, ts.addr)
		c.send("GET /relay/200/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		_, lines := c.rawHead()
		if n := countPrefix(lines, "Connection: close"); n != 1 || countPrefix(lines, "Connection:") != 1 {
			t.Fatalf("fields %q, want one Connection: close", lines)
		}
		if b, err := io.ReadAll(c.br); err != nil || string(b) != "xx" {
			t.Fatalf("body %q, %v; want xx and the connection closed", b, err)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		relay := relayHandler(t)
		ts := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			relay(w, r)
		}))
		c := dialRaw(t, ts.addr)
		c.send(get("/relay/200/2"))
		<-entered
		done := make(chan error, 1)
		go func() { done <- ts.h1.Shutdown(context.Background()) }()
		testkit.Eventually(t, 2*time.Second, "Shutdown to begin", ts.h1.inShutdown.Load)
		close(release)
		_, lines := c.rawHead()
		if n := countPrefix(lines, "Connection: close"); n != 1 {
			t.Fatalf("fields %q, want Connection: close", lines)
		}
		if b, err := io.ReadAll(c.br); err != nil || string(b) != "xx" {
			t.Fatalf("body %q, %v; want xx and the connection closed", b, err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Shutdown did not return")
		}
	})
}

// TestWriteHeadBodyLength: a handler that writes fewer bytes than it
// declared has the connection closed under the client (which sees the
// body cut short, not a hang); one that writes more gets
// http.ErrContentLength and the client the declared bytes.
func TestWriteHeadBodyLength(t *testing.T) {
	type writeResult struct {
		n   int
		err error
	}
	results := make(chan writeResult, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/fewer", func(w http.ResponseWriter, r *http.Request) {
		w.(headWriter).WriteHead(200, []byte("X-A: 1\r\n"), 10, false)
		w.Write([]byte("abc"))
	})
	mux.HandleFunc("/more", func(w http.ResponseWriter, r *http.Request) {
		w.(headWriter).WriteHead(200, nil, 5, false)
		n, err := w.Write([]byte("hello world"))
		results <- writeResult{n, err}
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	ts := startH1(t, mux)

	c := dialRaw(t, ts.addr)
	c.send(get("/fewer"))
	start := time.Now()
	r, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r.Body)
	var ne net.Error
	if string(b) != "abc" || !errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("short body %q, %v; want abc and unexpected EOF", b, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the client waited %v for the rest", d)
	}
	c.expectClosed(time.Second)

	resp, err := ts.client(t).Get(ts.url("/fewer"))
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("net/http read a short body without an error")
	}

	c = dialRaw(t, ts.addr)
	c.send(get("/more"))
	if r := c.read("GET"); r.body != "hello" || r.ContentLength != 5 {
		t.Fatalf("body %q, length %d", r.body, r.ContentLength)
	}
	if res := <-results; res.n != 5 || !errors.Is(res.err, http.ErrContentLength) {
		t.Fatalf("Write past the length: %d, %v; want 5, ErrContentLength", res.n, res.err)
	}
	c.send(get("/ok"))
	if r := c.read("GET"); r.body != "ok" {
		t.Fatalf("next response %q", r.body)
	}
}

// TestWriteHeadDeclines: WriteHead does nothing and reports false when
// the header is already written, for HEAD, and for statuses without a
// body; the handler then answers through the header map.
func TestWriteHeadDeclines(t *testing.T) {
	mux := http.NewServeMux()
	report := func(w http.ResponseWriter, ok bool) { w.Header().Set("X-Write-Head", strconv.FormatBool(ok)) }
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		ok := w.(headWriter).WriteHead(200, []byte("X-Relayed: 1\r\n"), 0, false)
		if !ok {
			report(w, ok)
		}
	})
	mux.HandleFunc("/code/", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/code/"))
		report(w, w.(headWriter).WriteHead(code, []byte("X-Relayed: 1\r\n"), 0, false))
		w.WriteHeader(code)
	})
	mux.HandleFunc("/negative", func(w http.ResponseWriter, r *http.Request) {
		report(w, w.(headWriter).WriteHead(200, []byte("X-Relayed: 1\r\n"), -1, false))
	})
	mux.HandleFunc("/after-writeheader", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		ok := w.(headWriter).WriteHead(200, []byte("X-Relayed: 1\r\n"), 5, false)
		fmt.Fprint(w, ok)
	})
	mux.HandleFunc("/after-write", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "body ")
		ok := w.(headWriter).WriteHead(200, []byte("X-Relayed: 1\r\n"), 5, false)
		fmt.Fprint(w, ok)
	})
	mux.HandleFunc("/twice", func(w http.ResponseWriter, r *http.Request) {
		w.(headWriter).WriteHead(200, []byte("X-Relayed: 1\r\n"), 5, false)
		ok := w.(headWriter).WriteHead(201, []byte("X-Second: 1\r\n"), 5, false)
		fmt.Fprint(w, ok) // "false": the 5 bytes declared
	})
	ts := startH1(t, mux)
	c := dialRaw(t, ts.addr)
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
		relayed      bool
	}{
		{"HEAD", "/plain", 200, "", false},
		{"GET", "/plain", 200, "", true}, // the same handler, for comparison
		{"GET", "/code/204", 204, "", false},
		{"GET", "/code/304", 304, "", false},
		{"GET", "/negative", 200, "", false},
		{"GET", "/after-writeheader", 202, "false", false},
		{"GET", "/after-write", 200, "body false", false},
		{"GET", "/twice", 200, "false", true},
	} {
		c.send(tc.method + " " + tc.path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		r := c.read(tc.method)
		if r.StatusCode != tc.code || r.body != tc.body {
			t.Fatalf("%s %s: %d %q, want %d %q", tc.method, tc.path, r.StatusCode, r.body, tc.code, tc.body)
		}
		relayed := r.Header.Get("X-Relayed") == "1"
		if relayed != tc.relayed || r.Header.Get("X-Second") != "" {
			t.Fatalf("%s %s: header %v, relayed fields sent %v, want %v", tc.method, tc.path, r.Header, relayed, tc.relayed)
		}
		if tc.body == "" && !relayed && r.Header.Get("X-Write-Head") != "false" {
			t.Fatalf("%s %s: WriteHead did not report false: %v", tc.method, tc.path, r.Header)
		}
	}
}

// TestAfterFunc checks the request context's AfterFunc, which the
// upstream client registers on every origin exchange.
func TestAfterFunc(t *testing.T) {
	type event struct {
		name     string
		returned bool  // the handler had returned when f ran
		cause    error // the context's cause when f ran
	}
	events := make(chan event, 16)
	stops := make(chan func() bool, 4)
	started := make(chan struct{}, 4)
	mux := http.NewServeMux()
	register := func(r *http.Request, name string, returned *atomic.Bool) func() bool {
		ctx := r.Context()
		return ctx.(afterFuncer).AfterFunc(func() {
			events <- event{name, returned.Load(), context.Cause(ctx)}
		})
	}
	mux.HandleFunc("/once", func(w http.ResponseWriter, r *http.Request) {
		var returned atomic.Bool
		defer returned.Store(true)
		stops <- register(r, "once", &returned)
	})
	mux.HandleFunc("/stopped", func(w http.ResponseWriter, r *http.Request) {
		var returned atomic.Bool
		defer returned.Store(true)
		stop := register(r, "stopped", &returned)
		first, second := stop(), stop()
		fmt.Fprint(w, first, second)
		register(r, "after-stop", &returned) // takes the slot stop freed
	})
	mux.HandleFunc("/stale-stop", func(w http.ResponseWriter, r *http.Request) {
		var returned atomic.Bool
		defer returned.Store(true)
		stop := register(r, "stopped", &returned)
		stop()
		register(r, "later", &returned) // takes the slot stop freed
		fmt.Fprint(w, stop())           // must not touch the later one
	})
	mux.HandleFunc("/two", func(w http.ResponseWriter, r *http.Request) {
		var returned atomic.Bool
		defer returned.Store(true)
		register(r, "first", &returned)
		register(r, "second", &returned) // context.AfterFunc
		stop := register(r, "third", &returned)
		fmt.Fprint(w, stop())
	})
	// What the upstream client uses: a number instead of a stop closure.
	mux.HandleFunc("/registry", func(w http.ResponseWriter, r *http.Request) {
		var returned atomic.Bool
		defer returned.Store(true)
		ctx := r.Context()
		reg := ctx.(interface {
			RegisterAfter(f func()) (uint64, bool)
			StopAfter(n uint64) bool
		})
		record := func(name string) func() {
			return func() { events <- event{name, returned.Load(), context.Cause(ctx)} }
		}
		n, ok := reg.RegisterAfter(record("dropped"))
		_, full := reg.RegisterAfter(record("refused")) // the slot is taken
		stopped, again := reg.StopAfter(n), reg.StopAfter(n)
		m, _ := reg.RegisterAfter(record("kept"))
		fmt.Fprint(w, ok, full, stopped, again, reg.StopAfter(n), m != n)
	})
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		var returned atomic.Bool
		defer returned.Store(true)
		gone := make(chan struct{})
		ctx := r.Context()
		ctx.(afterFuncer).AfterFunc(func() {
			events <- event{"gone", returned.Load(), context.Cause(ctx)}
			close(gone)
		})
		started <- struct{}{}
		select {
		case <-gone:
			register(r, "late", &returned) // the context is done: runs at once
		case <-time.After(5 * time.Second):
		}
	})
	ts := startH1(t, mux)

	next := func(t *testing.T, want string) event {
		t.Helper()
		select {
		case e := <-events:
			if e.name != want {
				t.Fatalf("%s ran, want %s", e.name, want)
			}
			return e
		case <-time.After(3 * time.Second):
			t.Fatalf("%s did not run", want)
		}
		panic("unreachable")
	}
	noMore := func(t *testing.T) {
		t.Helper()
		// A function that should not run would have been started with
		// the one that did; give it a moment to show up.
		select {
		case e := <-events:
			t.Fatalf("%s ran", e.name)
		case <-time.After(100 * time.Millisecond):
		}
	}

	t.Run("runs once when the handler returns", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/once"))
		c.read("GET")
		e := next(t, "once")
		if !e.returned || !errors.Is(e.cause, errHandlerDone) {
			t.Fatalf("ran with returned=%v cause=%v", e.returned, e.cause)
		}
		if stop := <-stops; stop() {
			t.Fatal("stop after the function ran reported true")
		}
		c.send(get("/once")) // the next request has its own
		c.read("GET")
		next(t, "once")
		<-stops
		noMore(t)
	})
	t.Run("stop keeps it from running", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/stopped"))
		if r := c.read("GET"); r.body != "true false" {
			t.Fatalf("stop, stop = %s; want true false", r.body)
		}
		next(t, "after-stop")
		noMore(t)
	})
	t.Run("stop again after a new registration", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/stale-stop"))
		if r := c.read("GET"); r.body != "false" {
			t.Errorf("the first stop, called again after a new registration, = %s; want false", r.body)
		}
		next(t, "later")
		noMore(t)
	})
	t.Run("registered by number", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/registry"))
		// registered, refused while held, stopped once, the stale
		// number touches nothing, a new registration has its own.
		if r := c.read("GET"); r.body != "true false true false false true" {
			t.Fatalf("registry results = %s", r.body)
		}
		e := next(t, "kept")
		if !e.returned || !errors.Is(e.cause, errHandlerDone) {
			t.Fatalf("ran with returned=%v cause=%v", e.returned, e.cause)
		}
		noMore(t)
	})
	t.Run("second registration", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/two"))
		if r := c.read("GET"); r.body != "true" {
			t.Fatalf("stop of the third = %s", r.body)
		}
		ran := map[string]bool{}
		for range 2 {
			e := <-events
			if !e.returned {
				t.Fatalf("%s ran before the handler returned", e.name)
			}
			ran[e.name] = true
		}
		if !ran["first"] || !ran["second"] {
			t.Fatalf("ran %v, want first and second", ran)
		}
		noMore(t)
	})
	t.Run("client gone", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/wait"))
		<-started
		waitWatching(t, ts) // AfterFunc arms the watch as Done does
		c.Close()
		e := next(t, "gone")
		if e.returned || !errors.Is(e.cause, ErrClientGone) {
			t.Fatalf("ran with returned=%v cause=%v; want while waiting, ErrClientGone", e.returned, e.cause)
		}
		if e := next(t, "late"); !errors.Is(e.cause, ErrClientGone) {
			t.Fatalf("late registration ran with cause %v", e.cause)
		}
		noMore(t)
	})
}
