package certs

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// tokenStore is the real KV store with a count of reads of TLS-ALPN-01
// challenge keys: the wait for one (up to challengeWait) is what a stray
// acme-tls/1 hello must never reach.
type tokenStore struct {
	kvStore
	reads atomic.Int64
}

func (s *tokenStore) Get(key string) ([]byte, uint64, bool) {
	if strings.HasSuffix(key, "+token") {
		s.reads.Add(1)
	}
	return s.kvStore.Get(key)
}

// alpnNode is one raftstore node with a Manager whose token reads are
// counted.
func alpnNode(t *testing.T, challenge string) (*cluster, *node, *tokenStore) {
	t.Helper()
	c := newCluster(t, 1)
	s := c.stores[0]
	lic := &licenses{s: s}
	st := &tokenStore{kvStore: kvStore{s}}
	m, err := New(Config{
		Store: st, Licenses: lic, Leadership: s, Challenge: challenge,
		DirectoryURL: "https://127.0.0.1:1/directory", Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, &node{s: s, m: m, lic: lic}, st
}

// serveConfig serves handshakes with cfg on a loopback listener.
func serveConfig(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ErrorLog: discardLog()}
	go func() { _ = srv.Serve(tls.NewListener(l, cfg)) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// alpnHandshake offers only acme-tls/1 for name, as an ACME CA validating
// TLS-ALPN-01 does, and returns the leaf it got and how long it took.
func alpnHandshake(addr, name string) (*tls.ConnectionState, time.Duration, error) {
	start := time.Now()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: name, NextProtos: []string{ALPNProto}, InsecureSkipVerify: true})
	d := time.Since(start)
	if err != nil {
		return nil, d, err
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	return &cs, d, nil
}

// withALPN is m's listener configuration with acme-tls/1 offered whatever
// the challenge, so that the hello reaches GetCertificate itself.
func withALPN(m *Manager) *tls.Config {
	cfg := m.TLSConfig("http/1.1")
	for _, p := range cfg.NextProtos {
		if p == ALPNProto {
			return cfg
		}
	}
	cfg.NextProtos = append(cfg.NextProtos, ALPNProto)
	return cfg
}

// TestACMEALPNHelloFailsFastUnlessTLSALPN01AndLicensed: an acme-tls/1
// hello used to wait up to 2 s for a challenge key for any name, even with
// http-01 configured (issue 14, item 12).
func TestACMEALPNHelloFailsFastUnlessTLSALPN01AndLicensed(t *testing.T) {
	const fast = time.Second // the old path took challengeWait (2 s); only a secondary signal

	t.Run("http-01", func(t *testing.T) {
		c, n, st := alpnNode(t, ChallengeHTTP01)
		c.addTenant(t, "shop.example")
		if p := n.m.TLSConfig("h2", "http/1.1").NextProtos; len(p) != 2 {
			t.Errorf("NextProtos %q: acme-tls/1 offered without tls-alpn-01", p)
		}
		for _, addr := range []string{serveConfig(t, n.m.TLSConfig("http/1.1")), serveConfig(t, withALPN(n.m))} {
			for _, name := range []string{"shop.example", "stranger.example"} {
				cs, d, err := alpnHandshake(addr, name)
				if err == nil {
					t.Fatalf("%s: acme-tls/1 handshake succeeded (ALPN %q)", name, cs.NegotiatedProtocol)
				}
				if d > fast {
					t.Errorf("%s: rejection took %v", name, d)
				}
			}
		}
		if r := st.reads.Load(); r != 0 {
			t.Fatalf("challenge keys read %d times with http-01 configured", r)
		}
	})

	t.Run("tls-alpn-01", func(t *testing.T) {
		c, n, st := alpnNode(t, ChallengeTLSALPN01)
		c.addTenant(t, "shop.example")
		addr := serveConfig(t, n.m.TLSConfig("http/1.1"))
		if _, d, err := alpnHandshake(addr, "stranger.example"); err == nil || d > fast {
			t.Fatalf("unlicensed name: err %v after %v, want a fast failure", err, d)
		}
		if r := st.reads.Load(); r != 0 {
			t.Fatalf("challenge key of an unlicensed name read %d times", r)
		}
		if got := testutil.ToFloat64(n.m.metrics.handshakes.WithLabelValues(resultRejected)); got != 1 {
			t.Fatalf("rejected handshakes = %v, want 1", got)
		}

		// A licensed name still gets its challenge certificate, stored the
		// way an order stores it.
		now := time.Now()
		certPEM, keyPEM := testkit.SelfSignedValid(t, now.Add(-time.Hour), now.Add(time.Hour), "shop.example").PEM()
		if err := st.Put(context.Background(), acmePrefix+"shop.example+token", append(keyPEM, certPEM...), n.s.Term()); err != nil {
			t.Fatal(err)
		}
		cs, _, err := alpnHandshake(addr, "shop.example")
		if err != nil {
			t.Fatalf("licensed name with tls-alpn-01: %v", err)
		}
		want, _ := parseKeyPair(certPEM, keyPEM)
		if cs.NegotiatedProtocol != ALPNProto || !cs.PeerCertificates[0].Equal(want.Leaf) {
			t.Fatalf("ALPN %q, leaf %v: not the stored challenge certificate", cs.NegotiatedProtocol, cs.PeerCertificates[0].DNSNames)
		}
		if got := testutil.ToFloat64(n.m.metrics.handshakes.WithLabelValues(resultChallenge)); got != 1 {
			t.Fatalf("challenge handshakes = %v, want 1", got)
		}
	})
}

// TestCertificateLooksUpWithoutOrdering: the proxy's lookup for resumed
// sessions serves what a handshake would from the store and never starts
// an order, even for a licensed name without a certificate.
func TestCertificateLooksUpWithoutOrdering(t *testing.T) {
	c, n := single(t, Config{Registerer: prometheus.NewRegistry()})
	c.addTenant(t, "shop.example")
	c.addTenant(t, "new.example")
	now := time.Now()
	certPEM, keyPEM := testkit.SelfSignedValid(t, now.Add(-time.Hour), now.Add(24*time.Hour), "shop.example").PEM()
	if _, err := n.m.Import(context.Background(), "shop.example", certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	want, _ := parseKeyPair(certPEM, keyPEM)
	if got := n.m.Certificate("Shop.Example."); got == nil || !got.Leaf.Equal(want.Leaf) {
		t.Fatalf("Certificate(shop.example) = %v", got)
	}
	for _, name := range []string{"new.example", "unknown.example", "", "bad name"} {
		if got := n.m.Certificate(name); got != nil {
			t.Fatalf("Certificate(%q) = %v, want nil", name, got.Leaf.DNSNames)
		}
	}
	if got := testutil.ToFloat64(n.m.metrics.orders.WithLabelValues(orderPlaced)); got != 0 {
		t.Fatalf("orders placed = %v", got)
	}
	if got := n.lic.calls.Load(); got != 0 {
		t.Fatalf("license checked %d times: a lookup must not start the on-demand path", got)
	}
}
