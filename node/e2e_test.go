package node_test

// End-to-end tests: build the real binaries, start edged processes, and
// drive them with edgectl exactly as an operator or a CI script would.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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

// TestMain removes the binaries testkit built for this test process.
func TestMain(m *testing.M) { testkit.Main(m) }

// binaries builds edged and edgectl once per test process (testkit).
func binaries(t *testing.T) (edged, edgectl string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	return testkit.Binaries(t)
}

// standardPaths reports whether this run of the suite starts edged with
// --standard-paths (EDGE_E2E_STANDARD_PATHS=1): every fast path off.
// make test runs the e2e tests once in each mode.
func standardPaths() bool { return os.Getenv("EDGE_E2E_STANDARD_PATHS") == "1" }

// edgedArgs is an edged command line in the suite's mode.
func edgedArgs(args ...string) []string {
	if standardPaths() {
		return append(args[:len(args):len(args)], "--standard-paths")
	}
	return args
}

type proc struct {
	id                                string
	args                              []string
	dataDir                           string
	admin, raft, http, https, metrics string
	cmd                               *exec.Cmd
	log                               *bytes.Buffer
	mu                                sync.Mutex
}

type e2eCluster struct {
	t         *testing.T
	edged     string
	edgectl   string
	tokenFile string
	keyFile   string // the raft port's cluster key
	nodes     []*proc
}

func (c *e2eCluster) servers() string {
	var s []string
	for _, n := range c.nodes {
		s = append(s, n.admin)
	}
	return strings.Join(s, ",")
}

