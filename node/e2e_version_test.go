package node_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// The build version set with -ldflags -X shows in edged --version,
// edgectl version (client and every member), cluster status and the
// edge_build_info metric.
func TestE2EVersions(t *testing.T) {
	c := startE2ECluster(t, 1)
	srv := c.nodes[0].admin

	out, err := exec.Command(c.edged, "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "edged "+testkit.Version+" ("+runtime.Version()+")" {
		t.Errorf("edged --version: %v %q", err, out)
	}

	table := c.mustCtl("--server", srv, "version")
	if !strings.Contains(table, "edgectl") || strings.Count(table, testkit.Version) != 2 || !strings.Contains(table, "edge-0") {
		t.Errorf("edgectl version:\n%s", table)
	}
	var v struct {
		Client  string `json:"client"`
		Members []struct{ ID, Version string }
	}
	if err := json.Unmarshal([]byte(c.mustCtl("--server", srv, "version", "-o", "json")), &v); err != nil || v.Client != testkit.Version || len(v.Members) != 1 || v.Members[0].Version != testkit.Version {
		t.Errorf("edgectl version -o json: %v %+v", err, v)
	}
	// --client needs no server; without it an unreachable server is an
	// error after the client's version.
	dead := testkit.FreeAddr(t)
	if out := c.mustCtl("--server", dead, "version", "--client"); !strings.Contains(out, testkit.Version) {
		t.Errorf("version --client: %q", out)
	}
	if out, _, code := c.ctl("--server", dead, "--timeout", "2s", "version"); code != 1 || !strings.Contains(out, testkit.Version) {
		t.Errorf("version against a dead server: exit %d, stdout %q", code, out)
	}

	if st := c.mustCtl("--server", srv, "cluster", "status"); !strings.Contains(st, "VERSION") || !strings.Contains(st, testkit.Version) {
		t.Errorf("cluster status table:\n%s", st)
	}

	// Small ones from issue 18: a single node has no one to hand
	// leadership to; an empty certificate list says so.
	if _, errs, code := c.ctl("--server", srv, "cluster", "transfer-leader"); code != 1 || strings.TrimSpace(errs) != "edgectl: no other voter to transfer to" {
		t.Errorf("transfer-leader on one node: exit %d, %q", code, errs)
	}
	if out := c.mustCtl("--server", srv, "cert", "list"); strings.TrimSpace(out) != "no certificates" {
		t.Errorf("empty cert list: %q", out)
	}

	resp, err := http.Get("http://" + c.nodes[0].metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `edge_build_info{goversion="` + runtime.Version() + `",version="` + testkit.Version + `"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("metrics lack %s", want)
	}
}

// edged --dev removes the temporary data directory it made when it exits
// cleanly.
func TestE2EDevRemovesItsDataDir(t *testing.T) {
	edged, edgectl := binaries(t)
	tmp := t.TempDir()
	admin := testkit.FreeAddr(t)
	cmd := exec.Command(edged, edgedArgs("--dev", "--id", "dev", "--admin-addr", admin, "--raft-addr", testkit.FreeAddr(t), "--http-addr", testkit.FreeAddr(t), "--raft-log-level", "error")...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	testkit.Eventually(t, 20*time.Second, "the dev node to answer", func() bool {
		return exec.Command(edgectl, "--server", admin, "--timeout", "2s", "cluster", "status").Run() == nil
	})
	if dirs, _ := filepath.Glob(filepath.Join(tmp, "edged-dev-*")); len(dirs) != 1 {
		t.Fatalf("dev data dirs while running: %v", dirs)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("edged --dev exit: %v", err)
	}
	if dirs, _ := filepath.Glob(filepath.Join(tmp, "edged-dev-*")); len(dirs) != 0 {
		t.Errorf("edged --dev left %v behind", dirs)
	}
}
