package h1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// outcome is what a client sees of one exchange: the response, and what
// the connection does next.
type outcome struct {
	Err    string
	Status int
	Header http.Header
	Body   string
	Next   string
}

// exchange sends req on a fresh connection, reads the response and then
// probes the connection: closed, or answering another request.
func exchange(t *testing.T, addr, req, method string) outcome {
	t.Helper()
	c := dialRaw(t, addr)
	c.send(req)
	r, err := c.tryRead(method)
	if err != nil {
		return outcome{Err: "no response"}
	}
	o := outcome{Status: r.StatusCode, Header: r.Header, Body: r.body}
	o.Header.Del("Date")
	o.Header.Del("X-Served-By")
	if r.Close {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.br.ReadByte(); err != nil {
			o.Next = "closed"
		} else {
			o.Next = "open after Connection: close"
		}
		return o
	}
	if _, err := io.WriteString(c, get("/next")); err != nil {
		o.Next = "closed"
		return o
	}
	n, err := c.tryRead("GET")
	if err != nil {
		o.Next = "closed"
		return o
	}
	o.Next = fmt.Sprintf("%d %s", n.StatusCode, decodeEcho(t, n.body).Path)
	return o
}

// TestDifferential sends the same bytes to h1 (with its net/http fallback)
// and to a plain net/http server running the same handler: the handler
// must see the same request and the client the same response.
func TestDifferential(t *testing.T) {
	ts := startH1(t, echo)
	std := startStd(t, echo)

	h := "Host: example.com\r\n"
	var many strings.Builder
	for i := range 50 {
		fmt.Fprintf(&many, "X-Header-%d: value %d\r\n", i, i)
	}
	cases := []struct {
		name, req, method string
		h1                bool // served by h1 rather than handed over
	}{
		{"get", "GET / HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"head", "HEAD /h HTTP/1.1\r\n" + h + "\r\n", "HEAD", true},
		{"query", "GET /search?q=go&x=1&x=2 HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"empty query", "GET /p? HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"double question mark", "GET /q??x HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"encoded slash", "GET /a%2Fb HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"bad escape", "GET /%zz HTTP/1.1\r\n" + h + "\r\n", "GET", false},
		{"double slash", "GET //double//slash HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"sub-delims", "GET /a!b*(c)'d HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"path punctuation", "GET /under_score/x-y.z~/p;q=1,2:3@4$&+= HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"utf8 escaped", "GET /caf%C3%A9?q=%20&r=a+b HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"utf8 raw", "GET /caf\xc3\xa9?q=\xc3\xa9 HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"fragment", "GET /a#frag HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"dots", "GET /./a/../b/.. HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"brackets", "GET /a[b]{c}|d^e HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"lower-case names", "GET / HTTP/1.1\r\nhost: example.com\r\nuser-agent: x/1\r\naccept-encoding: gzip\r\nx-custom-thing: 1\r\n\r\n", "GET", true},
		{"odd-case names", "GET / HTTP/1.1\r\nHOST: example.com\r\nCONTENT-TYPE: text/plain\r\nx-Forwarded-FOR: 1.2.3.4\r\nX_Under: y\r\n\r\n", "GET", true},
		{"duplicate names", "GET / HTTP/1.1\r\n" + h + "X-Dup: a\r\nx-dup: b\r\nX-DUP: c\r\nAccept: a\r\nAccept: b\r\n\r\n", "GET", true},
		{"connection close", "GET / HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n", "GET", true},
		{"connection close token", "GET / HTTP/1.1\r\n" + h + "Connection: keep-alive, Close\r\n\r\n", "GET", true},
		{"connection close head", "HEAD / HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n", "HEAD", true},
		{"content-length 0", "GET / HTTP/1.1\r\n" + h + "Content-Length: 0\r\n\r\n", "GET", true},
		{"content-length 0 twice", "GET / HTTP/1.1\r\n" + h + "Content-Length: 0\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"many headers", "GET / HTTP/1.1\r\n" + h + many.String() + "\r\n", "GET", true},
		{"pragma no-cache", "GET / HTTP/1.1\r\n" + h + "Pragma: no-cache\r\n\r\n", "GET", true},
		{"pragma and cache-control", "GET / HTTP/1.1\r\n" + h + "Pragma: no-cache\r\nCache-Control: max-age=5\r\n\r\n", "GET", true},
		{"whitespace", "GET / HTTP/1.1\r\n" + h + "X-A:   spaced\t \r\nX-Empty:\r\nX-Tab:\tv\r\n\r\n", "GET", true},
		{"obs-text value", "GET / HTTP/1.1\r\n" + h + "X-Latin: caf\xe9\r\n\r\n", "GET", true},
		{"cookies", "GET / HTTP/1.1\r\n" + h + "Cookie: a=1; b=2\r\nCookie: c=3\r\n\r\n", "GET", true},
		{"host port", "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "GET", true},
		{"host ipv6", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "GET", true},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", true},
		{"other method", "PURGE /x HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"options", "OPTIONS /x HTTP/1.1\r\n" + h + "\r\n", "GET", true},
		{"options star", "OPTIONS * HTTP/1.1\r\n" + h + "\r\n", "GET", false},
		{"missing host", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", "GET", false},
		{"two hosts", "GET / HTTP/1.1\r\n" + h + h + "\r\n", "GET", false},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "GET", false},
		{"obs-fold", "GET / HTTP/1.1\r\n" + h + "X-A: a\r\n b\r\n\r\n", "GET", false},
		{"space before colon", "GET / HTTP/1.1\r\n" + h + "X-A : b\r\n\r\n", "GET", false},
		{"no colon", "GET / HTTP/1.1\r\n" + h + "X-A\r\n\r\n", "GET", false},
		{"control in value", "GET / HTTP/1.1\r\n" + h + "X-A: a\x01b\r\n\r\n", "GET", false},
		{"control in target", "GET /a\x01b HTTP/1.1\r\n" + h + "\r\n", "GET", false},
		{"double space", "GET  / HTTP/1.1\r\n" + h + "\r\n", "GET", false},
		{"lower-case proto", "GET / http/1.1\r\n" + h + "\r\n", "GET", false},
		{"bad method", "G(T / HTTP/1.1\r\n" + h + "\r\n", "GET", false},
		{"http/1.0", "GET /ten HTTP/1.0\r\n\r\n", "GET", false},
		{"http/1.0 keep-alive", "GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", false},
		{"absolute-form", "GET http://example.com/abs?x=1 HTTP/1.1\r\nHost: other\r\n\r\n", "GET", false},
		{"bare LF", "GET /lf HTTP/1.1\nHost: example.com\n\n", "GET", false},
		{"mixed line ends", "GET /lf HTTP/1.1\r\nHost: example.com\n\r\n", "GET", false},
		{"expect without body", "GET / HTTP/1.1\r\n" + h + "Expect: 100-continue\r\n\r\n", "GET", false},
		{"post with body", "POST /p HTTP/1.1\r\n" + h + "Content-Length: 3\r\n\r\nabc", "GET", false},
		{"chunked body", "POST /p HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "GET", false},
		{"garbage", "this is not http\r\n\r\n", "GET", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := exchange(t, ts.addr, tc.req, tc.method)
			want := exchange(t, std, tc.req, tc.method)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("h1:       %+v\nnet/http: %+v", got, want)
			}
			// Which server answered: h1 itself, or net/http after a handoff.
			c := dialRaw(t, ts.addr)
			c.send(tc.req)
			if r, err := c.tryRead(tc.method); err == nil && r.Header.Get("X-Served-By") != "" {
				if by := r.Header.Get("X-Served-By"); (by == "h1") != tc.h1 {
					t.Errorf("served by %s, want h1=%v", by, tc.h1)
				}
			} else if tc.h1 {
				t.Errorf("not served by the handler (%v)", err)
			}
		})
	}
}

func TestResponseFraming(t *testing.T) {
	big := strings.Repeat("0123456789", 1000) // 10 KB, more than pendingMax
	var writeN atomic.Int64
	var writeErr atomic.Value
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/cl", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		w.Write([]byte("hello"))
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hel"))
		w.Write([]byte("lo"))
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/long", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(big); i += 1000 {
			w.Write([]byte(big[i : i+1000]))
		}
	})
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first"))
		if err := http.NewResponseController(w).Flush(); err != nil {
			panic(err)
		}
		<-release
		w.Write([]byte("second"))
	})
	mux.HandleFunc("/204", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1")
		w.WriteHeader(http.StatusNoContent)
		_, err := w.Write([]byte("x"))
		writeErr.Store(fmt.Sprint(err))
	})
	mux.HandleFunc("/304", func(w http.ResponseWriter, r *http.Request) {
		// As a cache revalidation does: the stored entity's fields.
		w.Header().Set("Content-Length", "100")
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Etag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
	})
	mux.HandleFunc("/fewer", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		w.Write([]byte("hello"))
	})
	mux.HandleFunc("/more", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		n, err := w.Write([]byte("hello world"))
		writeN.Store(int64(n))
		writeErr.Store(fmt.Sprint(err))
	})
	mux.HandleFunc("/hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("X-Final", "yes")
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("/crlf", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Evil"] = []string{"a\r\nSet-Cookie: pwned=1"}
		w.Header()["X-Bad\r\nSet-Cookie"] = []string{"pwned=2"}
		w.Header()["Bad Name"] = []string{"v"}
		w.Write([]byte("safe"))
	})
	mux.HandleFunc("/keepalive", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "keep-alive")
		w.Write([]byte("ka"))
	})
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<!DOCTYPE html><html><body>hi</body></html>"))
	})
	mux.HandleFunc("/", echo)
	ts := startH1(t, mux)

	t.Run("handler Content-Length", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/cl"))
		r := c.read("GET")
		if r.ContentLength != 5 || r.TransferEncoding != nil || r.body != "hello" {
			t.Fatalf("got CL %d TE %v body %q", r.ContentLength, r.TransferEncoding, r.body)
		}
		if r.Header.Get("X-Served-By") != "h1" {
			t.Fatal("not served by h1")
		}
	})
	t.Run("short body gets Content-Length", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/short") + get("/empty"))
		r := c.read("GET")
		if r.ContentLength != 5 || r.TransferEncoding != nil || r.body != "hello" {
			t.Fatalf("got CL %d TE %v body %q", r.ContentLength, r.TransferEncoding, r.body)
		}
		if r = c.read("GET"); r.Header.Get("Content-Length") != "0" || r.body != "" {
			t.Fatalf("empty: CL %q body %q", r.Header.Get("Content-Length"), r.body)
		}
	})
	t.Run("long body is chunked", func(t *testing.T) {
		res, err := ts.client(t).Get(ts.url("/long"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || string(b) != big {
			t.Fatalf("body %d bytes, err %v", len(b), err)
		}
		if !reflect.DeepEqual(res.TransferEncoding, []string{"chunked"}) || res.ContentLength != -1 {
			t.Fatalf("TE %v CL %d", res.TransferEncoding, res.ContentLength)
		}
	})
	t.Run("flush streams before the handler returns", func(t *testing.T) {
		res, err := ts.client(t).Get(ts.url("/flush"))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		first := make([]byte, 5)
		if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != "first" {
			t.Fatalf("first chunk %q, %v", first, err)
		}
		close(release)
		rest, err := io.ReadAll(res.Body)
		if err != nil || string(rest) != "second" {
			t.Fatalf("rest %q, %v", rest, err)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		for _, p := range []string{"/short", "/long", "/cl", "/flush", "/empty"} {
			c.send("HEAD " + p + " HTTP/1.1\r\nHost: x\r\n\r\n")
			r := c.read("HEAD")
			if r.StatusCode != 200 {
				t.Fatalf("HEAD %s: %d", p, r.StatusCode)
			}
			switch p {
			case "/short", "/cl":
				if r.Header.Get("Content-Length") != "5" {
					t.Errorf("HEAD %s: Content-Length %q, want 5", p, r.Header.Get("Content-Length"))
				}
			case "/long", "/flush", "/empty":
				// net/http sends neither a length it does not know nor
				// Transfer-Encoding on a HEAD response.
				if r.Header.Get("Content-Length") != "" || r.TransferEncoding != nil {
					t.Errorf("HEAD %s: Content-Length %q TE %v", p, r.Header.Get("Content-Length"), r.TransferEncoding)
				}
			}
			// The connection must be in step: the next response is whole.
			c.send(get("/cl"))
			if r := c.read("GET"); r.body != "hello" {
				t.Fatalf("GET after HEAD %s: %q", p, r.body)
			}
		}
	})
	t.Run("204 and 304 have no body", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/204") + get("/304") + get("/cl"))
		r := c.read("GET")
		if r.StatusCode != 204 || r.body != "" || r.Header.Get("Content-Length") != "" {
			t.Fatalf("204: %d %q CL %q", r.StatusCode, r.body, r.Header.Get("Content-Length"))
		}
		if got := writeErr.Load(); got != http.ErrBodyNotAllowed.Error() {
			t.Errorf("Write on 204: %v", got)
		}
		r = c.read("GET")
		if r.StatusCode != 304 || r.body != "" {
			t.Fatalf("304: %d %q", r.StatusCode, r.body)
		}
		// As net/http: a 304 carries no Content-Length or Content-Type.
		if r.Header.Get("Content-Length") != "" || r.Header.Get("Content-Type") != "" || r.Header.Get("Etag") != `"v1"` {
			t.Errorf("304 header %v", r.Header)
		}
		if r = c.read("GET"); r.body != "hello" {
			t.Fatalf("after 204/304: %q", r.body)
		}
	})
	t.Run("fewer bytes than Content-Length closes", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/fewer"))
		r, err := c.tryRead("GET")
		if !errors.Is(err, io.ErrUnexpectedEOF) || r.body != "hello" {
			t.Fatalf("got %q, %v; want the 5 bytes and an unexpected EOF", r.body, err)
		}
	})
	t.Run("more bytes than Content-Length", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/more") + get("/cl"))
		if r := c.read("GET"); r.body != "hello" {
			t.Fatalf("body %q", r.body)
		}
		if writeErr.Load() != http.ErrContentLength.Error() {
			t.Errorf("Write error %v, want ErrContentLength", writeErr.Load())
		}
		if n := writeN.Load(); n > 5 {
			t.Errorf("Write reported %d bytes", n)
		}
		if r := c.read("GET"); r.body != "hello" {
			t.Fatalf("next response %q: the excess was sent", r.body)
		}
	})
	t.Run("103 then 200", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/hints"))
		r := c.read("GET")
		if r.StatusCode != 103 || r.Header.Get("Link") == "" {
			t.Fatalf("first %d %v", r.StatusCode, r.Header)
		}
		if r.Header.Get("Content-Length") != "" {
			t.Errorf("103 carries Content-Length: %v", r.Header)
		}
		r = c.read("GET")
		if r.StatusCode != 200 || r.body != "ok" || r.Header.Get("X-Final") != "yes" || r.Header.Get("Link") == "" {
			t.Fatalf("final %d %q %v", r.StatusCode, r.body, r.Header)
		}
		// The client side of net/http sees the hint too.
		res, err := ts.client(t).Get(ts.url("/hints"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("client: %d %q", res.StatusCode, b)
		}
	})
	t.Run("CR LF in header cannot split", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/crlf") + get("/cl"))
		r := c.read("GET")
		if r.Header.Get("Set-Cookie") != "" || len(r.Cookies()) != 0 {
			t.Fatalf("response split: %v", r.Header)
		}
		if v := r.Header.Get("X-Evil"); !strings.Contains(v, "pwned=1") || strings.ContainsAny(v, "\r\n") {
			t.Fatalf("X-Evil %q", v)
		}
		if r.body != "safe" {
			t.Fatalf("body %q", r.body)
		}
		if r = c.read("GET"); r.body != "hello" {
			t.Fatalf("next %q", r.body)
		}
	})
	t.Run("Date", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/cl"))
		r := c.read("GET")
		d, err := http.ParseTime(r.Header.Get("Date"))
		if err != nil || time.Since(d).Abs() > 2*time.Second {
			t.Fatalf("Date %q: %v", r.Header.Get("Date"), err)
		}
	})
	t.Run("closing response says close", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("GET /keepalive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		// http.ReadResponse drops the field: read the raw lines.
		var conn []string
		for {
			line, err := c.br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
			if k, v, _ := strings.Cut(strings.TrimSpace(line), ":"); strings.EqualFold(k, "Connection") {
				conn = append(conn, strings.TrimSpace(v))
			}
		}
		if !reflect.DeepEqual(conn, []string{"close"}) {
			t.Fatalf("Connection fields %q", conn)
		}
		if body, err := io.ReadAll(io.LimitReader(c.br, 2)); string(body) != "ka" {
			t.Fatalf("body %q, %v", body, err)
		}
		c.expectClosed(2 * time.Second)
	})
	t.Run("Content-Type sniffed as net/http does", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/sniff"))
		if r := c.read("GET"); r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("Content-Type %q", r.Header.Get("Content-Type"))
		}
	})
}

