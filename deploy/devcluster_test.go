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

// stop is Ctrl-C: the script must stop all three nodes and exit.
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
	if ee, ok := c.err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		c.t.Errorf("dev-cluster.sh exited with %v after Ctrl-C, want status 130", c.err)
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