// start launches (or relaunches) a node process.
func (c *e2eCluster) start(p *proc, args []string) {
	c.t.Helper()
	p.log = &bytes.Buffer{}
	p.cmd = exec.Command(c.edged, edgedArgs(args...)...)
	p.cmd.Stdout = &lockedWriter{w: p.log, mu: &p.mu}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func startE2ECluster(t *testing.T, n int) *e2eCluster {
	return startE2EClusterWith(t, n, nil)
}

// startE2EClusterWith starts n edged processes; extra adds flags per node.
func startE2EClusterWith(t *testing.T, n int, extra func(*proc) []string) *e2eCluster {
	edged, edgectl := binaries(t)
	c := &e2eCluster{t: t, edged: edged, edgectl: edgectl, tokenFile: filepath.Join(t.TempDir(), "token")}
	// Two tokens, as during a rotation: edged sends the first and accepts
	// both, edgectl sends the first line (TestE2ECLIContract uses the
	// second).
	if err := os.WriteFile(c.tokenFile, []byte("e2e-secret-token-0123456789abcdef012\ne2e-next-token-0123456789abcdef012345\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.keyFile = filepath.Join(t.TempDir(), "cluster-key")
	if err := os.WriteFile(c.keyFile, []byte("e2e-cluster-key-0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		c.nodes = append(c.nodes, &proc{
			id: fmt.Sprintf("edge-%d", i), dataDir: t.TempDir(),
			admin: testkit.FreeAddr(t), raft: testkit.FreeAddr(t), http: testkit.FreeAddr(t), metrics: testkit.FreeAddr(t),
		})
	}
	for _, p := range c.nodes {
		p.args = []string{
			"--id", p.id, "--data-dir", p.dataDir, "--raft-addr", p.raft, "--admin-addr", p.admin,
			"--http-addr", p.http, "--metrics-addr", p.metrics, "--admin-token-file", c.tokenFile, "--cluster-key-file", c.keyFile,
			"--bootstrap-expect", fmt.Sprint(n), "--join", c.servers(), "--raft-log-level", "error",
		}
		if extra != nil {
			p.args = append(p.args, extra(p)...)
		}
		c.start(p, p.args)
	}
	t.Cleanup(func() {
		for _, p := range c.nodes {
			if p.cmd != nil && p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { _ = p.cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = p.cmd.Process.Kill()
					<-done
				}
			}
			if t.Failed() {
				p.mu.Lock()
				t.Logf("--- log of %s ---\n%s", p.id, tail(p.log.String(), 4000))
				p.mu.Unlock()
			}
		}
	})
	c.waitStatus(n)
	return c
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

type statusJSON struct {
	Leader  string `json:"leader"`
	Members []struct {
		ID           string `json:"id"`
		AdminAddress string `json:"admin_address"`
		Suffrage     string `json:"suffrage"`
		State        string `json:"state"`
	} `json:"members"`
}

// ctl runs edgectl and returns stdout, stderr and the exit code.
func (c *e2eCluster) ctl(args ...string) (string, string, int) {
	cmd := exec.Command(c.edgectl, args...)
	cmd.Env = append(os.Environ(), "EDGECTL_TOKEN_FILE="+c.tokenFile)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (c *e2eCluster) mustCtl(args ...string) string {
	c.t.Helper()
	out, errs, code := c.ctl(args...)
	if code != 0 {
		c.t.Fatalf("edgectl %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

func (c *e2eCluster) status(server string) (statusJSON, error) {
	out, errs, code := c.ctl("--server", server, "--timeout", "3s", "cluster", "status", "-o", "json")
	var s statusJSON
	if code != 0 {
		return s, errors.New(errs)
	}
	err := json.Unmarshal([]byte(out), &s)
	return s, err
}

func (c *e2eCluster) waitStatus(n int) statusJSON {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := c.status(c.servers())
		ok := err == nil && s.Leader != "" && len(s.Members) == n
		if ok {
			for _, m := range s.Members {
				ok = ok && m.State != "unreachable" && m.AdminAddress != ""
			}
		}
		if ok {
			return s
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster did not form: %+v %v", s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *e2eCluster) node(id string) *proc {
	for _, p := range c.nodes {
		if p.id == id {
			return p
		}
	}
	c.t.Fatalf("no node %s", id)
	return nil
}

// waitLocalTenant waits until p's own view (a --local read, which is not
// leader-confirmed) resolves name to the tenant domain. A write returns
// once a majority has it; a follower applies it moments later.
func (c *e2eCluster) waitLocalTenant(p *proc, name, domain string) {
	c.t.Helper()
	testkit.Eventually(c.t, 3*time.Second, p.id+" to apply tenant "+domain, func() bool {
		o, _, code := c.ctl("--server", p.admin, "--local", "tenant", "get", name, "-o", "json")
		return code == 0 && strings.Contains(o, `"domain": "`+domain+`"`)
	})
}

func TestE2EClusterSurvivesLeaderKill(t *testing.T) {
	c := startE2ECluster(t, 3)
	st := c.waitStatus(3)
	var follower *proc
	for _, m := range st.Members {
		if m.ID != st.Leader {
			follower = c.node(m.ID)
			break
		}
	}

	// An origin for the tenant, so we can check the proxy on every node.
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from origin, host=%s path=%s", r.Host, r.URL.Path)
	}))
	defer origin.Close()

	// Add through a follower; it forwards to the leader.
	out := c.mustCtl("--server", follower.admin, "tenant", "add", "shop.example", "--origin", origin.URL, "--alias", "www.shop.example", "-o", "json")
	var added struct{ Domain string }
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.Domain != "shop.example" {
		t.Fatalf("tenant add output %q: %v", out, err)
	}
	// Every node's own view has it (poll: --local is not leader-confirmed).
	for _, p := range c.nodes {
		c.waitLocalTenant(p, "www.shop.example", "shop.example")
		// And serves it.
		body := proxyGet(t, p.http, "www.shop.example", "/x")
		if !strings.Contains(body, "hello from origin") {
			t.Fatalf("%s proxy body = %q", p.id, body)
		}
	}

	// A stream of writes; kill -9 the leader in the middle of it.
	var (
		mu    sync.Mutex
		acked []string
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			d := fmt.Sprintf("w%03d.example", i)
			if _, _, code := c.ctl("--server", c.servers(), "--timeout", "10s", "tenant", "add", d, "--origin", origin.URL); code == 0 {
				mu.Lock()
				acked = append(acked, d)
				mu.Unlock()
			}
		}
	}()
	testkit.Eventually(t, 20*time.Second, "some acknowledged writes", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 10 })
	leader := c.node(st.Leader)
	if err := leader.cmd.Process.Kill(); err != nil { // SIGKILL: no goodbye
		t.Fatal(err)
	}
	_ = leader.cmd.Wait()
	mu.Lock()
	killedAt := len(acked)
	mu.Unlock()
	testkit.Eventually(t, 30*time.Second, "writes after the kill", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= killedAt+10 })
	close(stop)
	wg.Wait()

	// Every acknowledged write is on both survivors.
	var survivors []*proc
	for _, p := range c.nodes {
		if p != leader {
			survivors = append(survivors, p)
		}
	}
	for _, p := range survivors {
		out := c.mustCtl("--server", p.admin, "tenant", "list", "-o", "json")
		for _, d := range acked {
			if !strings.Contains(out, `"domain": "`+d+`"`) {
				t.Errorf("%s lost acknowledged write %s", p.id, d)
			}
		}
	}
	t.Logf("%d writes acknowledged, %d before the kill", len(acked), killedAt)

	// The killed node restarts from its data dir with no join flags and
	// catches up.
	restartArgs := []string{"--id", leader.id, "--data-dir", leader.dataDir, "--raft-addr", leader.raft,
		"--admin-addr", leader.admin, "--http-addr", leader.http, "--admin-token-file", c.tokenFile, "--cluster-key-file", c.keyFile, "--raft-log-level", "error"}
	c.start(leader, restartArgs)
	last := acked[len(acked)-1]
	testkit.Eventually(t, 15*time.Second, "restarted node to catch up", func() bool {
		_, _, code := c.ctl("--server", leader.admin, "--local", "tenant", "get", last)
		return code == 0
	})
	if body := proxyGet(t, leader.http, last, "/"); !strings.Contains(body, "hello from origin") {
		t.Fatalf("restarted node proxy body = %q", body)
	}
}

func proxyGet(t *testing.T, addr, host, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s via %s: %v", host, addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("X-Total-Time") == "" {
		t.Errorf("response from %s has no X-Total-Time", addr)
	}
	return string(b)
}

