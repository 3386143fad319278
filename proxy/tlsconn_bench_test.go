package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// BenchmarkServerTLSRoundTrip is one keep-alive HTTP/1.1 request over TLS
// through Server and Handler to a raw origin: the request path the 421
// check sits on (run it before and after a change to that check).
func BenchmarkServerTLSRoundTrip(b *testing.B) {
	origin := rawOrigin(b, "no-store")
	reg := prometheus.NewRegistry()
	pools, err := upstream.New(upstream.Config{Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pools.Close)
	h, err := New(Config{Routes: routesOf(tenant("bench.example", "http://"+origin)), Upstreams: NewPoolUpstreams(pools),
		IsTimeout: upstream.IsTimeout, DisableAccessLog: true, Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	cert := &testkit.SelfSigned(b, "bench.example", "www.bench.example").TLS
	srv, err := NewServer(ServerConfig{HTTPSAddr: "127.0.0.1:0", Handler: h,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }})
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve()
	b.Cleanup(func() { srv.Shutdown(b.Context()) })

	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	conn, err := tls.Dial("tcp", srv.HTTPSAddr().String(), &tls.Config{ServerName: "bench.example", RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	req := []byte("GET /nostore HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
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
	do()
	b.ReportAllocs()
	for b.Loop() {
		do()
	}
}
