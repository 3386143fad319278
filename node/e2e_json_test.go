package node_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// indexLike names the 64-bit fields of edgectl's JSON output.
var indexLike = regexp.MustCompile(`(^|_)(index|term|bytes)$`)

// checkJSON64 fails unless every index-like field in v is a JSON string.
func checkJSON64(t *testing.T, what string, v any, path string) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if indexLike.MatchString(k) {
				if _, ok := e.(string); !ok {
					t.Errorf("%s: %s.%s is %T (%v), want a string", what, path, k, e, e)
				}
			}
			checkJSON64(t, what, e, path+"."+k)
		}
	case []any:
		for _, e := range x {
			checkJSON64(t, what, e, path+"[]")
		}
	}
}

// One convention for -o json across commands: 64-bit integers (indexes,
// terms, sizes) are strings, as protobuf's JSON mapping writes them.
func TestE2EJSONIndexesAreStrings(t *testing.T) {
	c := startE2ECluster(t, 1)
	srv := c.nodes[0].admin
	dir := t.TempDir()
	spec := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(spec, []byte("tenants:\n  - domain: j.example\n    origin: http://127.0.0.1:9\n  - domain: k.example\n    origin: http://127.0.0.1:9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"tenant", "add", "j.example", "--origin", "http://127.0.0.1:9"},
		{"tenant", "get", "j.example"},
		{"tenant", "list"},
		{"tenant", "update", "j.example", "--plan", "pro"},
		{"tenant", "transform", "clear", "j.example"},
		{"tenant", "suspend", "j.example"},
		{"cluster", "status"},
		{"history"},
		{"diff", "-f", spec},
		{"apply", "-f", spec},
		{"cache", "purge", "j.example", "--all"},
		{"snapshot", "save", filepath.Join(dir, "s.snap")},
		{"tenant", "remove", "k.example"},
	} {
		out, errs, code := c.ctl(append([]string{"--server", srv, "-o", "json"}, args...)...)
		if code != 0 && !(args[0] == "diff" && code == 1) {
			t.Fatalf("edgectl %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("edgectl %s -o json: %v: %s", strings.Join(args, " "), err, out)
		}
		checkJSON64(t, strings.Join(args, " "), v, "")
	}

	// "matched" belongs to a dry run; a real purge leaves it out rather
	// than report a misleading "0".
	for _, c2 := range []struct {
		args        []string
		wantMatched bool
	}{
		{[]string{"cache", "purge", "j.example", "--all", "--dry-run"}, true},
		{[]string{"cache", "purge", "j.example", "--all"}, false},
	} {
		out := c.mustCtl(append([]string{"--server", srv, "-o", "json"}, c2.args...)...)
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("edgectl %s: %v: %s", strings.Join(c2.args, " "), err, out)
		}
		if _, ok := v["matched"]; ok != c2.wantMatched {
			t.Errorf("edgectl %s -o json: matched present %v, want %v: %s", strings.Join(c2.args, " "), ok, c2.wantMatched, out)
		}
	}
}
