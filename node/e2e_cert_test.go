package node_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string, serial *big.Int) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial = big.NewInt(time.Now().UnixNano())
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(20 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile, serial
}

// TestE2EImportedCertificateServedOverHTTPS: a customer certificate
// imported with edgectl is served by every node's TLS listener.
func TestE2EImportedCertificateServedOverHTTPS(t *testing.T) {
	c := startE2EClusterWith(t, 2, func(p *proc) []string { p.https = testkit.FreeAddr(t); return []string{"--https-addr", p.https} })
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure hello") }))
	defer origin.Close()
	var otherHits atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { otherHits.Add(1) }))
	defer other.Close()
	srv := c.servers()
	c.mustCtl("--server", srv, "tenant", "add", "shop.example", "--origin", origin.URL)
	c.mustCtl("--server", srv, "tenant", "add", "other.example", "--origin", other.URL)
	dir := t.TempDir()
	certFile, keyFile, serial := writeCert(t, dir, "shop.example")
	otherCert, otherKey, _ := writeCert(t, dir, "other.example")

	if _, errs, code := c.ctl("--server", srv, "cert", "import", "shop.example", "--cert", otherCert, "--key", otherKey); code != 1 || errs == "" {
		t.Fatalf("importing a certificate for another name: exit %d %q", code, errs)
	}
	c.mustCtl("--server", srv, "cert", "import", "shop.example", "--cert", certFile, "--key", keyFile)
	var info struct {
		Domain, Source, Status string
		Sans                   []string
	}
	if err := json.Unmarshal([]byte(c.mustCtl("--server", srv, "cert", "get", "shop.example", "-o", "json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Source != "imported" || info.Status != "active" || len(info.Sans) != 1 {
		t.Fatalf("cert get: %+v", info)
	}
	if out := c.mustCtl("--server", srv, "cert", "list", "--expiring", "30d"); !strings.Contains(out, "shop.example") {
		t.Fatalf("a 20-day certificate is missing from --expiring 30d:\n%s", out)
	}
	if out := c.mustCtl("--server", srv, "cert", "list", "--expiring", "7d"); strings.Contains(out, "shop.example") {
		t.Fatalf("a 20-day certificate is listed by --expiring 7d:\n%s", out)
	}

	for _, p := range c.nodes {
		var got *x509.Certificate
		testkit.Eventually(t, 5*time.Second, p.id+" serving the imported certificate", func() bool {
			conn, err := tls.Dial("tcp", p.https, &tls.Config{ServerName: "shop.example", InsecureSkipVerify: true})
			if err != nil {
				return false
			}
			defer conn.Close()
			got = conn.ConnectionState().PeerCertificates[0]
			return got.SerialNumber.Cmp(serial) == 0
		})
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "shop.example", InsecureSkipVerify: true}}}
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s/", p.https), nil)
		req.Host = "shop.example"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "secure hello" {
			t.Fatalf("%s over HTTPS: %q", p.id, b)
		}
		// Domain fronting: shop.example's connection asking for another
		// tenant gets 421 and that tenant's origin never sees it.
		req.Host = "other.example"
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest || otherHits.Load() != 0 {
			t.Fatalf("%s: SNI shop.example, Host other.example: %d, other origin hit %d times", p.id, resp.StatusCode, otherHits.Load())
		}
		// An unknown SNI name fails the handshake at once.
		start := time.Now()
		if conn, err := tls.Dial("tcp", p.https, &tls.Config{ServerName: "unknown.example", InsecureSkipVerify: true}); err == nil {
			conn.Close()
			t.Fatalf("%s: handshake for an unknown name succeeded", p.id)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("%s: unknown-name handshake took %v", p.id, d)
		}
	}
	c.mustCtl("--server", srv, "cert", "remove", "shop.example")
	if _, _, code := c.ctl("--server", srv, "cert", "get", "shop.example"); code != 1 {
		t.Fatalf("cert get after remove: exit %d", code)
	}
}

var netDialer = net.Dialer{Timeout: 30 * time.Second}
