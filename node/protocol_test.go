package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgeproxy/edge/raftstore"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// Members publish the protocol level they run, and put their record again
// when it shows another level (as after an upgrade), so the leader's gate
// sees the cluster's level rise. A command the cluster cannot apply is
// refused at once through a follower (not retried until the forward
// deadline), and a log entry no node can decode is counted on every node
// in edge_raft_entries_rejected_total while writes go on.
func TestProtocolLevelsAndRejectedEntries(t *testing.T) {
	nodes := startCluster(t, 3)
	levels := func(want int) func() bool {
		return func() bool {
			for _, n := range nodes {
				for _, m := range n.store.View().Members() {
					if m.Protocol != want {
						return false
					}
				}
			}
			return true
		}
	}
	testkit.Eventually(t, 5*time.Second, "every member record to report this build's protocol", levels(raftstore.Protocol))

	// A record written by an older build (no level) is put again.
	leader := waitLeader(t, nodes)
	f := follower(nodes)
	old := f.selfMember()
	old.Protocol = 0
	if err := leader.putMember(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, f.ID()+" to re-publish its protocol level", levels(raftstore.Protocol))

	// A command type no member knows, proposed through a follower.
	cmd, err := raftstore.NewCommand(raftstore.CommandType(999), "future-1", time.Now(), raftstore.DomainRef{Domain: "x.example"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = f.apply(context.Background(), cmd)
	if !errors.Is(err, raftstore.ErrUnsupportedByCluster) || status.Code(grpcError(err)) != codes.FailedPrecondition {
		t.Fatalf("unknown command through a follower: %v (%v), want ErrUnsupportedByCluster as FailedPrecondition", err, status.Code(grpcError(err)))
	}
	if d := time.Since(start); d > f.Node.cfg.forwardTimeout/2 {
		t.Fatalf("refusal took %v: it was retried", d)
	}

	// Garbage straight into the log: counted on every node, writes go on.
	if err := leader.store.Raft().Apply([]byte("\x00not a command"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if err := leader.putMember(context.Background(), leader.selfMember()); err != nil {
		t.Fatalf("write after a rejected entry: %v", err)
	}
	for _, n := range nodes {
		testkit.Eventually(t, 5*time.Second, n.ID()+" to export one rejected entry", func() bool {
			return rejectedMetric(t, n.Node) == 1
		})
	}
}

// rejectedMetric reads edge_raft_entries_rejected_total from the node's
// registry, as /metrics serves it.
func rejectedMetric(t *testing.T, n *Node) float64 {
	t.Helper()
	mfs, err := n.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "edge_raft_entries_rejected_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("edge_raft_entries_rejected_total is not exported")
	return 0
}
