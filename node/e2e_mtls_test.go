package node_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestE2EClientCertificateReplacesTheToken runs an edged whose admin API
// has mutual TLS and no token at all: edgectl with --tls-cert/--tls-key
// (or their EDGECTL_* variables) is served, without a certificate or with
// one from another CA it is refused with the failure exit code, and a
// certificate without its key is a usage error.
func TestE2EClientCertificateReplacesTheToken(t *testing.T) {
	edged, edgectl := binaries(t)
	dir := t.TempDir()
	ca := testkit.NewCA(t, "admin")
	caFile := ca.WriteFile(t, dir, "admin")
	serverCert, serverKey := ca.Issue(t, []string{"edged", "127.0.0.1", "localhost"}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth).WriteFiles(t, dir, "edged")
	clientCert, clientKey := ca.Issue(t, []string{"operator", "127.0.0.1", "localhost"}, x509.ExtKeyUsageClientAuth).WriteFiles(t, dir, "operator")
	rogue := testkit.NewCA(t, "rogue")
	rogueCert, rogueKey := rogue.Issue(t, []string{"intruder", "127.0.0.1", "localhost"}, x509.ExtKeyUsageClientAuth).WriteFiles(t, dir, "intruder")
	keyFile := filepath.Join(dir, "cluster-key")
	if err := os.WriteFile(keyFile, []byte("e2e-cluster-key-0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	admin := testkit.FreeAddr(t)
	var log bytes.Buffer
	cmd := exec.Command(edged, edgedArgs("--id", "mtls-0", "--data-dir", t.TempDir(), "--raft-addr", testkit.FreeAddr(t),
		"--admin-addr", admin, "--http-addr", testkit.FreeAddr(t), "--metrics-addr", testkit.FreeAddr(t),
		"--cluster-key-file", keyFile, "--bootstrap-expect", "1", "--raft-log-level", "error",
		"--admin-tls-cert", serverCert, "--admin-tls-key", serverKey, "--admin-client-ca", caFile)...)
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
	withCert := []string{"--tls-ca", caFile, "--tls-cert", clientCert, "--tls-key", clientKey}

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
	env := []string{"EDGECTL_TLS_CA=" + caFile, "EDGECTL_TLS_CERT=" + clientCert, "EDGECTL_TLS_KEY=" + clientKey}
	if out, errs, code := run(env, "tenant", "list"); code != 0 || !strings.Contains(out, "mtls.example") {
		t.Fatalf("tenant list with EDGECTL_TLS_*: exit %d: %s %s", code, out, errs)
	}

	// Without a client certificate (TLS to the right server, no token):
	// refused as an authentication failure, exit 1, saying what to set.
	_, errs, code := run(nil, "--tls-ca", caFile, "tenant", "list")
	if code != 1 || !strings.Contains(errs, "unauthenticated") || !strings.Contains(errs, "--tls-cert") {
		t.Errorf("without a client certificate: exit %d, stderr %q; want 1 and unauthenticated", code, errs)
	}
	// A certificate the node's --admin-client-ca did not sign: the TLS
	// handshake fails, exit 1.
	if _, errs, code := run(nil, "--tls-ca", caFile, "--tls-cert", rogueCert, "--tls-key", rogueKey, "tenant", "list"); code != 1 {
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
