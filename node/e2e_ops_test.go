package node_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

func TestE2ESnapshotSaveRestoreAndHistory(t *testing.T) {
	c := startE2ECluster(t, 3)
	srv := c.servers()
	for _, d := range []string{"a.example", "b.example"} {
		c.mustCtl("--server", srv, "tenant", "add", d, "--origin", "http://127.0.0.1:9")
	}
	file := filepath.Join(t.TempDir(), "edge.snap")
	out := c.mustCtl("--server", srv, "snapshot", "save", file, "-o", "json")
	var saved struct {
		Bytes  int64  `json:"bytes,string"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal([]byte(out), &saved); err != nil || saved.Bytes == 0 || len(saved.SHA256) != 64 {
		t.Fatalf("snapshot save output %q: %v", out, err)
	}
	if st, err := os.Stat(file); err != nil || st.Size() != saved.Bytes {
		t.Fatalf("snapshot save reports %d bytes; the file has %v (%v)", saved.Bytes, st, err)
	}

	// Change the state, then restore the snapshot.
	c.mustCtl("--server", srv, "tenant", "remove", "a.example")
	c.mustCtl("--server", srv, "tenant", "add", "c.example", "--origin", "http://127.0.0.1:9")

	// A truncated file is refused and changes nothing.
	whole, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "truncated.snap")
	os.WriteFile(bad, whole[:len(whole)/2], 0o600)
	if _, errs, code := c.ctl("--server", srv, "snapshot", "restore", bad); code != 1 || !strings.Contains(errs, "truncated") {
		t.Fatalf("truncated restore: exit %d, %q", code, errs)
	}
	if _, _, code := c.ctl("--server", srv, "tenant", "get", "c.example"); code != 0 {
		t.Fatal("a refused restore changed the state")
	}

	// Without a terminal and without --yes, a restore refuses (exit 2)
	// and changes nothing.
	if _, errs, code := c.ctl("--server", srv, "snapshot", "restore", file); code != 2 || !strings.Contains(errs, "--yes") {
		t.Fatalf("restore without --yes: exit %d, %q; want 2 and a hint", code, errs)
	}
	if _, _, code := c.ctl("--server", srv, "tenant", "get", "c.example"); code != 0 {
		t.Fatal("an unconfirmed restore changed the state")
	}
	c.mustCtl("--server", srv, "snapshot", "restore", file, "--yes")
	for _, p := range c.nodes {
		testkit.Eventually(t, 5*time.Second, p.id+" restored state", func() bool {
			out, _, code := c.ctl("--server", p.admin, "--local", "tenant", "list", "-o", "json")
			return code == 0 && strings.Contains(out, `"a.example"`) && strings.Contains(out, `"b.example"`) && !strings.Contains(out, `"c.example"`)
		})
	}
	// The cluster keeps working after a restore.
	c.mustCtl("--server", srv, "tenant", "add", "d.example", "--origin", "http://127.0.0.1:9")

	// The restore is in the history, though it replaced the history with
	// the snapshot's: who, which snapshot (its index and hash).
	var all struct {
		Entries []struct {
			Operation, Actor, Detail string
		}
	}
	if err := json.Unmarshal([]byte(c.mustCtl("--server", srv, "history", "-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	var restores int
	for _, e := range all.Entries {
		if e.Operation == "snapshot.restore" {
			restores++
			if !strings.Contains(e.Actor, "@") || !strings.Contains(e.Detail, "snapshot index ") || !strings.Contains(e.Detail, "sha256 "+saved.SHA256) {
				t.Errorf("restore entry: %+v; want the actor, the snapshot's index and sha256 %s", e, saved.SHA256)
			}
		}
	}
	if restores != 1 {
		t.Errorf("history has %d snapshot.restore entries, want 1: %+v", restores, all.Entries)
	}
	if table := c.mustCtl("--server", srv, "history"); !strings.Contains(table, "snapshot.restore") {
		t.Errorf("history table lacks the restore:\n%s", table)
	}
	hist := c.mustCtl("--server", srv, "history", "b.example", "-o", "json")
	if !strings.Contains(hist, `"operation": "tenant.add"`) || !strings.Contains(hist, "@") {
		t.Fatalf("history of b.example: %s", hist)
	}
}