func TestKeepAlive(t *testing.T) {
	ts := startH1(t, echo)
	t.Run("many requests on one connection", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		for i := range 200 {
			p := "/r" + strconv.Itoa(i)
			c.send(get(p))
			r := c.read("GET")
			if e := decodeEcho(t, r.body); e.Path != p || r.Header.Get("X-Served-By") != "h1" {
				t.Fatalf("request %d: %s by %s", i, e.Path, r.Header.Get("X-Served-By"))
			}
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/1") + "HEAD /2 HTTP/1.1\r\nHost: x\r\n\r\n" + get("/3"))
		for i, m := range []string{"GET", "HEAD", "GET"} {
			r := c.read(m)
			if m == "HEAD" {
				if r.body != "" || r.StatusCode != 200 {
					t.Fatalf("HEAD: %d %q", r.StatusCode, r.body)
				}
				continue
			}
			if e := decodeEcho(t, r.body); e.Path != "/"+strconv.Itoa(i+1) {
				t.Fatalf("response %d is for %s", i+1, e.Path)
			}
		}
	})
	t.Run("pipelined ending in close", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/1") + "GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + get("/3"))
		c.read("GET")
		if r := c.read("GET"); !r.Close || decodeEcho(t, r.body).Path != "/2" {
			t.Fatalf("second: close %v %q", r.Close, r.body)
		}
		c.expectClosed(2 * time.Second)
	})
	t.Run("request split across writes", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		req := get("/split")
		for i := range req {
			c.send(req[i : i+1])
			if i%8 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		if e := decodeEcho(t, c.read("GET").body); e.Path != "/split" {
			t.Fatalf("got %s", e.Path)
		}
	})
}

