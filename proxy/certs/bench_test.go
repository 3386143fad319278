package certs

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// benchManager is a leader with one imported certificate, as a node that
// already holds its certificates serves them.
func benchManager(b *testing.B) (*Manager, []byte) {
	b.Helper()
	c := newCluster(b, 1)
	s := c.stores[0]
	c.addTenant(b, "shop.example")
	m, err := New(Config{Store: kvStore{s}, Licenses: &licenses{s: s}, Leadership: s, DirectoryURL: "https://127.0.0.1:1/dir"})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	certPEM, keyPEM := testkit.SelfSignedValid(b, now.Add(-time.Hour), now.Add(24*time.Hour), "shop.example").PEM()
	if _, err := m.Import(context.Background(), "shop.example", certPEM, keyPEM); err != nil {
		b.Fatal(err)
	}
	return m, certPEM
}

func benchHandshakes(b *testing.B, resume bool) {
	m, certPEM := benchManager(b)
	srvCfg := m.TLSConfig("http/1.1")
	cliCfg := &tls.Config{ServerName: "shop.example", RootCAs: poolOf(b, certPEM), NextProtos: []string{"http/1.1"}}
	if resume {
		cliCfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				s := tls.Server(c, srvCfg)
				// TLS 1.3 sends the session ticket after the handshake;
				// one byte of data makes the client read it.
				if s.Handshake() == nil {
					_, _ = s.Write([]byte{1})
				}
				s.Close()
			}()
		}
	}()
	one := func() bool {
		c, err := tls.Dial("tcp", l.Addr().String(), cliCfg)
		if err != nil {
			b.Fatal(err)
		}
		var buf [1]byte
		_, _ = c.Read(buf[:])
		did := c.ConnectionState().DidResume
		c.Close()
		return did
	}
	if resume {
		one() // prime the session cache
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if did := one(); did != resume {
			b.Fatalf("DidResume = %v, want %v", did, resume)
		}
	}
}

func BenchmarkHandshakeFull(b *testing.B)    { benchHandshakes(b, false) }
func BenchmarkHandshakeResumed(b *testing.B) { benchHandshakes(b, true) }

// BenchmarkGetCertificate is the certificate choice alone: a stored,
// parsed certificate looked up by SNI.
func BenchmarkGetCertificate(b *testing.B) {
	m, _ := benchManager(b)
	hello := &tls.ClientHelloInfo{ServerName: "shop.example"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.GetCertificate(hello); err != nil {
			b.Fatal(err)
		}
	}
}
