package node

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// A forward that reaches a node which does not lead (it was deposed while
// the call was on its way) is refused with the leader that node knows,
// and the forwarder's next try goes there instead of to the node its own
// raft still names: one hop, not a wait for its raft to catch up.
func TestForwardToNonLeaderFollowsItsHint(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := leaderNode(nodes)
	var a, b *testNode
	for _, n := range nodes {
		if n != leader {
			if a == nil {
				a = n
			} else {
				b = n
			}
		}
	}
	cmd, err := raftstore.NewCommand(raftstore.CmdTenantAdd, "hint-test-1", time.Now(), tenantcfg.Tenant{Domain: "hint.example", License: tenantcfg.License{Status: "active"}, Origin: tenantcfg.Origin{URL: "http://127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Stand in for a stale view: node a forwards to follower b.
	hint := b.Node.cfg.AdminAdvertise
	_, err = a.applyOnce(ctx, enc, a.store.LeaderChanged(), &hint)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("forward to a follower: %v, want FailedPrecondition", err)
	}
	if id, addr := edgev1.LeaderHint(err); id != leader.ID() || addr != leader.Node.cfg.AdminAdvertise {
		t.Fatalf("hint %q at %q, want %q at %q", id, addr, leader.ID(), leader.Node.cfg.AdminAdvertise)
	}
	if hint != leader.Node.cfg.AdminAdvertise {
		t.Fatalf("next try goes to %q, want the leader at %q", hint, leader.Node.cfg.AdminAdvertise)
	}
	if _, err := a.applyOnce(ctx, enc, a.store.LeaderChanged(), &hint); err != nil {
		t.Fatalf("try at the hinted leader: %v", err)
	}
	if leader.store.View().Tenant("hint.example") == nil {
		t.Fatal("the leader does not have the tenant")
	}

	// A read barrier forwarded to a follower is refused the same way.
	hint = b.Node.cfg.AdminAdvertise
	_, err = a.readIndex(ctx, a.store.LeaderChanged(), &hint)
	if id, _ := edgev1.LeaderHint(err); status.Code(err) != codes.FailedPrecondition || id != leader.ID() || hint != leader.Node.cfg.AdminAdvertise {
		t.Fatalf("read index at a follower: %v (hint %q, next try at %q)", err, id, hint)
	}
}
