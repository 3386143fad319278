package node_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The GitOps workflow of docs/gitops.md, driven through the real binaries
// the way a CI pipeline drives it.

const applySample = `tenants:
  - domain: a.example
    origin: http://127.0.0.1:8081
  - domain: b.example
    aliases: [www.b.example]
    origin: https://origin.b.example
`

type applyPlanJSON struct {
	Changes []struct {
		Action string `json:"action"`
		Domain string `json:"domain"`
		Fields []struct {
			Field string `json:"field"`
		} `json:"fields"`
	} `json:"changes"`
	Unmanaged []string `json:"unmanaged"`
	Index     uint64   `json:"index,string"`
	Applied   bool     `json:"applied"`
}

// applyCtlStdin runs edgectl with stdin.
func (c *e2eCluster) applyCtlStdin(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(c.edgectl, args...)
	cmd.Env = append(os.Environ(), "EDGECTL_TOKEN_FILE="+c.tokenFile)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

func TestE2EApplyDiffExport(t *testing.T) {
	c := startE2ECluster(t, 3)
	srv := c.servers()
	dir := t.TempDir()
	file := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	decode := func(out string) applyPlanJSON {
		t.Helper()
		var p applyPlanJSON
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("plan output %q: %v", out, err)
		}
		return p
	}
	// diffJSON returns the plan of files against the cluster and diff's exit code.
	diffJSON := func(args ...string) (applyPlanJSON, int) {
		t.Helper()
		out, errs, code := c.ctl(append([]string{"--server", srv, "diff", "-o", "json"}, args...)...)
		if code == 2 {
			t.Fatalf("diff %v: exit 2: %s", args, errs)
		}
		return decode(out), code
	}
	// index is the cluster's raft index as apply sees it; nothing written
	// means it does not move.
	index := func() uint64 {
		t.Helper()
		p, _ := diffJSON("-f", file("empty.yaml", "tenants: []\n"))
		return p.Index
	}
	sample := file("tenants.yaml", applySample)

	// A fresh cluster: diff says there are changes (exit 1) and lists them.
	out, _, code := c.ctl("--server", srv, "diff", "-f", sample)
	if code != 1 || !strings.Contains(out, "+ a.example") || !strings.Contains(out, "+ b.example") {
		t.Fatalf("diff on an empty cluster: exit %d\n%s", code, out)
	}

	// --dry-run prints the plan and writes nothing.
	before := index()
	out = c.mustCtl("--server", srv, "apply", "-f", sample, "--dry-run")
	if !strings.Contains(out, "dry run: 2 to create") {
		t.Fatalf("dry run output:\n%s", out)
	}
	if after := index(); after != before {
		t.Fatalf("dry run moved the index %d -> %d", before, after)
	}
	if _, _, code := c.ctl("--server", srv, "tenant", "get", "a.example"); code == 0 {
		t.Fatal("dry run created a.example")
	}

	// apply creates both tenants; the proxy routes the alias.
	p := decode(c.mustCtl("--server", srv, "apply", "-f", sample, "-o", "json"))
	if !p.Applied || len(p.Changes) != 2 || p.Changes[0].Action != "create" || p.Changes[1].Domain != "b.example" {
		t.Fatalf("apply: %+v", p)
	}
	if out := c.mustCtl("--server", srv, "tenant", "get", "www.b.example", "-o", "json"); !strings.Contains(out, `"domain": "b.example"`) {
		t.Fatalf("alias not routed to b.example: %s", out)
	}

	// Idempotent: the second apply does nothing, diff exits 0.
	before = index()
	out = c.mustCtl("--server", srv, "apply", "-f", sample)
	if !strings.Contains(out, "no changes") {
		t.Fatalf("second apply:\n%s", out)
	}
	if pl, code := diffJSON("-f", sample); code != 0 || len(pl.Changes) != 0 || pl.Index != before {
		t.Fatalf("diff after apply: exit %d %+v (index before %d)", code, pl, before)
	}

	// Updates change only what differs, and transform rules compare by
	// meaning against the cluster's canonical form.
	updated := file("updated.yaml", `tenants:
  - domain: a.example
    origin: http://127.0.0.1:8081
  - domain: b.example
    aliases: [www.b.example, shop.b.example]
    origin: https://origin.b.example
    https_redirect: true
    plan: gold
    expires: 2030-01-31T00:00:00Z
    cache: {default_ttl: 5m, override_ttl: true}
    transform:
      rewrite_links: true
      source_language: ""
      inject:
        - at: head-end
          html: '<script src="/t.js"></script>'
      languages:
        - code: fr
          path_prefix: /fr/
          dictionary: {Hello: Bonjour, "1": un}
`)
	p = decode(c.mustCtl("--server", srv, "apply", "-f", updated, "-o", "json"))
	if len(p.Changes) != 1 || p.Changes[0].Action != "update" || p.Changes[0].Domain != "b.example" || len(p.Changes[0].Fields) != 7 {
		t.Fatalf("update plan: %+v", p)
	}
	if out := c.mustCtl("--server", srv, "apply", "-f", updated); !strings.Contains(out, "no changes") {
		t.Fatalf("re-apply with transform rules is not idempotent:\n%s", out)
	}

	// export | diff -f - round-trips: exit 0.
	exported := c.mustCtl("--server", srv, "export")
	if !strings.Contains(exported, "domain: b.example") || !strings.Contains(exported, "rewrite_links: true") {
		t.Fatalf("export:\n%s", exported)
	}
	if out, errs, code := c.applyCtlStdin(exported, "--server", srv, "diff", "-f", "-"); code != 0 {
		t.Fatalf("export | diff -f -: exit %d\n%s%s", code, out, errs)
	}
	if out, errs, code := c.applyCtlStdin(c.mustCtl("--server", srv, "export", "-o", "json"), "--server", srv, "diff", "-f", "-"); code != 0 {
		t.Fatalf("export -o json | diff -f -: exit %d\n%s%s", code, out, errs)
	}

	// A tenant created outside the file stays unless --prune.
	c.mustCtl("--server", srv, "tenant", "add", "c.example", "--origin", "http://127.0.0.1:8083", "--alias", "www.c.example")
	if pl, code := diffJSON("-f", updated); code != 0 || strings.Join(pl.Unmanaged, ",") != "c.example" {
		t.Fatalf("diff without --prune: exit %d %+v", code, pl)
	}
	if pl, code := diffJSON("-f", updated, "--prune"); code != 1 || len(pl.Changes) != 1 || pl.Changes[0].Action != "delete" {
		t.Fatalf("diff --prune: exit %d %+v", code, pl)
	}

	// Bad input gets a clear error and writes nothing, even when other
	// tenants in the same file are fine.
	newTenant := "  - domain: d.example\n    origin: http://127.0.0.1:8084\n"
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"conflicting alias", "tenants:\n" + newTenant + "  - domain: a.example\n    aliases: [www.c.example]\n    origin: http://127.0.0.1:8081\n",
			[]string{"conflict.yaml:4:", "alias www.c.example of a.example belongs to tenant c.example"}},
		{"alias twice in the file", "tenants:\n" + newTenant + "    aliases: [www.x.example]\n---\ntenants:\n  - domain: e.example\n    aliases: [www.x.example]\n    origin: http://127.0.0.1:8085\n",
			[]string{"alias www.x.example of e.example is already used by tenant d.example"}},
		{"malformed", "tenants:\n" + newTenant + "   colour: [\n", []string{"malformed.yaml:4:"}},
		{"unknown field", "tenants:\n" + newTenant + "    colour: red\n", []string{"unknown.yaml:4:", `unknown field "colour"`}},
	} {
		name := map[string]string{"conflicting alias": "conflict.yaml", "alias twice in the file": "twice.yaml", "malformed": "malformed.yaml", "unknown field": "unknown.yaml"}[tc.name]
		bad := file(name, tc.content)
		before := index()
		for _, verb := range []string{"apply", "diff"} {
			_, errs, code := c.ctl("--server", srv, verb, "-f", bad)
			wantCode := map[string]int{"apply": 1, "diff": 2}[verb]
			if code != wantCode || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("%s: %s: exit %d, want %d; stderr %q", tc.name, verb, code, wantCode, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("%s: %s: stderr %q lacks %q", tc.name, verb, errs, w)
				}
			}
		}
		if after := index(); after != before {
			t.Errorf("%s: index moved %d -> %d", tc.name, before, after)
		}
		if _, _, code := c.ctl("--server", srv, "tenant", "get", "d.example"); code == 0 {
			t.Fatalf("%s: d.example was written", tc.name)
		}
	}

	// --expect-index: a stale index fails before writing; the current one works.
	changed := file("changed.yaml", strings.Replace(applySample, "127.0.0.1:8081", "127.0.0.1:9081", 1))
	cur := index()
	_, errs, code := c.ctl("--server", srv, "apply", "-f", changed, "--expect-index", "1")
	if code != 1 || !strings.Contains(errs, "--expect-index 1") || !strings.Contains(errs, "nothing written") {
		t.Fatalf("stale --expect-index: exit %d %q", code, errs)
	}
	if index() != cur {
		t.Fatal("stale --expect-index wrote")
	}
	// --prune removes c.example, a.example's origin changes, b.example loses
	// what the sample file does not have.
	p = decode(c.mustCtl("--server", srv, "apply", "-f", changed, "--prune", "--expect-index", jsonUint(cur), "-o", "json"))
	if !p.Applied || len(p.Changes) != 3 || p.Index <= cur {
		t.Fatalf("apply --prune: %+v", p)
	}
	if _, _, code := c.ctl("--server", srv, "tenant", "get", "c.example"); code == 0 {
		t.Fatal("--prune left c.example")
	}
	if out := c.mustCtl("--server", srv, "tenant", "get", "a.example", "-o", "json"); !strings.Contains(out, "127.0.0.1:9081") {
		t.Fatalf("a.example not updated: %s", out)
	}
	if _, code := diffJSON("-f", changed, "--prune"); code != 0 {
		t.Fatal("diff after apply --prune still has changes")
	}
}

func jsonUint(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
