package node

import (
	"io"
	"strings"
	"testing"
	"time"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestRoleIsTheNodesNotTheJoinOrder (issue 18 item 1): a --role=nonvoter
// node never takes a free voter slot, and a --role=voter node held as a
// non-voter (the slots were full when it joined) is promoted as soon as
// one frees, up to the leader's --voters and no further.
func TestRoleIsTheNodesNotTheJoinOrder(t *testing.T) {
	nodes := startCluster(t, 3)
	join := []string{nodes[0].AdminAddr(), nodes[1].AdminAddr(), nodes[2].AdminAddr()}
	leader := leaderNode(nodes)
	if leader == nil {
		t.Fatal("no leader")
	}

	// A read replica and a fourth voter-configured node: the voters are
	// full, so both join as non-voters.
	r := testConfig(t, "replica")
	r.Join, r.NonVoter = join, true
	startNode(t, r)
	v := testConfig(t, "spare")
	v.Join = join
	startNode(t, v)
	testkit.Eventually(t, 10*time.Second, "replica and spare as non-voters", func() bool {
		ids := configIDs(leader)
		return ids["replica"] == "nonvoter" && ids["spare"] == "nonvoter"
	})

	// Free a voter slot: the spare (--role=voter) takes it by itself; the
	// replica, which asked first, stays a non-voter.
	var gone *testNode
	for _, n := range nodes {
		if n != leader {
			gone = n
			break
		}
	}
	cc := edgev1.NewClusterServiceClient(dial(t, leader.AdminAddr(), testToken))
	if _, err := cc.Remove(authCtx(testToken), &edgev1.RemoveMemberRequest{Id: gone.cfg.ID}); err != nil {
		t.Fatal(err)
	}
	gone.stop()
	testkit.Eventually(t, 4*keepRoleEvery+5*time.Second, "the spare to be promoted", func() bool { return configIDs(leader)["spare"] == "voter" })
	// Longer than keepRoleEvery: the replica had its chances to ask.
	time.Sleep(keepRoleEvery + time.Second)
	ids := configIDs(leader)
	voters := 0
	for _, s := range ids {
		if s == "voter" {
			voters++
		}
	}
	if ids["replica"] != "nonvoter" || voters != 3 {
		t.Fatalf("configuration %v: want the replica a non-voter and exactly 3 voters", ids)
	}

	// The safe limit: the removed voter comes back (same ID, fresh data
	// dir) while three voters are listed; it waits as a non-voter rather
	// than make a fourth voter.
	back := gone.cfg
	back.DataDir = t.TempDir()
	back.BootstrapExpect = 0
	testkit.Eventually(t, 10*time.Second, "the removed voter back on its ports", func() bool {
		n, err := New(back)
		if err != nil {
			return false
		}
		n.Close()
		return true
	})
	startNode(t, back)
	testkit.Eventually(t, 10*time.Second, "the removed voter back in the configuration", func() bool { return configIDs(leader)[back.ID] != "" })
	time.Sleep(keepRoleEvery + time.Second)
	if got := configIDs(leader)[back.ID]; got != "nonvoter" {
		t.Fatalf("%s is a %s with three voters listed and --voters=3, want a non-voter", back.ID, got)
	}
}

func TestRoleFlag(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		nonvoter bool
		err      string
	}{
		{nil, false, ""},
		{[]string{"--role=voter"}, false, ""},
		{[]string{"--role=nonvoter"}, true, ""},
		{[]string{"--role=observer"}, false, "want voter or nonvoter"},
	} {
		c, err := ParseFlags(append([]string{"--id=x"}, tc.args...), func(string) string { return "" }, io.Discard)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || c.NonVoter != tc.nonvoter {
			t.Errorf("%v: NonVoter %v, err %v; want %v", tc.args, c.NonVoter, err, tc.nonvoter)
		}
	}
	c := testConfig(t, "x")
	c.NonVoter, c.BootstrapExpect, c.Join = true, 3, []string{"127.0.0.1:1"}
	c.setDefaults()
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "never bootstraps") {
		t.Errorf("--role=nonvoter with --bootstrap-expect: %v, want refused", err)
	}
}

// TestRemovedVoterRestartedOnItsDataIsAVoterAgain: a voter removed while
// down (edgectl cluster remove) and restarted on its own data dir hears no
// leader, asks to be added again (rejoin) in its role, and is a voter
// again; a non-voter that joined while the slot was free stays one.
func TestRemovedVoterRestartedOnItsDataIsAVoterAgain(t *testing.T) {
	nodes := startCluster(t, 3)
	join := []string{nodes[0].AdminAddr(), nodes[1].AdminAddr(), nodes[2].AdminAddr()}
	leader := leaderNode(nodes)
	if leader == nil {
		t.Fatal("no leader")
	}
	var gone *testNode
	for _, n := range nodes {
		if n != leader {
			gone = n
			break
		}
	}
	gone.stop()
	cc := edgev1.NewClusterServiceClient(dial(t, leader.AdminAddr(), testToken))
	if _, err := cc.Remove(authCtx(testToken), &edgev1.RemoveMemberRequest{Id: gone.cfg.ID}); err != nil {
		t.Fatal(err)
	}
	r := testConfig(t, "replica")
	r.Join, r.NonVoter = join, true
	startNode(t, r)
	testkit.Eventually(t, 10*time.Second, "the replica in, as a non-voter", func() bool { return configIDs(leader)["replica"] == "nonvoter" })

	cfg := gone.cfg
	cfg.BootstrapExpect = 0
	testkit.Eventually(t, 10*time.Second, "restart on the same ports and data", func() bool {
		n, err := New(cfg)
		if err != nil {
			return false
		}
		n.Close()
		startNode(t, cfg)
		return true
	})
	testkit.Eventually(t, rejoinGrace+15*time.Second, "the removed voter to be a voter again", func() bool { return configIDs(leader)[cfg.ID] == "voter" })
	if ids := configIDs(leader); ids["replica"] != "nonvoter" {
		t.Fatalf("configuration %v: the replica took a vote", ids)
	}
}
