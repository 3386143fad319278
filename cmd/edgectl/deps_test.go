package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEdgectlLinksNeitherRaftNorProxy keeps the CLI small and portable:
// it speaks the admin API only. The tenant model (raftstore/tenantcfg, a
// leaf) is allowed: edgectl checks apply files with the cluster's own
// validators.
func TestEdgectlLinksNeitherRaftNorProxy(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/edgeproxy/edge/cmd/edgectl").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned too little to be trusted: %v", deps)
	}
	for _, d := range deps {
		for _, banned := range []string{"github.com/hashicorp/raft", "go.etcd.io/bbolt", "github.com/boltdb/bolt", "github.com/edgeproxy/edge/raftstore", "github.com/edgeproxy/edge/proxy", "github.com/edgeproxy/edge/node"} {
			if d == banned || strings.HasPrefix(d, banned+"/") && d != "github.com/edgeproxy/edge/raftstore/tenantcfg" {
				t.Errorf("edgectl links %s", d)
			}
		}
	}
}
