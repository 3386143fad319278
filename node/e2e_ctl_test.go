package node_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The operator's day with the built binaries: contexts set up once with
// edgectl config, then commands with no connection flags at all, and a
// --watch ended by Ctrl-C (a real SIGINT) that exits 0.
func TestE2EContextsAndWatch(t *testing.T) {
	c := startE2ECluster(t, 1)
	xdg := t.TempDir()
	env := append(os.Environ(), "XDG_CONFIG_HOME="+xdg, "EDGECTL_CONFIG=", "EDGECTL_SERVER=", "EDGECTL_TOKEN_FILE=", "EDGECTL_TOKEN=")
	ctl := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(c.edgectl, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	if out, code := ctl("config", "set-context", "e2e", "--server", c.servers(), "--token-file", c.tokenFile); code != 0 {
		t.Fatalf("set-context: exit %d: %s", code, out)
	}
	if out, code := ctl("config", "use-context", "e2e"); code != 0 {
		t.Fatalf("use-context: exit %d: %s", code, out)
	}
	fi, err := os.Stat(filepath.Join(xdg, "edgectl", "config.yaml"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, mode %v; want 0600", err, fi.Mode())
	}
	if out, code := ctl("tenant", "add", "ctx.example", "--origin", "http://o.example"); code != 0 {
		t.Fatalf("tenant add through the context: exit %d: %s", code, out)
	}

	cmd := exec.Command(c.edgectl, "tenant", "get", "ctx.example", "--watch", "--interval", "100ms", "-o", "json")
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		s := bufio.NewScanner(stdout)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l := <-lines:
			return l
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("no line from the watch: %s", what)
			return ""
		}
	}
	var v struct {
		Domain  string `json:"domain"`
		License struct {
			Plan string `json:"plan"`
		} `json:"license"`
	}
	if err := json.Unmarshal([]byte(next("first answer")), &v); err != nil || v.Domain != "ctx.example" {
		t.Fatalf("first line: %+v, %v", v, err)
	}
	if out, code := ctl("tenant", "update", "ctx.example", "--plan", "gold"); code != 0 {
		t.Fatalf("tenant update: exit %d: %s", code, out)
	}
	if err := json.Unmarshal([]byte(next("the change")), &v); err != nil || v.License.Plan != "gold" {
		t.Fatalf("second line: %+v, %v", v, err)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	for range lines {
	}
	err = cmd.Wait()
	if err != nil {
		t.Errorf("edgectl --watch after SIGINT: %v, want exit 0", err)
	}
	if out, _ := ctl("config", "current-context"); strings.TrimSpace(out) != "e2e" {
		t.Errorf("current-context: %q", out)
	}
}
