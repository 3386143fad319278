package node_test

import (
	"crypto/tls"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestE2EOnDemandACMECertificate: a licensed domain gets a certificate
// from Pebble on its first TLS handshake, through a follower; an
// unlicensed one fails at once.
func TestE2EOnDemandACMECertificate(t *testing.T) {
	ca := testkit.Pebble(t, testkit.PebbleOptions{AlwaysValid: true})
	c := startE2EClusterWith(t, 2, func(p *proc) []string {
		p.https = testkit.FreeAddr(t)
		return []string{"--https-addr", p.https, "--acme-directory", ca.DirURL, "--acme-ca-root", ca.CAFile, "--acme-email", "ops@example.com"}
	})
	srv := c.servers()
	c.mustCtl("--server", srv, "tenant", "add", "shop.example", "--origin", "http://127.0.0.1:9")
	st := c.waitStatus(2)
	var follower *proc
	for _, m := range st.Members {
		if m.ID != st.Leader {
			follower = c.node(m.ID)
		}
	}
	// The add returned once a majority had it; the follower may apply it
	// a moment later, and until then refuses the name as unlicensed.
	c.waitLocalTenant(follower, "shop.example", "shop.example")
	conn, err := tls.DialWithDialer(&netDialer, "tcp", follower.https, &tls.Config{ServerName: "shop.example", RootCAs: ca.Roots})
	if err != nil {
		t.Fatalf("handshake for a licensed domain through a follower: %v", err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if leaf.VerifyHostname("shop.example") != nil {
		t.Fatalf("certificate does not cover shop.example: %v", leaf.DNSNames)
	}
	var info struct{ Source, Status, Issuer string }
	json.Unmarshal([]byte(c.mustCtl("--server", srv, "cert", "get", "shop.example", "-o", "json")), &info)
	if info.Source != "acme" || info.Status != "active" || !strings.Contains(strings.ToLower(info.Issuer), "pebble") {
		t.Fatalf("cert get: %+v", info)
	}
	// Both nodes serve the same certificate from the replicated store.
	for _, p := range c.nodes {
		conn, err := tls.DialWithDialer(&netDialer, "tcp", p.https, &tls.Config{ServerName: "shop.example", RootCAs: ca.Roots})
		if err != nil {
			t.Fatalf("%s: %v", p.id, err)
		}
		if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(leaf.SerialNumber) != 0 {
			t.Fatalf("%s serves another certificate (serial %v, want %v): issued twice?", p.id, got, leaf.SerialNumber)
		}
		conn.Close()
	}
	start := time.Now()
	if conn, err := tls.DialWithDialer(&netDialer, "tcp", follower.https, &tls.Config{ServerName: "unlicensed.example", RootCAs: ca.Roots}); err == nil {
		conn.Close()
		t.Fatal("handshake for an unlicensed domain succeeded")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("unlicensed handshake took %v", d)
	}
}
