package node_test

import (
	"strings"
	"testing"
)

// A new --origin does not silently inherit a Host header chosen for the
// old one: the user picks --origin-host NAME, --origin-host "" or
// --keep-origin-host.
func TestE2ETenantUpdateOriginAsksAboutHost(t *testing.T) {
	c := startE2ECluster(t, 1)
	srv := c.nodes[0].admin
	host := func() string {
		t.Helper()
		out := c.mustCtl("--server", srv, "tenant", "get", "h.example", "-o", "json")
		if i := strings.Index(out, `"host_header": "`); i >= 0 {
			rest := out[i+len(`"host_header": "`):]
			return rest[:strings.Index(rest, `"`)]
		}
		t.Fatalf("no host_header in %s", out)
		return ""
	}
	c.mustCtl("--server", srv, "tenant", "add", "h.example", "--origin", "http://old.internal:8080", "--origin-host", "old.internal")

	_, errs, code := c.ctl("--server", srv, "tenant", "update", "h.example", "--origin", "http://new.internal:8080")
	if code != 2 || !strings.Contains(errs, `sends Host "old.internal"`) || !strings.Contains(errs, "--keep-origin-host") {
		t.Fatalf("update --origin alone: exit %d, %q; want 2 and the choices", code, errs)
	}
	if out := c.mustCtl("--server", srv, "tenant", "get", "h.example", "-o", "json"); !strings.Contains(out, "old.internal:8080") {
		t.Fatalf("a refused update changed the tenant: %s", out)
	}
	if _, _, code := c.ctl("--server", srv, "tenant", "update", "h.example", "--origin", "http://x", "--origin-host", "x", "--keep-origin-host"); code != 2 {
		t.Errorf("both choices: exit %d, want 2", code)
	}

	c.mustCtl("--server", srv, "tenant", "update", "h.example", "--origin", "http://new.internal:8080", "--keep-origin-host")
	if h := host(); h != "old.internal" {
		t.Errorf("--keep-origin-host: host %q", h)
	}
	c.mustCtl("--server", srv, "tenant", "update", "h.example", "--origin", "http://newer.internal:8080", "--origin-host", "newer.example")
	if h := host(); h != "newer.example" {
		t.Errorf("--origin-host newer.example: host %q", h)
	}
	c.mustCtl("--server", srv, "tenant", "update", "h.example", "--origin", "http://newest.internal:8080", "--origin-host", "")
	if h := host(); h != "" {
		t.Errorf(`--origin-host "": host %q`, h)
	}
	// Without a Host of its own, a tenant's origin changes with no choice
	// to make.
	c.mustCtl("--server", srv, "tenant", "update", "h.example", "--origin", "http://last.internal:8080")
}