func TestHandoff(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no upgrade", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw.Reader)
		conn.Close()
	})
	mux.HandleFunc("/", echo)
	ts := startH1(t, mux)

	readEcho := func(t *testing.T, c *rawConn, wantBy string) echoed {
		t.Helper()
		r := c.read("GET")
		if r.StatusCode != 200 || r.Header.Get("X-Served-By") != wantBy {
			t.Fatalf("%d by %q (want %s): %q", r.StatusCode, r.Header.Get("X-Served-By"), wantBy, r.body)
		}
		return decodeEcho(t, r.body)
	}

	t.Run("POST with body", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
		if e := readEcho(t, c, "std"); e.Body != "hello" || e.Method != "POST" {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("chunked body", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
		if e := readEcho(t, c, "std"); e.Body != "abcde" {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("net/http client POST", func(t *testing.T) {
		res, err := ts.client(t).Post(ts.url("/p"), "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if e := decodeEcho(t, string(b)); e.Body != "payload" {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("Expect 100-continue", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
		if r := c.read("GET"); r.StatusCode != 100 {
			t.Fatalf("got %d, want 100 Continue", r.StatusCode)
		}
		c.send("body")
		if e := readEcho(t, c, "std"); e.Body != "body" {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("Upgrade", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		if r := c.read("GET"); r.StatusCode != 101 {
			t.Fatalf("got %d", r.StatusCode)
		}
		for _, m := range []string{"ping\n", "pong\n"} {
			c.send(m)
			if got, err := c.br.ReadString('\n'); err != nil || got != m {
				t.Fatalf("echo %q: %q %v", m, got, err)
			}
		}
	})
	t.Run("HTTP/1.0", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("GET /ten HTTP/1.0\r\n\r\n")
		if e := readEcho(t, c, "std"); e.Proto != "HTTP/1.0" {
			t.Fatalf("%+v", e)
		}
		c.expectClosed(2 * time.Second)
	})
	t.Run("absolute-form", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("GET http://example.com/abs?x=1 HTTP/1.1\r\nHost: other\r\n\r\n")
		if e := readEcho(t, c, "std"); e.Host != "example.com" || e.Path != "/abs" || e.RawQuery != "x=1" {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("missing Host", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("GET / HTTP/1.1\r\n\r\n")
		if r := c.read("GET"); r.StatusCode != 400 {
			t.Fatalf("got %d", r.StatusCode)
		}
	})
	t.Run("header block over the read buffer", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 12<<10) + "\r\n\r\n")
		if e := readEcho(t, c, "std"); len(e.Header.Get("X-Big")) != 12<<10 {
			t.Fatalf("X-Big has %d bytes", len(e.Header.Get("X-Big")))
		}
	})
	t.Run("header block over MaxHeaderBytes", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("GET /big HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 80<<10) + "\r\n\r\n")
		if r := c.read("GET"); r.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("got %d", r.StatusCode)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("\x16\x03\x01\x00\xa5 not http at all\r\n\r\n")
		if r := c.read("GET"); r.StatusCode != 400 {
			t.Fatalf("got %d", r.StatusCode)
		}
	})
	t.Run("bare LF is not left waiting", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		start := time.Now()
		c.send("GET /lf HTTP/1.1\nHost: x\n\n")
		c.SetReadDeadline(time.Now().Add(time.Second)) // ReadHeaderTimeout is 2s
		if e := readEcho(t, c, "std"); e.Path != "/lf" {
			t.Fatalf("%+v", e)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("took %v", d)
		}
	})
	t.Run("mid keep-alive", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		for i := range 3 {
			c.send(get("/fast" + strconv.Itoa(i)))
			readEcho(t, c, "h1")
		}
		c.send("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
		if e := readEcho(t, c, "std"); e.Body != "hi" {
			t.Fatalf("%+v", e)
		}
		// The connection stays with net/http.
		c.send(get("/after"))
		if e := readEcho(t, c, "std"); e.Path != "/after" {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("pipelined into a handoff", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/a") + "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" + get("/c"))
		readEcho(t, c, "h1")
		if e := readEcho(t, c, "std"); e.Path != "/b" || e.Body != "hi" {
			t.Fatalf("%+v", e)
		}
		if e := readEcho(t, c, "std"); e.Path != "/c" {
			t.Fatalf("%+v", e)
		}
	})

	if ts.handedOver.Load() == 0 || ts.notHandedOver.Load() != 0 {
		t.Errorf("fallback saw %d handed-over and %d other connections", ts.handedOver.Load(), ts.notHandedOver.Load())
	}
	if n := ts.h1NewHandedOver.Load(); n != 0 {
		t.Errorf("h1 reported %d handed-over connections as new", n)
	}
}

// TestMaxHeaderBytesBelowBuffer: with MaxHeaderBytes under the read
// buffer, a larger header block goes to net/http even when it arrives in
// one read, so net/http's limit applies.
func TestMaxHeaderBytesBelowBuffer(t *testing.T) {
	ts := startH1(t, echo, func(s *Server, std *http.Server) {
		s.MaxHeaderBytes = 1 << 10
		std.MaxHeaderBytes = 1 << 10
	})
	c := dialRaw(t, ts.addr)
	c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 2000) + "\r\n\r\n")
	if r := c.read("GET"); r.StatusCode != 200 || r.Header.Get("X-Served-By") != "std" {
		t.Fatalf("2000-byte header: %d by %s", r.StatusCode, r.Header.Get("X-Served-By"))
	}
	c = dialRaw(t, ts.addr)
	c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 7000) + "\r\n\r\n")
	if r := c.read("GET"); r.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("7000-byte header: %d by %s", r.StatusCode, r.Header.Get("X-Served-By"))
	}
	c = dialRaw(t, ts.addr)
	c.send(get("/small"))
	if r := c.read("GET"); r.Header.Get("X-Served-By") != "h1" {
		t.Fatalf("small request by %s", r.Header.Get("X-Served-By"))
	}
}

