package upstream

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// evil is what a hostile origin sends on a connection outside any
// exchange: a complete, cacheable response. Read by the next exchange on
// that connection, it would be served (and cached) as that request's
// answer, whichever tenant sent it.
const evil = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nCache-Control: max-age=600\r\n\r\nEVIL"

// strayOrigin answers on raw TCP: /bad/late with a response and, 50 ms
// later, a second unsolicited one; HEAD /bad/head with a head announcing
// len(evil) bytes, then those bytes in a second write; anything else
// with "page <path>". Each stray write is reported on the returned
// channel once it has been written (on loopback: in the proxy's socket).
func strayOrigin(t *testing.T) (addr string, stray <-chan string) {
	t.Helper()
	ch := make(chan string, 8)
	addr, _ = rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			switch {
			case req.URL.Path == "/bad/late":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nCache-Control: max-age=600\r\n\r\nA page")
				time.Sleep(50 * time.Millisecond) // the origin's behaviour, not a wait for state
				io.WriteString(c, evil)
				ch <- req.URL.Path
			case req.URL.Path == "/bad/head" && req.Method == http.MethodHead:
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(evil))+"\r\n\r\n")
				time.Sleep(10 * time.Millisecond)
				io.WriteString(c, evil) // the HEAD "body", in its own write
				ch <- req.URL.Path
			default:
				body := "page " + req.URL.Path
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\nCache-Control: max-age=600\r\n\r\n"+body)
			}
		}
	})
	return addr, ch
}

// TestStrayOriginBytesNotDelivered: tenant A's request draws bytes from
// the origin that belong to no exchange (a late second response, a HEAD
// answered with a body); tenant B, another tenant of the same origin and
// so of the same pool, asks next and must get its own response, on the
// lean client, the direct path and http.Transport alike.
func TestStrayOriginBytesNotDelivered(t *testing.T) {
	for _, mode := range []string{"lean", "direct", "transport"} {
		for _, bad := range []struct{ method, path string }{{"GET", "/bad/late"}, {"HEAD", "/bad/head"}} {
			t.Run(mode+" "+bad.method, func(t *testing.T) {
				addr, stray := strayOrigin(t)
				p := newPools(t, func(c *Config) { c.DisableLeanHTTP1 = mode == "transport" })
				tg := Target{URL: mustURL(t, "http://"+addr)}
				rtA, err := p.Get("a.example", tg)
				if err != nil {
					t.Fatal(err)
				}
				rtB, err := p.Get("b.example", tg)
				if err != nil {
					t.Fatal(err)
				}
				if rtA != rtB {
					t.Fatal("tenants of one origin do not share a pool")
				}
				req, _ := http.NewRequest(bad.method, "http://"+addr+bad.path, nil)
				resp, err := rtA.RoundTrip(req)
				if err != nil {
					t.Fatalf("tenant A: %v", err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				select {
				case <-stray:
				case <-time.After(5 * time.Second):
					t.Fatal("origin never sent its stray bytes")
				}

				for i := range 2 { // the second on a connection that stayed in step
					req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/b", nil)
					var body []byte
					if mode == "direct" {
						d, resp, ok, err := rtB.(DirectTripper).RoundTripDirect(req, nil)
						if !ok || err != nil {
							t.Fatalf("tenant B direct: ok=%v err=%v", ok, err)
						}
						if d != nil {
							body, _ = io.ReadAll(d.Body)
							d.Body.Close()
						} else {
							body, _ = io.ReadAll(resp.Body)
							resp.Body.Close()
						}
					} else {
						resp, err := rtB.RoundTrip(req)
						if err != nil {
							t.Fatalf("tenant B: %v", err)
						}
						body, _ = io.ReadAll(resp.Body)
						resp.Body.Close()
					}
					if string(body) != "page /b" {
						t.Fatalf("tenant B request %d got %q, want its own \"page /b\"", i+1, body)
					}
				}
			})
		}
	}
}
