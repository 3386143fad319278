package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeproxy/edge/proxy/accesslog"
	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// rawOrigin answers every request on a keep-alive connection with the
// same 1 KB no-store response, parsing as little as it can, so that a
// benchmark's profile is the proxy's.
func rawOrigin(b *testing.B, cacheControl string) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	body := strings.Repeat("x", 1024)
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: " + cacheControl +
		"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
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
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkServerRoundTrip runs the whole node data path in one process:
// a keep-alive client, proxy.Server (h1) with the Handler wired as node
// wires it (cache, compression, lean upstream pools, metrics, access log
// to io.Discard), and a raw origin. Each op is one request and response.
// Compare edged's own share with -cpuprofile; the client and the origin
// are in the numbers too.
func BenchmarkServerRoundTrip(b *testing.B) {
	for _, tc := range []struct {
		name, path, cc string
		direct         bool
	}{
		{"pass-through", "/nostore", "no-store", true},
		{"pass-through-full-path", "/nostore", "no-store", false},
		{"hit-1KB", "/small", "public, max-age=3600", true},
		{"hit-1KB-no-direct", "/small", "public, max-age=3600", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			origin := rawOrigin(b, tc.cc)
			reg := prometheus.NewRegistry()
			pools, err := upstream.New(upstream.Config{Registerer: reg})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(pools.Close)
			c, comp := newCacheCompressor(b, cache.Config{Registerer: reg})
			al, err := accesslog.New(accesslog.Config{Out: io.Discard})
			if err != nil {
				b.Fatal(err)
			}
			cfg := Config{
				Routes: routesOf(tenant("bench.example", "http://"+origin)), Upstreams: NewPoolUpstreams(pools),
				Cache: c, WrapWriter: CompressWriter(comp), DecodeOrigin: CompressDecoder(comp),
				IsTimeout: upstream.IsTimeout, ErrorReason: upstream.Reason, AccessLog: al, Registerer: reg,
			}
			if tc.direct {
				cfg.Direct = &DirectConfig{
					Untransformed: func(*tenantcfg.Tenant) bool { return true },
					Compressor:    comp,
				}
			}
			h, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			srv, err := NewServer(ServerConfig{HTTPAddr: "127.0.0.1:0", Handler: h})
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve()
			b.Cleanup(func() { srv.Shutdown(b.Context()) })

			conn, err := net.Dial("tcp", srv.HTTPAddr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			req := []byte("GET " + tc.path + " HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			do := func() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				if n, _ := io.Copy(io.Discard, resp.Body); resp.StatusCode != 200 || n != 1024 {
					b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
				}
			}
			do() // the first request marks no-store or fills the cache
			do()
			b.ReportAllocs()
			for b.Loop() {
				do()
			}
		})
	}
}
