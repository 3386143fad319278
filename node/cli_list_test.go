package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/cli"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// cliEnv runs edgectl in-process, as a user's shell would with env.
type cliEnv map[string]string

func (e cliEnv) run(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := cli.Execute(context.Background(), args, &out, &errb, func(k string) string { return e[k] })
	return out.String(), errb.String(), code
}

type listJSON struct {
	Tenants []struct {
		Domain string `json:"domain"`
	} `json:"tenants"`
	NextPageToken string `json:"next_page_token"`
}

func (e cliEnv) list(t *testing.T, args ...string) ([]string, string) {
	t.Helper()
	out, errs, code := e.run(append([]string{"tenant", "list", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("tenant list %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	if strings.Contains(out, `"paging"`) {
		t.Errorf("tenant list -o json shows the paging field: %s", out[:min(len(out), 300)])
	}
	var l listJSON
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("tenant list %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var ds []string
	for _, x := range l.Tenants {
		ds = append(ds, x.Domain)
	}
	return ds, l.NextPageToken
}

// An operator with a context and a cluster of more tenants than one page:
// edgectl finds the node and token through the config file alone; the
// default list stops at 500 and says how to go on; --limit/--page-token
// walk the pages in domain order without gaps or repeats; --all and a
// client that sends no paging fields get everything; --status and
// --origin-host filter on the server, and a token is refused with other
// filters or mangled.
func TestCLIContextsAndTenantListPaging(t *testing.T) {
	n := startCluster(t, 1)[0]
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := cliEnv{"EDGECTL_CONFIG": filepath.Join(dir, "edgectl", "config.yaml"), "HOME": dir}
	for _, args := range [][]string{
		{"config", "set-context", "test", "--server", n.AdminAddr(), "--token-file", tokenFile},
		{"config", "set-context", "gone", "--server", testkit.FreeAddr(t), "--token-file", tokenFile, "--timeout", "1s"},
		{"config", "use-context", "test"},
	} {
		if _, errs, code := e.run(args...); code != 0 {
			t.Fatalf("edgectl %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
	}
	if _, errs, code := e.run("--context", "gone", "tenant", "list"); code != 1 {
		t.Fatalf("--context gone: exit %d (%s), want 1: it must use the context's server", code, errs)
	}
	// A flag beats the context's setting; the context still gives the token.
	if _, errs, code := e.run("--context", "gone", "--server", n.AdminAddr(), "tenant", "list"); code != 0 {
		t.Fatalf("--context gone --server real: exit %d: %s", code, errs)
	}

	// 503 tenants: every seventh suspended, every fifth on another origin.
	const total = 503
	tc := edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), testToken))
	var want, suspended, onB []string
	for i := range total {
		d := fmt.Sprintf("t%04d.example", i)
		origin := "http://origin-a.example"
		if i%5 == 0 {
			origin = "http://origin-b.example:8080"
			onB = append(onB, d)
		}
		lic := &edgev1.License{Status: "active"}
		if i%7 == 0 {
			lic.Status = "suspended"
			suspended = append(suspended, d)
		}
		if _, err := tc.Add(authCtx(testToken), &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: d, License: lic, Origin: &edgev1.Origin{Url: origin}}}); err != nil {
			t.Fatal(err)
		}
		want = append(want, d)
	}

	// The default: one page of 500, and how to get the rest.
	got, next := e.list(t)
	if len(got) != 500 || next == "" || got[0] != want[0] || got[499] != want[499] {
		t.Fatalf("default list: %d tenants, next %q; want the first 500 and a token", len(got), next)
	}
	if _, errs, _ := e.run("tenant", "list"); !strings.Contains(errs, "more tenants: --page-token ") {
		t.Errorf("table output does not say there is more: stderr %q", errs)
	}

	// Pages of 200: every tenant once, in order.
	var walked []string
	tok := ""
	for pages := 0; ; pages++ {
		args := []string{"--limit", "200"}
		if tok != "" {
			args = append(args, "--page-token", tok)
		}
		page, next := e.list(t, args...)
		walked = append(walked, page...)
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		tok = next
	}
	if strings.Join(walked, ",") != strings.Join(want, ",") {
		t.Errorf("pages of 200: %d tenants, want %d in domain order", len(walked), len(want))
	}

	// --all pages through everything (more than one call's page).
	if got, next := e.list(t, "--all"); len(got) != total || next != "" {
		t.Errorf("--all: %d tenants, next %q; want %d and none", len(got), next, total)
	}
	// A client that sends no paging fields (older edgectl, scripts on the
	// raw API) still gets everything in one answer.
	resp, err := tc.List(authCtx(testToken), &edgev1.ListTenantsRequest{})
	if err != nil || len(resp.GetTenants()) != total || resp.GetNextPageToken() != "" {
		t.Errorf("List without paging fields: %d tenants, next %q, %v", len(resp.GetTenants()), resp.GetNextPageToken(), err)
	}

	// Filters, on the server, across pages.
	if got, _ := e.list(t, "--status", "suspended", "--all"); strings.Join(got, ",") != strings.Join(suspended, ",") {
		t.Errorf("--status suspended: %d tenants, want %d", len(got), len(suspended))
	}
	first, next := e.list(t, "--origin-host", "ORIGIN-B.example", "--limit", "60")
	rest, last := e.list(t, "--origin-host", "origin-b.example", "--page-token", next)
	if strings.Join(append(first, rest...), ",") != strings.Join(onB, ",") || last != "" {
		t.Errorf("--origin-host origin-b.example in two pages: %d+%d tenants, want %d", len(first), len(rest), len(onB))
	}
	if got, _ := e.list(t, "--origin-host", "origin-b.example:8080", "--status", "suspended", "--all"); len(got) != (total+34)/35 {
		t.Errorf("--origin-host with port and --status: %d tenants, want %d", len(got), (total+34)/35)
	}

	// A token with other filters, or mangled, is refused, not misread.
	for _, args := range [][]string{
		{"--page-token", next},
		{"--page-token", next, "--status", "active"},
		{"--page-token", next[:len(next)-2] + "AA", "--origin-host", "origin-b.example"},
		{"--page-token", "t0100.example"},
	} {
		if _, errs, code := e.run(append([]string{"tenant", "list"}, args...)...); code != 1 || !strings.Contains(errs, "page_token") {
			t.Errorf("tenant list %s: exit %d, %q; want 1 and a page_token error", strings.Join(args, " "), code, errs)
		}
	}
	if _, _, code := e.run("tenant", "list", "--status", "gone"); code != 2 {
		t.Errorf("--status gone: exit %d, want 2", code)
	}
	if _, _, code := e.run("tenant", "list", "--all", "--limit", "5"); code != 2 {
		t.Errorf("--all --limit: exit %d, want 2", code)
	}
}

// lockedBuffer is an edgectl's stdout read while it still writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// watching is an `edgectl ... --watch` running until stop (Ctrl-C).
type watching struct {
	out, errb lockedBuffer
	cancel    context.CancelFunc
	code      chan int
}

func (e cliEnv) watch(args ...string) *watching {
	w := &watching{code: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() {
		w.code <- cli.Execute(ctx, args, &w.out, &w.errb, func(k string) string { return e[k] })
	}()
	return w
}

func (w *watching) lines() []string {
	return strings.Split(strings.TrimSpace(w.out.String()), "\n")
}

// stop interrupts the watch and returns its exit code.
func (w *watching) stop(t *testing.T) int {
	t.Helper()
	w.cancel()
	select {
	case c := <-w.code:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("--watch did not end when interrupted")
		return -1
	}
}

// --watch prints each change of a tenant once, as one JSON document a
// line, keeps going when the tenant disappears, and ends with exit 0 when
// interrupted; cluster status --watch prints an unchanged cluster once; a
// first ask that fails ends the watch with its error.
func TestCLIWatch(t *testing.T) {
	n := startCluster(t, 1)[0]
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := cliEnv{"EDGECTL_SERVER": n.AdminAddr(), "EDGECTL_TOKEN_FILE": tokenFile}
	if _, errs, code := e.run("tenant", "add", "w.example", "--origin", "http://o.example", "--plan", "p0"); code != 0 {
		t.Fatalf("tenant add: exit %d: %s", code, errs)
	}

	status := e.watch("cluster", "status", "--watch", "--interval", "50ms", "-o", "json")
	w := e.watch("tenant", "get", "w.example", "--watch", "--interval", "50ms", "-o", "json")
	plan := func(line string) string {
		var v struct {
			License struct {
				Plan string `json:"plan"`
			} `json:"license"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("not one JSON document a line: %q: %v", line, err)
		}
		return v.License.Plan
	}
	testkit.Eventually(t, 5*time.Second, "the first answer", func() bool { return w.out.String() != "" })
	for _, p := range []string{"p1", "p2"} {
		if _, errs, code := e.run("tenant", "update", "w.example", "--plan", p); code != 0 {
			t.Fatalf("tenant update: exit %d: %s", code, errs)
		}
		testkit.Eventually(t, 5*time.Second, "the watch to print plan "+p, func() bool {
			l := w.lines()
			return plan(l[len(l)-1]) == p
		})
	}
	time.Sleep(300 * time.Millisecond) // six more asks, no change
	var plans []string
	for _, l := range w.lines() {
		plans = append(plans, plan(l))
	}
	if strings.Join(plans, ",") != "p0,p1,p2" {
		t.Errorf("watch printed plans %v, want each change once: p0,p1,p2", plans)
	}
	// The tenant goes away: the watch says so on stderr and goes on.
	if _, errs, code := e.run("tenant", "remove", "w.example"); code != 0 {
		t.Fatalf("tenant remove: exit %d: %s", code, errs)
	}
	testkit.Eventually(t, 5*time.Second, "the watch to report the removal", func() bool { return strings.Contains(w.errb.String(), "not found") })
	if c := w.stop(t); c != 0 {
		t.Errorf("tenant get --watch interrupted: exit %d, want 0", c)
	}
	if strings.Count(w.errb.String(), "not found") != 1 {
		t.Errorf("the same failure reported more than once: %q", w.errb.String())
	}

	if c := status.stop(t); c != 0 {
		t.Errorf("cluster status --watch interrupted: exit %d, want 0 (stderr %q)", c, status.errb.String())
	}
	// An unchanged cluster is printed once... but the tenant writes
	// moved its applied index: one line per index seen, no repeats.
	seen := map[string]bool{}
	for _, l := range status.lines() {
		if seen[l] {
			t.Errorf("cluster status --watch printed the same answer twice: %s", l)
		}
		seen[l] = true
	}

	// A first ask that fails ends the watch, with the usual exit code.
	done := e.watch("cert", "get", "nosuch.example", "--watch", "--interval", "50ms")
	select {
	case c := <-done.code:
		if c != 1 {
			t.Errorf("cert get nosuch --watch: exit %d, want 1 (stderr %q)", c, done.errb.String())
		}
	case <-time.After(10 * time.Second):
		done.cancel()
		t.Fatal("cert get --watch of a missing certificate did not end")
	}
}
