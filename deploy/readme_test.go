//go:build unix

package deploy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestREADMETryItRunsAsWritten runs the README's "Try it" block line by
// line, as a new user would paste it, and fails on any line that exits
// non-zero. Two things stand in for the user's machine: `make` runs the
// Makefile's own recipe for the target (with the binaries this test
// built in ./bin, so the build step is not repeated), and after a line
// sent to the background the script waits until the dev node answers, as
// a user reading its log would. Then it checks what the README promises
// of the result: the tenant exists, the suspended tenant gets 403, and the
// status JSON names a leader.
func TestREADMETryItRunsAsWritten(t *testing.T) {
	edged, edgectl := binaries(t)
	for _, addr := range []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:8080", "127.0.0.1:9090"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the README's dev node needs %s, which is taken on this machine: %v", addr, err)
		}
		l.Close()
	}

	lines := readmeBlock(t, "../README.md", "## Try it")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{edged, edgectl} {
		if err := os.Symlink(b, filepath.Join(dir, "bin", filepath.Base(b))); err != nil {
			t.Fatal(err)
		}
	}

	var script strings.Builder
	script.WriteString("set -m\nmake() {\n  case \"$1\" in\n")
	for target, recipe := range makeRecipes(t, "../Makefile") {
		fmt.Fprintf(&script, "  %s) %s ;;\n", target, recipe)
	}
	script.WriteString("  *) echo \"make $1: not in the Makefile\" >&2; return 2 ;;\n  esac\n}\n")
	for i, line := range lines {
		fmt.Fprintf(&script, "echo '::line %d'\n%s\n", i, line)
		if strings.HasSuffix(strings.TrimSpace(stripComment(line)), "&") {
			script.WriteString("for _ in $(seq 150); do bin/edgectl --timeout 1s cluster status >/dev/null 2>&1 && break; sleep 0.2; done\n")
		} else {
			fmt.Fprintf(&script, "echo \"::rc %d $?\"\n", i)
		}
	}
	// The README's promises, checked after its own lines ran.
	script.WriteString(`echo "::tenant $(bin/edgectl tenant get shop.example -o json >/dev/null 2>&1; echo $?)"
echo "::suspended $(curl -s -o /dev/null -w '%{http_code}' -H 'Host: shop.example' http://127.0.0.1:8080/)"
kill %1 2>/dev/null; wait
`)

	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "EDGECTL_SERVER=", "EDGECTL_TOKEN=", "EDGECTL_TOKEN_FILE=")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the README block did not finish in 90 s:\n%s", out)
	}
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}

	got := map[string]string{}
	rcs := map[int]int{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 3 && f[0] == "::rc":
			i, _ := strconv.Atoi(f[1])
			rcs[i], _ = strconv.Atoi(f[2])
		case len(f) == 2 && strings.HasPrefix(f[0], "::"):
			got[f[0]] = f[1]
		}
	}
	for i, line := range lines {
		if rc, ok := rcs[i]; ok && rc != 0 {
			t.Errorf("README line %q exited %d", line, rc)
		}
	}
	if got["::tenant"] != "0" {
		t.Errorf("after the README's lines, shop.example is not a tenant (edgectl tenant get exit %s)", got["::tenant"])
	}
	if got["::suspended"] != "403" {
		t.Errorf("after tenant suspend the README promises 403; got %q", got["::suspended"])
	}
	if !regexp.MustCompile(`"leader"\s*:\s*"dev"`).Match(out) && !strings.Contains(string(out), `"leader": "dev"`) {
		t.Errorf("cluster status -o json names no leader")
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}

// readmeBlock returns the command lines of the first ```sh block after
// heading in the file at path (blank lines dropped).
func readmeBlock(t *testing.T, path, heading string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	inSection, inBlock := false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "## "):
			inSection = l == heading
		case inSection && !inBlock && l == "```sh":
			inBlock = true
		case inBlock && l == "```":
			return lines
		case inBlock && strings.TrimSpace(l) != "":
			lines = append(lines, l)
		}
	}
	t.Fatalf("%s: no ```sh block under %q", path, heading)
	return nil
}

// makeRecipes returns the one-line recipes of the Makefile's targets that
// run something the README uses (run), with the build prerequisite left
// out: the test built the binaries already.
func makeRecipes(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	m := regexp.MustCompile(`(?m)^run:[^\n]*\n\t([^\n]+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: no one-line recipe for run", path)
	}
	out["run"] = string(m[1])
	return out
}

// stripComment drops a shell comment that starts with " #".
func stripComment(line string) string {
	if i := strings.Index(line, " #"); i >= 0 {
		return line[:i]
	}
	return line
}
