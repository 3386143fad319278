package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// lateOrigin is an origin on raw TCP that answers /bad/late with a
// response and, 50 ms later, a second, unsolicited and cacheable one
// ("EVIL"), reported on the returned channel once written. Other paths
// get "page <path>", no-store for /nostore and cacheable otherwise.
func lateOrigin(t *testing.T) (addr string, late <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/bad/late" {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nCache-Control: max-age=600\r\n\r\nA page")
						time.Sleep(50 * time.Millisecond) // the origin's behaviour, not a wait for state
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nCache-Control: max-age=600\r\n\r\nEVIL")
						ch <- struct{}{}
						continue
					}
					cc := "max-age=600"
					if req.URL.Path == "/nostore" {
						cc = "no-store"
					}
					body := "page " + req.URL.Path
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nCache-Control: "+cc+
						"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
				}
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// TestLateOriginBytesNotServedToOtherTenant: tenant A's origin sends a
// second response after the first; tenant B, another domain on the same
// origin address (so the same pool), must get its own responses, on the
// direct path and on the cache's miss path, and the cache must not hold
// A's late bytes.
func TestLateOriginBytesNotServedToOtherTenant(t *testing.T) {
	addr, late := lateOrigin(t)
	c, comp := newCacheCompressor(t, cache.Config{MaxBytes: 64 << 20})
	cfg := Config{
		Upstreams: newPools(t, upstream.Config{}), Cache: c,
		WrapWriter: CompressWriter(comp), DecodeOrigin: CompressDecoder(comp),
		IsTimeout: upstream.IsTimeout, ErrorReason: upstream.Reason,
		Direct: &DirectConfig{Untransformed: func(*tenantcfg.Tenant) bool { return true }, Compressor: comp},
	}
	p := startProxy(t, routesOf(tenant("a.example", "http://"+addr), tenant("b.example", "http://"+addr)), proxyOpts{cfg: cfg})
	get := func(host, path, want string) {
		t.Helper()
		if body := readAll(t, p.do(t, "GET", host, path, "", nil)); body != want {
			t.Fatalf("%s%s: got %q, want %q", host, path, body, want)
		}
	}
	waitLate := func() {
		t.Helper()
		select {
		case <-late:
		case <-time.After(5 * time.Second):
			t.Fatal("origin never sent its late response")
		}
	}

	get("b.example", "/nostore", "page /nostore") // marks it: the next goes the direct path
	get("a.example", "/bad/late", "A page")
	waitLate()
	get("b.example", "/nostore", "page /nostore") // direct path
	get("a.example", "/bad/late?again", "A page") // a miss: late bytes again
	waitLate()
	for range 2 { // a miss, then a hit of what the miss stored
		get("b.example", "/page", "page /page")
	}
}
