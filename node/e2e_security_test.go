package node_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/raftstore/peertls"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestE2ERaftCredentialRequired: edged outside --dev does not start
// without the raft port's cluster credential, nor with the manifests'
// placeholder or a short key, and says how to make one.
func TestE2ERaftCredentialRequired(t *testing.T) {
	edged, _ := binaries(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("e2e-secret-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := []string{"--id", "n1", "--data-dir", filepath.Join(dir, "data"), "--raft-addr", testkit.FreeAddr(t),
		"--admin-addr", testkit.FreeAddr(t), "--http-addr", "", "--admin-token-file", token, "--bootstrap-expect", "1"}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no key":      {nil, "--cluster-key-file"},
		"placeholder": {[]string{"--cluster-key-file", write("ph", peertls.PlaceholderKey+"\n")}, "placeholder"},
		"short key":   {[]string{"--cluster-key-file", write("short", "secret\n")}, "at least 32"},
		"half a PKI":  {[]string{"--peer-tls-cert", write("crt", "x")}, "go together"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(edged, append(base, tc.args...)...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("edged started: %s", out)
			}
			if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "urandom") && name != "half a PKI" {
				t.Fatalf("edged said %q; want it to name %q and how to make a key", out, tc.want)
			}
		})
	}
}

// TestE2EDevMakesItsOwnKeyAndKeepsItPrivate: --dev needs no credential:
// it makes a cluster key in its data dir, which, like everything there,
// only the node's user can read, even when the dir existed with loose
// modes.
func TestE2EDevMakesItsOwnKeyAndKeepsItPrivate(t *testing.T) {
	edged, _ := binaries(t)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &e2eCluster{t: t, edged: edged}
	p := &proc{id: "dev", dataDir: dir, admin: testkit.FreeAddr(t), raft: testkit.FreeAddr(t), http: testkit.FreeAddr(t)}
	c.start(p, []string{"--dev", "--id", "dev", "--data-dir", dir, "--admin-addr", p.admin, "--raft-addr", p.raft, "--http-addr", p.http})
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	testkit.Eventually(t, 20*time.Second, "edged --dev to start", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return strings.Contains(p.log.String(), "edged started")
	})
	b, err := os.ReadFile(filepath.Join(dir, "cluster-key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peertls.ParseKeys(string(b)); err != nil {
		t.Fatalf("--dev's key: %v", err)
	}
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if info.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, info.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
