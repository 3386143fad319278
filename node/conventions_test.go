package node

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestEveryPackageHasADocComment keeps the package docs (docs/ explains
// why; each package says what it is), and checks that test scaffolding
// (scripts/testkit) stays out of every binary.
func TestEveryPackageHasADocComment(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "github.com/edgeproxy/edge/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Doc        string
			GoFiles    []string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if len(p.GoFiles) == 0 {
			continue
		}
		n++
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
		if isTestSupport(p.ImportPath) {
			continue
		}
		for _, imp := range p.Imports {
			if isTestSupport(imp) {
				t.Errorf("package %s imports test scaffolding (%s) outside its tests", p.ImportPath, imp)
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d packages listed; go list output not understood", n)
	}
}

// isTestSupport reports whether path is one of Edge's packages made for
// tests only: scripts/testkit and packages named like net/http's httptest
// (tenantcfgtest).
func isTestSupport(path string) bool {
	const mod = "github.com/edgeproxy/edge/"
	return strings.HasPrefix(path, mod) && (path == mod+"scripts/testkit" || strings.HasSuffix(path, "test"))
}