// TestConnState: proxy.Server counts connections with one ConnState hook
// on both servers; the count must go back to zero.
func TestConnState(t *testing.T) {
	ts := startH1(t, echo)
	for _, req := range []string{
		get("/h1"),
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
		get("/h1") + "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\n\r\n",
	} {
		c := dialRaw(t, ts.addr)
		c.send(req)
		c.read("GET")
		c.Close()
	}
	testkit.Eventually(t, 3*time.Second, "connection count back to 0", func() bool { return ts.open.Load() == 0 })
}

func TestClientGone(t *testing.T) {
	type result struct {
		err, cause error
	}
	started := make(chan string, 4)
	results := make(chan result, 4)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	mux := http.NewServeMux()
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		started <- r.URL.Path
		select {
		case <-ctx.Done():
			results <- result{ctx.Err(), context.Cause(ctx)}
		case <-stop:
		case <-time.After(5 * time.Second):
			results <- result{}
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		started <- r.URL.Path
		select {
		case <-ctx.Done():
			results <- result{ctx.Err(), context.Cause(ctx)}
		case <-time.After(150 * time.Millisecond):
			results <- result{}
		}
		w.Write([]byte("slow"))
	})
	mux.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("fast"))
	})
	ts := startH1(t, mux, func(s *Server, _ *http.Server) {
		s.ReadHeaderTimeout = 200 * time.Millisecond
		s.IdleTimeout = 300 * time.Millisecond
	})

	expectGone := func(t *testing.T, closedAt time.Time) {
		t.Helper()
		select {
		case res := <-results:
			if !errors.Is(res.err, context.Canceled) || !errors.Is(res.cause, ErrClientGone) {
				t.Fatalf("context ended with %v, cause %v", res.err, res.cause)
			}
			if d := time.Since(closedAt); d > time.Second {
				t.Fatalf("noticed after %v", d)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("context not cancelled after the client left")
		}
	}

	t.Run("cancelled with ErrClientGone", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/wait"))
		<-started
		waitWatching(t, ts)
		c.Close()
		expectGone(t, time.Now())
	})
	t.Run("client leaves at once", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/wait"))
		<-started
		c.Close()
		expectGone(t, time.Now())
	})
	t.Run("pipelined request during a watched handler", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/slow"))
		<-started
		waitWatching(t, ts)
		c.send(get("/fast"))
		if r := c.read("GET"); r.body != "slow" {
			t.Fatalf("first %q", r.body)
		}
		if res := <-results; res.err != nil {
			t.Fatalf("slow handler's context ended: %v (%v)", res.err, res.cause)
		}
		if r := c.read("GET"); r.body != "fast" {
			t.Fatalf("second %q", r.body)
		}
		c.send(get("/fast"))
		if r := c.read("GET"); r.body != "fast" {
			t.Fatalf("third %q", r.body)
		}
	})
	t.Run("handoff after a watched request", func(t *testing.T) {
		// The watch takes the first byte of the next request, which must
		// reach net/http with the rest.
		c := dialRaw(t, ts.addr)
		c.send(get("/slow"))
		<-started
		waitWatching(t, ts)
		c.send("POST /fast HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
		if r := c.read("GET"); r.body != "slow" {
			t.Fatalf("first %q", r.body)
		}
		<-results
		if r := c.read("GET"); r.body != "fast" || r.Header.Get("X-Served-By") != "std" {
			t.Fatalf("second %q by %s", r.body, r.Header.Get("X-Served-By"))
		}
	})
	t.Run("pipelined in one write", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/slow") + get("/fast"))
		<-started
		if r := c.read("GET"); r.body != "slow" {
			t.Fatalf("first %q", r.body)
		}
		if res := <-results; res.err != nil {
			t.Fatalf("slow handler's context ended: %v (%v)", res.err, res.cause)
		}
		if r := c.read("GET"); r.body != "fast" {
			t.Fatalf("second %q", r.body)
		}
	})
	t.Run("watched after a watched request", func(t *testing.T) {
		// The second request is already buffered when the first one's
		// watch is stopped; its own watch must still see the client go.
		c := dialRaw(t, ts.addr)
		c.send(get("/slow") + get("/wait"))
		<-started
		<-results
		<-started
		waitWatching(t, ts)
		c.Close()
		expectGone(t, time.Now())
	})
	t.Run("handler outlasting ReadHeaderTimeout", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("GET /wait HTTP/1.1\r\n")
		time.Sleep(20 * time.Millisecond)
		c.send("Host: x\r\n\r\n")
		<-started
		time.Sleep(400 * time.Millisecond) // past ReadHeaderTimeout and IdleTimeout
		c.Close()
		expectGone(t, time.Now())
	})
	t.Run("connection works after a watched request", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/slow"))
		<-started
		if r := c.read("GET"); r.body != "slow" {
			t.Fatalf("first %q", r.body)
		}
		<-results
		for range 3 {
			c.send(get("/fast"))
			if r := c.read("GET"); r.body != "fast" {
				t.Fatalf("next %q", r.body)
			}
		}
	})
}

