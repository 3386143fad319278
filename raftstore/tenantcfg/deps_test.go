package tenantcfg

import (
	"os/exec"
	"strings"
	"testing"
)

// TestIsALeaf: the tenant model imports nothing of Edge and nothing but
// the standard library and IDNA, so every side (store, node, proxy,
// edgectl) can use it without linking another's machinery.
func TestIsALeaf(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/edgeproxy/edge/raftstore/tenantcfg").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, d := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(d, "/")
		if !strings.Contains(first, ".") || d == "github.com/edgeproxy/edge/raftstore/tenantcfg" || strings.HasPrefix(d, "golang.org/x/") {
			continue
		}
		t.Errorf("tenantcfg links %s", d)
	}
}
