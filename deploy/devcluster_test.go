//go:build unix

package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// devCluster is one run of scripts/dev-cluster.sh.
type devCluster struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    strings.Builder
	up     chan struct{}
	exited chan struct{}
	err    error
}

// freeOffset finds a DEV_CLUSTER_PORT_OFFSET whose 15 ports are all free.
func freeOffset(t *testing.T) int {
	t.Helper()
	for range 50 {
		off := 10000 + rand.IntN(1500)*10
		ok := true
		for n := 1; n <= 3 && ok; n++ {
			for _, p := range []int{7000 + 10*n, 7001 + 10*n, 8080 + n, 8440 + n, 9090 + n} {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+off))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return off
		}
	}
	t.Fatal("no free port range for the dev cluster")
	return 0
}

func startDevCluster(t *testing.T, dir string, offset int) *devCluster {
	t.Helper()
	edged, edgectl := binaries(t)
	c := &devCluster{t: t, up: make(chan struct{}), exited: make(chan struct{})}
	c.cmd = exec.Command("bash", filepath.Join("..", "scripts", "dev-cluster.sh"))
	c.cmd.Env = append(os.Environ(),
		"DEV_CLUSTER_DIR="+dir,
		"DEV_CLUSTER_PORT_OFFSET="+strconv.Itoa(offset),
		"EDGED="+edged, "EDGECTL="+edgectl,
	)
	// Its own process group, so that a failed test can still stop every
	// node the script started.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	c.cmd.Stdout, c.cmd.Stderr = pw, pw
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		c.err = c.cmd.Wait()
		pw.Close()
		<-scanned // every line the script printed is in c.out
		close(c.exited)
	}()
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			c.mu.Lock()
			c.out.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			// The last line of the script's banner: what it printed
			// since "Edge dev cluster is up" (the edgectl settings) is
			// in c.out once this line is.
			if strings.HasPrefix(sc.Text(), "Ctrl-C stops all three nodes") {
				once.Do(func() { close(c.up) })
			}
		}
		io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
			return
		default:
		}
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.exited:
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.exited
		}
	})
	select {
	case <-c.up:
	case <-c.exited:
		t.Fatalf("dev-cluster.sh exited before the cluster was up (%v):\n%s", c.err, c.output())
	case <-time.After(90 * time.Second):
		t.Fatalf("dev-cluster.sh: no cluster after 90s:\n%s\n%s", c.output(), nodeLogs(dir))
	}
	return c
}

func (c *devCluster) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// stop is Ctrl-C: the script must stop all three nodes and exit with
// status 0 (make prints no error for the normal way to stop it).
func (c *devCluster) stop() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-c.exited:
	case <-time.After(60 * time.Second):
		c.t.Fatalf("dev-cluster.sh did not stop within 60s of SIGINT:\n%s", c.output())
	}
	if c.err != nil {
		c.t.Errorf("dev-cluster.sh exited with %v after Ctrl-C, want status 0:\n%s", c.err, c.output())
	}
	if !strings.Contains(c.output(), "dev-cluster: stopped") {
		c.t.Errorf("no stop message:\n%s", c.output())
	}
}

func nodeLogs(dir string) string {
	var b strings.Builder
	for n := 1; n <= 3; n++ {
		l, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d", n), "edged.log"))
		if len(l) > 3000 {
			l = l[len(l)-3000:]
		}
		fmt.Fprintf(&b, "--- node%d ---\n%s\n", n, l)
	}
	return b.String()
}

// exportedValue finds a `export NAME=value` line the script printed.
func exportedValue(t *testing.T, out, name string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "export "+name+"="); ok {
			return v
		}
	}
	t.Fatalf("the script did not print export %s=...:\n%s", name, out)
	return ""
}

