package testsvc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// PebbleOptions configure a Pebble test CA.
type PebbleOptions struct {
	// HTTPPort and TLSPort are where Pebble sends HTTP-01 and TLS-ALPN-01
	// validation requests; 0 picks unused ports.
	HTTPPort, TLSPort int
	// DNSAddr is Pebble's -dnsserver (host:port); empty uses the system's.
	DNSAddr string
	// AlwaysValid skips validation (PEBBLE_VA_ALWAYS_VALID=1).
	AlwaysValid bool
}

// PebbleCA is a running Pebble, the ACME CA's own test server.
type PebbleCA struct {
	// DirURL is the ACME directory URL.
	DirURL string
	// CAPEM is Pebble's own TLS certificate (trust it for the ACME API,
	// e.g. edged --acme-ca-root).
	CAPEM []byte
	// CAFile is CAPEM written to a file.
	CAFile string
	// Roots are the roots of the certificates Pebble issues.
	Roots *x509.CertPool
	// Output returns what Pebble printed so far.
	Output func() string
}

// Pebble starts Pebble (installed by scripts/install-test-deps.sh) on free
// loopback ports with a TLS certificate made for the test, and stops it in
// t.Cleanup.
func Pebble(t testing.TB, o PebbleOptions) *PebbleCA {
	t.Helper()
	home, _ := os.UserHomeDir()
	bin, ok := lookPath("pebble", filepath.Join(os.Getenv("GOPATH"), "bin"), filepath.Join(home, "go", "bin"))
	if !ok {
		missing(t, "pebble", "go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1")
	}
	dir := t.TempDir()
	certPEM, keyPEM := selfSignedPEM(t, "localhost", "127.0.0.1")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, certPEM)
	writeFile(t, keyFile, keyPEM)
	if o.HTTPPort == 0 {
		o.HTTPPort = freePort(t)
	}
	if o.TLSPort == 0 {
		o.TLSPort = freePort(t)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	mgmt := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": certFile, "privateKey": keyFile,
		"httpPort": o.HTTPPort, "tlsPort": o.TLSPort,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"keyAlgorithm": "ecdsa",
		"profiles":     map[string]any{"default": map[string]any{"description": "test", "validityPeriod": 7776000}},
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	writeFile(t, cfgFile, b)
	args := []string{"-config", cfgFile}
	if o.DNSAddr != "" {
		args = append(args, "-dnsserver", o.DNSAddr)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	if o.AlwaysValid {
		cmd.Env = append(cmd.Env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	p, err := startProc(cmd)
	if err != nil {
		t.Fatalf("testsvc: start pebble: %v", err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("pebble output:\n%s", p.out.String())
		}
	})
	ca := &PebbleCA{DirURL: "https://" + listen + "/dir", CAPEM: certPEM, CAFile: certFile, Output: p.out.String}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(startTimeout)
	for {
		res, err := hc.Get(ca.DirURL)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("testsvc: pebble did not answer: %v\n%s", err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err := hc.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("testsvc: pebble roots: %v", err)
	}
	rootPEM, _ := io.ReadAll(res.Body)
	res.Body.Close()
	ca.Roots = x509.NewCertPool()
	if !ca.Roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("testsvc: pebble roots: no PEM")
	}
	return ca
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// selfSignedPEM makes a one-day certificate for names (DNS names or IPs).
func selfSignedPEM(t testing.TB, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
