package testkit

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
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
	certPEM, keyPEM := SelfSigned(t, "localhost", "127.0.0.1").PEM()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, certFile, certPEM)
	writeFile(t, keyFile, keyPEM)
	if o.HTTPPort == 0 {
		o.HTTPPort = FreePort(t)
	}
	if o.TLSPort == 0 {
		o.TLSPort = FreePort(t)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	mgmt := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
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
		t.Fatalf("testkit: start pebble: %v", err)
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
			t.Fatalf("testkit: pebble did not answer: %v\n%s", err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err := hc.Get("https://" + mgmt + "/roots/0")
	if err != nil {
		t.Fatalf("testkit: pebble roots: %v", err)
	}
	rootPEM, _ := io.ReadAll(res.Body)
	res.Body.Close()
	ca.Roots = x509.NewCertPool()
	if !ca.Roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("testkit: pebble roots: no PEM")
	}
	return ca
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