func TestE2ECLIContract(t *testing.T) {
	c := startE2ECluster(t, 1)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	srv := c.nodes[0].admin

	// Usage errors exit 2; failures exit 1; one line on stderr.
	if _, errs, code := c.ctl("--server", srv, "tenant", "add"); code != 2 || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Errorf("missing DOMAIN: exit %d, stderr %q; want 2 and one line", code, errs)
	}
	if _, _, code := c.ctl("--server", srv, "tenant", "list", "--bogus"); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if _, errs, code := c.ctl("--server", srv, "tenant", "add", "bad domain", "--origin", origin.URL); code != 1 || !strings.Contains(errs, "invalid argument: domain") {
		t.Errorf("invalid domain: exit %d, stderr %q", code, errs)
	}
	if _, errs, code := c.ctl("--server", srv, "tenant", "add", "shop.example", "--origin", "ftp://nope"); code != 1 || !strings.Contains(errs, "origin.url") {
		t.Errorf("invalid origin: exit %d, stderr %q", code, errs)
	}
	pem := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(pem, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
	if _, errs, code := c.ctl("--server", srv, "tenant", "add", "shop.example", "--origin", "https://o.example", "--origin-ca-file", pem); code != 1 || !strings.Contains(errs, "origin.tls.ca_pem") {
		t.Errorf("invalid PEM: exit %d, stderr %q", code, errs)
	}
	if out := c.mustCtl("--server", srv, "tenant", "list", "-o", "json"); strings.Contains(out, "shop.example") {
		t.Fatalf("rejected adds wrote something: %s", out)
	}
	if _, errs, code := c.ctl("--server", srv, "tenant", "get", "unknown.example"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("unknown tenant: exit %d, stderr %q", code, errs)
	}
	dead := testkit.FreeAddr(t)
	if _, errs, code := c.ctl("--server", dead, "--timeout", "3s", "tenant", "list"); code != 1 || !strings.Contains(errs, dead) {
		t.Errorf("unreachable server: exit %d, stderr %q; want the address named", code, errs)
	}
	// A dead first server is skipped for the next one.
	c.mustCtl("--server", dead+","+srv, "tenant", "add", "shop.example", "--origin", origin.URL)

	// The second token of the node's file is accepted too; others are not.
	for tok, want := range map[string]int{"e2e-next-token-0123456789abcdef012345": 0, "not-a-token": 1} {
		cmd := exec.Command(c.edgectl, "--server", srv, "tenant", "get", "shop.example")
		cmd.Env = append(os.Environ(), "EDGECTL_TOKEN="+tok)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if code != want || (want == 1 && !strings.Contains(errb.String(), "token")) {
			t.Errorf("token %q: exit %d (%s), want %d", tok, code, strings.TrimSpace(errb.String()), want)
		}
	}

	// Suspend → 403 on the next request, resume → served again.
	if code, body := proxyStatus(t, c.nodes[0].http, "shop.example"); code != 200 || body != "ok" {
		t.Fatalf("active tenant: %d %q", code, body)
	}
	c.mustCtl("--server", srv, "tenant", "suspend", "shop.example")
	if code, body := proxyStatus(t, c.nodes[0].http, "shop.example"); code != 403 || !strings.Contains(body, "suspended") {
		t.Fatalf("suspended tenant: %d %q", code, body)
	}
	c.mustCtl("--server", srv, "tenant", "resume", "shop.example")
	c.mustCtl("--server", srv, "tenant", "update", "shop.example", "--expires", "2001-01-01T00:00:00Z")
	if code, body := proxyStatus(t, c.nodes[0].http, "shop.example"); code != 403 || !strings.Contains(body, "expired") {
		t.Fatalf("expired tenant: %d %q", code, body)
	}
	if code, _ := proxyStatus(t, c.nodes[0].http, "unknown.example"); code != 403 {
		t.Fatalf("unknown host: %d", code)
	}
	c.mustCtl("--server", srv, "tenant", "remove", "shop.example")
	if code, _ := proxyStatus(t, c.nodes[0].http, "shop.example"); code != 403 {
		t.Fatalf("removed tenant: %d", code)
	}
	// The table for people is aligned; YAML parses as YAML.
	c.mustCtl("--server", srv, "tenant", "add", "blog.example", "--origin", origin.URL, "--plan", "pro")
	table := c.mustCtl("--server", srv, "tenant", "list")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 || strings.Index(lines[0], "LICENSE") != strings.Index(lines[1], "active") {
		t.Errorf("table not aligned:\n%s", table)
	}
	if y := c.mustCtl("--server", srv, "tenant", "get", "blog.example", "-o", "yaml"); !strings.Contains(y, "domain: blog.example") {
		t.Errorf("yaml output:\n%s", y)
	}
	if v := c.mustCtl("--server", srv, "version"); !strings.Contains(v, "edgectl") {
		t.Errorf("version output %q", v)
	}
	if comp := c.mustCtl("completion", "bash"); !strings.Contains(comp, "edgectl") {
		t.Errorf("completion output too short")
	}
}

func proxyStatus(t *testing.T, addr, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}
