package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/proxy/upstream"
)

// TestMalformedClientBodyIs400: a request body whose chunked framing is
// broken fails while it streams to the origin. That is the client's
// error: 400, the connection closed, an Info line "client request body
// failed", and no WARN about the origin (before: 502 "origin
// unreachable" and a warning naming the origin).
func TestMalformedClientBodyIs400(t *testing.T) {
	up := origin(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	p := startProxy(t, routesOf(tenant("shop.example", up.URL)), proxyOpts{tls: true, cfg: Config{
		Upstreams: newPools(t, upstream.Config{}), IsTimeout: upstream.IsTimeout, ErrorReason: upstream.Reason,
	}})
	for _, listener := range []string{"plain", "tls"} {
		for _, tc := range []struct{ name, chunks string }{
			{"chunk size g", "3\r\nabc\r\ng\r\nxyz\r\n0\r\n\r\n"},
			{"chunk size overflow", "3\r\nabc\r\nfffffffffffffffffff\r\nxyz\r\n0\r\n\r\n"},
			{"bare LF in chunk extension", "3\r\nabc\r\n3;ext=1\nxyz\r\n0\r\n\r\n"},
		} {
			t.Run(listener+" "+tc.name, func(t *testing.T) {
				var c net.Conn
				var err error
				if listener == "tls" {
					c, err = tls.Dial("tcp", p.srv.HTTPSAddr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
				} else {
					c, err = net.Dial("tcp", p.srv.HTTPAddr().String())
				}
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n"+tc.chunks)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 400 || !resp.Close {
					t.Fatalf("status %d close=%v body %q, want 400 and close", resp.StatusCode, resp.Close, body)
				}
			})
		}
	}
	logs := p.logs.String()
	if strings.Contains(logs, "origin fetch failed") || strings.Contains(logs, `"level":"WARN"`) {
		t.Errorf("a client's malformed body logged as an origin failure:\n%s", logs)
	}
	if n := strings.Count(logs, `"msg":"client request body failed"`); n != 6 {
		t.Errorf("%d client body lines, want 6:\n%s", n, logs)
	}
}
