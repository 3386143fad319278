package proxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProxyLinksNoRaftNorBolt keeps the data plane free of the store's
// machinery: it serves from the tenant model (raftstore/tenantcfg, a leaf)
// and reaches the store only through interfaces it declares itself.
func TestProxyLinksNoRaftNorBolt(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/edgeproxy/edge/proxy/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned too little to be trusted: %v", deps)
	}
	for _, d := range deps {
		for _, banned := range []string{"github.com/hashicorp/raft", "github.com/hashicorp/raft-boltdb", "github.com/hashicorp/raft-boltdb/v2",
			"github.com/boltdb/bolt", "go.etcd.io/bbolt", "github.com/edgeproxy/edge/raftstore", "github.com/edgeproxy/edge/node"} {
			if d == banned || strings.HasPrefix(d, banned+"/") && d != "github.com/edgeproxy/edge/raftstore/tenantcfg" {
				t.Errorf("the proxy links %s", d)
				break
			}
		}
	}
}
