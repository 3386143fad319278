package node_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a certificate for name signed by ca and its key; it returns
// the two files.
func (ca *testCA) issue(t *testing.T, dir, name string, usage ...x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestE2EClientCertificateReplacesTheToken runs an edged whose admin API
// has mutual TLS and no token at all: edgectl with --tls-cert/--tls-key
// (or their EDGECTL_* variables) is served, without a certificate or with
// one from another CA it is refused with the failure exit code, and a
// certificate without its key is a usage error.
func TestE2EClientCertificateReplacesTheToken(t *testing.T) {
	edged, edgectl := binaries(t)
	dir := t.TempDir()
	ca := newTestCA(t, dir, "admin")
	serverCert, serverKey := ca.issue(t, dir, "edged", x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	clientCert, clientKey := ca.issue(t, dir, "operator", x509.ExtKeyUsageClientAuth)
	rogue := newTestCA(t, dir, "rogue")
	rogueCert, rogueKey := rogue.issue(t, dir, "intruder", x509.ExtKeyUsageClientAuth)
	keyFile := filepath.Join(dir, "cluster-key")
	if err := os.WriteFile(keyFile, []byte("e2e-cluster-key-0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	admin := freePort(t)
	var log bytes.Buffer
	cmd := exec.Command(edged, edgedArgs("--id", "mtls-0", "--data-dir", t.TempDir(), "--raft-addr", freePort(t),
		"--admin-addr", admin, "--http-addr", freePort(t), "--metrics-addr", freePort(t),
		"--cluster-key-file", keyFile, "--bootstrap-expect", "1", "--raft-log-level", "error",
		"--admin-tls-cert", serverCert, "--admin-tls-key", serverKey, "--admin-client-ca", ca.file)...)
	cmd.Stdout = &lockedWriter{w: &log, mu: new(sync.Mutex)}
	cmd.Stderr = cmd.Stdout
	// No EDGE_ADMIN_TOKEN from the environment: this node has mTLS only.
	cmd.Env = withoutEnv(os.Environ(), "EDGE_ADMIN_TOKEN")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("--- edged log ---\n%s", tail(log.String(), 4000))
		}
	})

	run := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		c := exec.Command(edgectl, append([]string{"--server", admin, "--timeout", "5s"}, args...)...)
		c.Env = append(withoutEnv(os.Environ(), "EDGECTL_TOKEN", "EDGECTL_TOKEN_FILE", "EDGECTL_TLS_CA", "EDGECTL_TLS_CERT", "EDGECTL_TLS_KEY"), env...)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return out.String(), errb.String(), ee.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
		return out.String(), errb.String(), 0
	}
	withCert := []string{"--tls-ca", ca.file, "--tls-cert", clientCert, "--tls-key", clientKey}

	// The client certificate alone: a leader, once the node has elected itself.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, errs, code := run(nil, append(withCert, "cluster", "status", "-o", "json")...)
		var st statusJSON
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.Leader != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edgectl with a client certificate: exit %d, %s %s", code, out, errs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, errs, code := run(nil, append(withCert, "tenant", "add", "mtls.example", "--origin", "http://127.0.0.1:1")...); code != 0 {
		t.Fatalf("tenant add with a client certificate: exit %d: %s", code, errs)
	}
	// The same through the environment.
	env := []string{"EDGECTL_TLS_CA=" + ca.file, "EDGECTL_TLS_CERT=" + clientCert, "EDGECTL_TLS_KEY=" + clientKey}
	if out, errs, code := run(env, "tenant", "list"); code != 0 || !strings.Contains(out, "mtls.example") {
		t.Fatalf("tenant list with EDGECTL_TLS_*: exit %d: %s %s", code, out, errs)
	}

	// Without a client certificate (TLS to the right server, no token):
	// refused as an authentication failure, exit 1, saying what to set.
	_, errs, code := run(nil, "--tls-ca", ca.file, "tenant", "list")
	if code != 1 || !strings.Contains(errs, "unauthenticated") || !strings.Contains(errs, "--tls-cert") {
		t.Errorf("without a client certificate: exit %d, stderr %q; want 1 and unauthenticated", code, errs)
	}
	// A certificate the node's --admin-client-ca did not sign: the TLS
	// handshake fails, exit 1.
	if _, errs, code := run(nil, "--tls-ca", ca.file, "--tls-cert", rogueCert, "--tls-key", rogueKey, "tenant", "list"); code != 1 {
		t.Errorf("with a certificate from another CA: exit %d, stderr %q; want 1", code, errs)
	}
	// Plaintext to a TLS listener is refused too.
	if _, errs, code := run(nil, "tenant", "list"); code != 1 {
		t.Errorf("plaintext: exit %d, stderr %q; want 1", code, errs)
	}
	// Half a key pair is a usage error.
	if _, errs, code := run(nil, "--tls-cert", clientCert, "tenant", "list"); code != 2 || !strings.Contains(errs, "--tls-key") {
		t.Errorf("--tls-cert without --tls-key: exit %d, stderr %q; want 2", code, errs)
	}
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