func TestTimeouts(t *testing.T) {
	ts := startH1(t, echo, func(s *Server, _ *http.Server) {
		s.ReadHeaderTimeout = 300 * time.Millisecond
		s.IdleTimeout = 300 * time.Millisecond
	})
	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, ts.addr)
		c.send(get("/"))
		c.read("GET")
		start := time.Now()
		c.expectClosed(1300 * time.Millisecond)
		if d := time.Since(start); d < 200*time.Millisecond {
			t.Fatalf("closed after %v, before IdleTimeout", d)
		}
	})
	t.Run("busy connection outlives IdleTimeout", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, ts.addr)
		start := time.Now()
		for time.Since(start) < time.Second {
			c.send(get("/"))
			if _, err := c.tryRead("GET"); err != nil {
				t.Fatalf("closed after %v of requests every 50ms: %v", time.Since(start), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("silent new connection", func(t *testing.T) {
		// As net/http: ReadHeaderTimeout, not IdleTimeout.
		t.Parallel()
		ts := startH1(t, echo, func(s *Server, _ *http.Server) {
			s.ReadHeaderTimeout = 300 * time.Millisecond
			s.IdleTimeout = time.Minute
		})
		c := dialRaw(t, ts.addr)
		c.expectClosed(1300 * time.Millisecond)
	})
	t.Run("slowloris", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, ts.addr)
		req := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("s", 100)
		start := time.Now()
		closed := false
		for i := 0; i < len(req) && time.Since(start) < 2*time.Second; i++ {
			if _, err := io.WriteString(c, req[i:i+1]); err != nil {
				closed = true
				break
			}
			time.Sleep(50 * time.Millisecond)
			if i > 2 {
				c.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := c.br.ReadByte(); err != nil {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						closed = true
						break
					}
				} else {
					t.Fatal("server answered a partial request")
				}
			}
		}
		if !closed {
			t.Fatalf("connection still open after %v", time.Since(start))
		}
		if d := time.Since(start); d < 250*time.Millisecond || d > 1300*time.Millisecond {
			t.Fatalf("closed after %v, want about 300ms", d)
		}
	})
}

func TestShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.Write([]byte("finished"))
	})
	mux.HandleFunc("/", echo)
	ts := startH1(t, mux)

	idle := dialRaw(t, ts.addr)
	idle.send(get("/"))
	idle.read("GET")
	busy := dialRaw(t, ts.addr)
	busy.send(get("/block"))
	<-entered

	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- ts.h1.Shutdown(context.Background()) }()

	idle.expectClosed(time.Second)
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("idle connection closed after %v", d)
	}
	select {
	case err := <-ts.serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(time.Second):
		t.Error("Serve did not return")
	}
	if c, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, rerr := c.Read(make([]byte, 1))
		c.Close()
		if rerr == nil {
			t.Error("new connection accepted during shutdown")
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}

	close(release)
	r := busy.read("GET")
	if r.body != "finished" || !r.Close {
		t.Fatalf("in-flight response %q, Connection: close %v", r.body, r.Close)
	}
	busy.expectClosed(time.Second)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if err := ts.h1.Serve(dummyListener{}); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

// TestShutdownNewConnection: a client that connected just before Shutdown
// has its first request answered (with Connection: close), as net/http
// does, rather than the connection closed under it.
func TestShutdownNewConnection(t *testing.T) {
	ts := startH1(t, echo)
	c := dialRaw(t, ts.addr)
	testkit.Eventually(t, time.Second, "connection accepted", func() bool {
		ts.h1.mu.Lock()
		defer ts.h1.mu.Unlock()
		return len(ts.h1.conns) == 1
	})
	done := make(chan error, 1)
	go func() { done <- ts.h1.Shutdown(context.Background()) }()
	testkit.Eventually(t, time.Second, "shutdown to begin", ts.h1.inShutdown.Load)
	c.send(get("/late"))
	r := c.read("GET")
	if e := decodeEcho(t, r.body); e.Path != "/late" || !r.Close {
		t.Fatalf("%+v, Connection: close %v", e, r.Close)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

func TestShutdownContext(t *testing.T) {
	release := make(chan struct{})
	ts := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer close(release)
	c := dialRaw(t, ts.addr)
	c.send(get("/"))
	testkit.Eventually(t, time.Second, "request in flight", func() bool {
		ts.h1.mu.Lock()
		defer ts.h1.mu.Unlock()
		return len(ts.h1.conns) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts.h1.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
}

type dummyListener struct{ net.Listener }

func TestPanic(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/", echo)
	ts := startH1(t, mux)

	c := dialRaw(t, ts.addr)
	c.send(get("/panic"))
	c.expectClosed(2 * time.Second)
	testkit.Eventually(t, time.Second, "panic logged", func() bool { return strings.Contains(ts.logs.String(), "boom") })
	logs := ts.logs.String()
	mustContain(t, logs, "panic serving request")
	mustContain(t, logs, "path=/panic")
	mustContain(t, logs, "server_test.go") // the stack

	c = dialRaw(t, ts.addr)
	c.send(get("/abort"))
	r, err := c.tryRead("GET")
	if err == nil {
		t.Fatalf("aborted response read as complete: %q", r.body)
	}
	c.expectClosed(2 * time.Second)

	// The server goes on serving.
	c = dialRaw(t, ts.addr)
	c.send(get("/ok"))
	if e := decodeEcho(t, c.read("GET").body); e.Path != "/ok" {
		t.Fatalf("%+v", e)
	}
	if n := strings.Count(ts.logs.String(), "panic serving request"); n != 1 {
		t.Fatalf("%d panics logged, want 1 (ErrAbortHandler is silent):\n%s", n, ts.logs.String())
	}
}

// TestFallbackNil: without a fallback, a connection h1 does not serve is
// closed.
func TestFallbackNil(t *testing.T) {
	ts := startH1(t, echo, func(s *Server, _ *http.Server) { s.Fallback = nil })
	c := dialRaw(t, ts.addr)
	c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
	c.expectClosed(2 * time.Second)
	testkit.Eventually(t, 2*time.Second, "connection count back to 0", func() bool { return ts.open.Load() == 0 })
}

func TestHandoffClosed(t *testing.T) {
	h := NewHandoff(&net.TCPAddr{})
	h.Close()
	a, b := net.Pipe()
	defer b.Close()
	h.Offer(a)
	if _, err := a.Write([]byte("x")); err == nil {
		t.Fatal("offered connection not closed")
	}
	if _, err := h.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept: %v", err)
	}
}

// TestReplay: the fallback reads the bytes h1 had already read, then the
// connection.
func TestReplay(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	rc := &replayConn{Conn: a, buf: []byte("abc")}
	go b.Write([]byte("def"))
	got := make([]byte, 6)
	if _, err := io.ReadFull(rc, got); err != nil || !bytes.Equal(got, []byte("abcdef")) {
		t.Fatalf("%q %v", got, err)
	}
}
