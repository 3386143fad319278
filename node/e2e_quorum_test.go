package node_test

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// stopNode ends p with SIGTERM and waits for it to exit.
func stopNode(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// With two of three voters stopped, edgectl says what is wrong in words an
// operator can act on, exits 3 (no leader), and keeps gRPC's wording out;
// --local reads still answer.
func TestE2EQuorumLossIsExplained(t *testing.T) {
	c := startE2ECluster(t, 3)
	c.mustCtl("--server", c.servers(), "tenant", "add", "q.example", "--origin", "http://127.0.0.1:9")
	// Every member reports its build, asked over gRPC at status time.
	var vs struct {
		Members []struct{ ID, Version string }
	}
	if err := json.Unmarshal([]byte(c.mustCtl("--server", c.servers(), "cluster", "status", "-o", "json")), &vs); err != nil || len(vs.Members) != 3 {
		t.Fatalf("status: %v %+v", err, vs)
	}
	for _, m := range vs.Members {
		if m.Version != testkit.Version {
			t.Errorf("member %s reports version %q, want %q", m.ID, m.Version, testkit.Version)
		}
	}
	survivor := c.nodes[0]
	c.waitLocalTenant(survivor, "q.example", "q.example")
	stopNode(t, c.nodes[1])
	stopNode(t, c.nodes[2])

	want := "no leader: 1 of 3 voters reachable (edge-1, edge-2 unreachable); reads with --local still work"
	clean := func(what, errs string) {
		t.Helper()
		for _, bad := range []string{"RST_STREAM", "context deadline exceeded", "rpc error", "code = ", "desc = "} {
			if strings.Contains(errs, bad) {
				t.Errorf("%s: stderr shows gRPC internals (%q): %s", what, bad, errs)
			}
		}
		if strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("%s: stderr is not one line: %q", what, errs)
		}
	}
	// The survivor notices the lost leader within an election timeout or
	// two; until then status may still name the old one.
	var out, errs string
	var code int
	testkit.Eventually(t, 15*time.Second, "cluster status to report no leader", func() bool {
		out, errs, code = c.ctl("--server", c.servers(), "--timeout", "5s", "cluster", "status")
		return code != 0
	})
	if code != 3 || !strings.Contains(errs, want) {
		t.Errorf("cluster status: exit %d, stderr %q; want 3 and %q", code, errs, want)
	}
	clean("cluster status", errs)
	if !strings.Contains(out, "edge-1") || !strings.Contains(out, "unreachable") {
		t.Errorf("cluster status still prints the members: %q", out)
	}
	jout, _, code := c.ctl("--server", survivor.admin, "cluster", "status", "-o", "json")
	var st statusJSON
	if err := json.Unmarshal([]byte(jout), &st); err != nil || code != 3 || st.Leader != "" || len(st.Members) != 3 {
		t.Errorf("cluster status -o json: exit %d, %v: %s", code, err, jout)
	}

	for _, args := range [][]string{
		{"tenant", "list"},
		{"tenant", "add", "r.example", "--origin", "http://127.0.0.1:9"},
	} {
		full := append([]string{"--server", c.servers(), "--timeout", "6s"}, args...)
		_, errs, code := c.ctl(full...)
		if code != 3 || !strings.Contains(errs, want) {
			t.Errorf("edgectl %s: exit %d, stderr %q; want 3 and %q", strings.Join(args, " "), code, errs, want)
		}
		clean(strings.Join(args, " "), errs)
	}
	if out := c.mustCtl("--server", c.servers(), "--local", "tenant", "list", "-o", "json"); !strings.Contains(out, "q.example") {
		t.Errorf("--local read: %s", out)
	}
}
