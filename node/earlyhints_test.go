package node

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestEarlyHintsWaitsForProtocol2: a tenant write that sets early_hints
// (a field a level-1 build would drop without a word) goes under
// tenant.add.v2 / tenant.update.v2, which the leader refuses while a
// member runs level 1; writes without it go through as before. Once that
// member is gone the same writes succeed and the setting is stored.
func TestEarlyHintsWaitsForProtocol2(t *testing.T) {
	cfg := testConfig(t, "solo")
	cfg.BootstrapExpect = 1
	n := startNode(t, cfg)
	testkit.Eventually(t, 5*time.Second, "leader", func() bool { return n.store.IsLeader() })
	testkit.Eventually(t, 5*time.Second, "member record at this build's level", func() bool {
		m, ok := n.store.View().Member("solo")
		return ok && m.ProtocolLevel() == raftstore.Protocol
	})
	ctx := authCtx(testToken)
	api := edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), testToken))

	// An older build in the configuration (a non-voter nothing listens for).
	if err := n.store.Raft().AddNonvoter("old", raft.ServerAddress("127.0.0.1:1"), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if err := n.putMember(ctx, raftstore.Member{ID: "old", RaftAddr: "127.0.0.1:1", Protocol: raftstore.BaseProtocol}); err != nil {
		t.Fatal(err)
	}

	tenant := func(domain string, hints bool) *edgev1.AddTenantRequest {
		return &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: domain, EarlyHints: hints,
			License: &edgev1.License{Status: "active"}, Origin: &edgev1.Origin{Url: "http://127.0.0.1:9"}}}
	}
	refused := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("%s with a level-1 member: %v, want FailedPrecondition", what, err)
		}
	}
	_, err := api.Add(ctx, tenant("hints.example", true))
	refused("add --early-hints", err)
	if _, err := api.Add(ctx, tenant("plain.example", false)); err != nil {
		t.Fatalf("add without early hints: %v", err)
	}
	on := true
	_, err = api.Update(ctx, &edgev1.UpdateTenantRequest{Domain: "plain.example", Patch: &edgev1.TenantPatch{EarlyHints: &on}})
	refused("update --early-hints", err)
	plan := "pro"
	if _, err := api.Update(ctx, &edgev1.UpdateTenantRequest{Domain: "plain.example", Patch: &edgev1.TenantPatch{Plan: &plan}}); err != nil {
		t.Fatalf("update of another field: %v", err)
	}

	if err := n.store.Raft().RemoveServer("old", 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Add(ctx, tenant("hints.example", true)); err != nil {
		t.Fatalf("add --early-hints on a level-2 cluster: %v", err)
	}
	if _, err := api.Update(ctx, &edgev1.UpdateTenantRequest{Domain: "plain.example", Patch: &edgev1.TenantPatch{EarlyHints: &on}}); err != nil {
		t.Fatalf("update --early-hints on a level-2 cluster: %v", err)
	}
	for _, d := range []string{"hints.example", "plain.example"} {
		if got := n.store.View().Tenant(d); got == nil || !got.EarlyHints {
			t.Fatalf("%s stored as %+v, want early hints on", d, got)
		}
	}
}
