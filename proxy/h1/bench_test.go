package h1

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
)

// BenchmarkServeKeepAlive: one client connection sending a browser GET
// and reading a small fixed response, over and over; h1 against the
// net/http server it replaces. Allocations are the server's: the client
// reuses its buffers.
func BenchmarkServeKeepAlive(b *testing.B) {
	body := []byte("hello, world\n")
	ctype := []string{"text/plain; charset=utf-8"}
	clen := []string{strconv.Itoa(len(body))}
	handlers := map[string]http.HandlerFunc{
		"sets-length": func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Content-Type"] = ctype
			h["Content-Length"] = clen
			w.Write(body)
		},
		"no-length": func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = ctype
			w.Write(body)
		},
	}
	for _, hn := range []string{"sets-length", "no-length"} {
		h := handlers[hn]
		b.Run(hn+"/h1", func(b *testing.B) {
			ln := listen(b)
			s := &Server{Handler: h}
			go s.Serve(ln)
			defer s.Close()
			benchKeepAlive(b, ln.Addr().String())
		})
		b.Run(hn+"/net-http", func(b *testing.B) {
			ln := listen(b)
			s := &http.Server{Handler: h, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
			go s.Serve(ln)
			defer s.Close()
			benchKeepAlive(b, ln.Addr().String())
		})
	}
}

func listen(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	return ln
}

func benchKeepAlive(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte(browserGET)
	// Every response has the same length (Date is fixed width): learn it
	// once, then read exactly that much per request.
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	n := responseLen(b, c)
	buf := make([]byte, n)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// responseLen reads one response byte by byte (so nothing is left
// buffered) and returns its length.
func responseLen(b *testing.B, c net.Conn) int {
	var hdr []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(hdr, crlf2) {
		if _, err := c.Read(one); err != nil {
			b.Fatal(err)
		}
		hdr = append(hdr, one[0])
	}
	r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(hdr)), nil)
	if err != nil {
		b.Fatal(err)
	}
	cl, err := strconv.Atoi(r.Header.Get("Content-Length"))
	if err != nil {
		b.Fatalf("response without Content-Length: %v", r.Header)
	}
	if _, err := io.ReadFull(c, make([]byte, cl)); err != nil {
		b.Fatal(err)
	}
	return len(hdr) + cl
}