func ctl(t *testing.T, server, tokenFile string, args ...string) string {
	t.Helper()
	_, edgectl := binaries(t)
	cmd := exec.Command(edgectl, append([]string{"--server", server, "--token-file", tokenFile, "--timeout", "10s"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("edgectl %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestDevClusterScript runs scripts/dev-cluster.sh as a person would: the
// cluster forms with three voters, the printed edgectl settings work, it
// serves traffic and metrics, Ctrl-C stops every node, and running it again
// brings the same cluster back with its state.
func TestDevClusterScript(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three edged processes; skipped with -short")
	}
	dir := filepath.Join(t.TempDir(), "dev-cluster")
	off := freeOffset(t)
	c := startDevCluster(t, dir, off)

	out := c.output()
	servers := exportedValue(t, out, "EDGECTL_SERVER")
	tokenFile := exportedValue(t, out, "EDGECTL_TOKEN_FILE")
	if len(strings.Split(servers, ",")) != 3 {
		t.Fatalf("EDGECTL_SERVER=%s, want three admin addresses", servers)
	}
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("token file %s: %v, mode %v; want private", tokenFile, err, fi.Mode())
	}

	var st struct {
		Leader  string `json:"leader"`
		Members []struct {
			ID       string `json:"id"`
			Suffrage string `json:"suffrage"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(ctl(t, servers, tokenFile, "cluster", "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Leader == "" || len(st.Members) != 3 {
		t.Fatalf("cluster status: %+v, want a leader and 3 members", st)
	}
	for _, m := range st.Members {
		if m.Suffrage != "voter" {
			t.Errorf("member %s is a %s, want three voters", m.ID, m.Suffrage)
		}
	}

	// Traffic through a node that is not the one the tenant was added on.
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("hello from the origin\n"))
	}))
	defer origin.Close()
	ctl(t, strings.Split(servers, ",")[0], tokenFile, "tenant", "add", "shop.localhost", "--origin", origin.URL)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", 8082+off)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", 9092+off)
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+httpAddr+"/", nil)
		req.Host = "shop.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(body) == "hello from the origin\n" {
				break
			}
			err = fmt.Errorf("status %d, body %q", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET via node2: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Every metric the dashboard shows is exported by a running node, or
	// is marked planned.
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	exposed, err := exposedMetrics(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for title, ms := range loadDashboard(t).metricsOf(t) {
		for _, m := range ms {
			switch {
			case plannedMetrics[m] && exposed[m]:
				t.Errorf("%s is exported now: drop it from plannedMetrics and the PLANNED notes in the dashboard", m)
			case !plannedMetrics[m] && !exposed[m] && conditionalMetrics[m] == "":
				t.Errorf("dashboard panel %q uses %s, which edged does not export", title, m)
			}
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(strings.TrimSuffix(metricsURL, "/metrics") + p)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("GET %s: %v %v", p, err, resp)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}

	failover(t, c, servers, tokenFile, origin.URL)

	c.stop()
	for _, s := range strings.Split(servers, ",") {
		if listening(s) {
			t.Errorf("%s still answers after Ctrl-C", s)
		}
	}

	// Again, with the same data: no bootstrap, the tenant is still there.
	c = startDevCluster(t, dir, off)
	if got := exportedValue(t, c.output(), "EDGECTL_TOKEN_FILE"); got != tokenFile {
		t.Errorf("second run uses token file %s, first %s", got, tokenFile)
	}
	if out := ctl(t, servers, tokenFile, "tenant", "get", "shop.localhost", "-o", "json"); !strings.Contains(out, origin.URL) {
		t.Errorf("after a restart the tenant is gone or changed: %s", out)
	}
	bootstraps := 0
	for n := 1; n <= 3; n++ {
		l, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d", n), "edged.log"))
		bootstraps += strings.Count(string(l), `"msg":"bootstrapped cluster"`)
	}
	if bootstraps != 1 {
		t.Errorf("%d bootstraps over two runs, want exactly 1:\n%s", bootstraps, nodeLogs(dir))
	}
	c.stop()
}

// failover rehearses what docs/operations.md suggests: kill -9 the leader;
// the script keeps the other two running, they elect a leader and take
// writes, the script prints how to restart the node, and the printed
// command brings it back, caught up.
func failover(t *testing.T, c *devCluster, servers, tokenFile, originURL string) {
	t.Helper()
	admins := strings.Split(servers, ",")
	var st struct {
		Leader  string `json:"leader"`
		Members []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(ctl(t, servers, tokenFile, "cluster", "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimPrefix(st.Leader, "node"))
	if err != nil || n < 1 || n > 3 {
		t.Fatalf("leader %q is not node1..node3", st.Leader)
	}
	pid := 0
	for _, f := range strings.Fields(strings.TrimPrefix(lineWithPrefix(t, c.output(), "PIDs:"), "PIDs:")) {
		if v, ok := strings.CutPrefix(f, fmt.Sprintf("node%d=", n)); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid == 0 {
		t.Fatalf("the script printed no PID for node%d:\n%s", n, c.output())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var others []string
	for i, a := range admins {
		if i+1 != n {
			others = append(others, a)
		}
	}

	// The script says so and how to restart it, and keeps running.
	var restart string
	testkit.EventuallyNil(t, 10*time.Second, func() error {
		out := c.output()
		if !strings.Contains(out, fmt.Sprintf("dev-cluster: node%d exited", n)) {
			return fmt.Errorf("no exit report for node%d:\n%s", n, out)
		}
		_, after, ok := strings.Cut(out, fmt.Sprintf("restart node%d with: ", n))
		if !ok {
			return fmt.Errorf("no restart hint for node%d:\n%s", n, out)
		}
		restart, _, _ = strings.Cut(after, "\n")
		return nil
	})
	if !strings.HasSuffix(restart, fmt.Sprintf("--restart %d", n)) {
		t.Errorf("restart hint %q, want a --restart %d command line", restart, n)
	}
	select {
	case <-c.exited:
		t.Fatalf("dev-cluster.sh exited when node%d did (%v):\n%s", n, c.err, c.output())
	default:
	}

	// The other two elect a leader and take a write.
	testkit.EventuallyNil(t, 20*time.Second, func() error {
		_, edgectl := binaries(t)
		out, err := exec.Command(edgectl, "--server", strings.Join(others, ","), "--token-file", tokenFile, "--timeout", "3s",
			"tenant", "add", "failover.localhost", "--origin", originURL).CombinedOutput()
		if err != nil {
			return fmt.Errorf("tenant add with node%d down: %v: %s", n, err, out)
		}
		return nil
	})
	for _, a := range others {
		if !listening(a) {
			t.Errorf("%s stopped answering when node%d was killed", a, n)
		}
	}

	// The printed command starts it again; it rejoins and catches up.
	cmd := exec.Command("bash", "-c", restart)
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(45 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not return within 45s: %s", restart, out)
	}
	if err != nil {
		t.Fatalf("%s: %v: %s\n%s", restart, err, out, nodeLogs(filepath.Dir(tokenFile)))
	}
	testkit.EventuallyNil(t, 30*time.Second, func() error {
		_, edgectl := binaries(t)
		out, err := exec.Command(edgectl, "--server", admins[n-1], "--token-file", tokenFile, "--timeout", "3s",
			"tenant", "get", "failover.localhost", "--local", "-o", "json").CombinedOutput()
		if err != nil || !strings.Contains(string(out), originURL) {
			return fmt.Errorf("node%d after the restart: %v: %s", n, err, out)
		}
		return nil
	})
	if !strings.Contains(c.output(), fmt.Sprintf("dev-cluster: node%d started again", n)) {
		t.Errorf("the script did not report node%d started again:\n%s", n, c.output())
	}
}

func lineWithPrefix(t *testing.T, out, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("no line starting with %q:\n%s", prefix, out)
	return ""
}
