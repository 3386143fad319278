package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore"
)

// joinLoop gets a node without raft state into a cluster:
//
//   - --bootstrap-expect 1 with no --join: bootstrap alone.
//   - otherwise ask every --join address for its Info. If one of them
//     already knows a leader, ask it to add us (it forwards to the leader).
//   - with --bootstrap-expect N, once N nodes without state are visible
//     (us included), the one with the lowest ID bootstraps a configuration
//     holding all N; the others wait to be contacted by the new leader.
//     Exactly one node bootstraps, even when all start at once, because
//     they all see the same set and pick the same lowest ID.
//
// A node restarted with its data dir already has state: it never
// bootstraps, and normally the leader's heartbeats reach it by themselves.
// But a node may have left the configuration meanwhile — a non-voter
// removes itself on SIGTERM, the reaper or an operator may remove a node —
// and then no leader ever contacts it. So while it hears no leader, it
// asks the --join nodes to add it again (rejoin); a join of a server
// already present with the same address changes nothing.
//
// Every join request carries the node's role (--role): a non-voter is
// added as one, a voter as one while the leader has a free voter slot.
// Once in, keepRole restores a voter that had to join as a non-voter.
func (n *Node) joinLoop(ctx context.Context) {
	n.joinCluster(ctx)
	n.keepRole(ctx)
}

func (n *Node) joinCluster(ctx context.Context) {
	if n.store.HasState() {
		n.logger.Info("existing raft state found; rejoining without bootstrap")
		n.rejoin(ctx)
		return
	}
	self := raft.Server{ID: raft.ServerID(n.cfg.ID), Address: raft.ServerAddress(n.store.Addr()), Suffrage: raft.Voter}
	if n.cfg.BootstrapExpect == 1 && len(n.cfg.Join) == 0 {
		if err := n.store.Bootstrap([]raft.Server{self}); err != nil {
			n.logger.Error("bootstrap failed", "err", err)
			return
		}
		n.logger.Info("bootstrapped a single-node cluster")
		n.restoreNewestBackup(ctx)
		return
	}
	t := time.NewTicker(n.cfg.JoinRetry)
	defer t.Stop()
	lastLog := time.Time{}
	for {
		done, err := n.join(ctx, self, true)
		if done {
			if n.bootstrapped {
				n.restoreNewestBackup(ctx)
			}
			return
		}
		if err != nil && time.Since(lastLog) > 5*time.Second {
			n.logger.Info("waiting to join a cluster", "reason", err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// rejoinGrace is how long a restarted node waits to hear from a leader
// before it asks to be added again: longer than an election with the
// production timings, so that a member that is still in the configuration
// is simply contacted, and short next to a pod's readiness budget.
const rejoinGrace = 3 * time.Second

// rejoin runs on a node restarted with state: once rejoinGrace has passed
// without a leader, it asks the --join nodes that know a leader to add it,
// until one does or a leader reaches it. It never bootstraps.
func (n *Node) rejoin(ctx context.Context) {
	if len(n.cfg.Join) == 0 {
		return
	}
	self := raft.Server{ID: raft.ServerID(n.cfg.ID), Address: raft.ServerAddress(n.store.Addr())}
	wait := time.NewTimer(rejoinGrace)
	defer wait.Stop()
	for logged := false; ; {
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		}
		if _, id := n.store.Leader(); id != "" {
			return
		}
		if !logged {
			n.logger.Info("no leader has contacted this node since it restarted; asking the --join nodes to add it again (it may have left the configuration)")
			logged = true
		}
		if done, _ := n.join(ctx, self, false); done {
			return
		}
		wait.Reset(n.cfg.JoinRetry)
	}
}

// join is one round of joinLoop (mayBootstrap) or of rejoin (not).
func (n *Node) join(ctx context.Context, self raft.Server, mayBootstrap bool) (bool, error) {
	// Someone may have added us meanwhile.
	if _, id := n.store.Leader(); id != "" {
		return true, nil
	}
	type found struct {
		addr string
		info *edgev1.InfoResponse
	}
	var peers []found
	var errs []error
	for _, addr := range n.cfg.Join {
		if addr == n.cfg.AdminAdvertise || addr == n.AdminAddr() {
			continue
		}
		c, err := n.peers.internal(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		ictx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := c.Info(ictx, &edgev1.InfoRequest{})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if info.GetId() == n.cfg.ID {
			continue
		}
		peers = append(peers, found{addr, info})
	}
	for _, p := range peers {
		if p.info.GetLeaderId() == "" {
			continue
		}
		cc, err := n.peers.cluster(p.addr)
		if err != nil {
			continue
		}
		jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		resp, err := cc.Join(jctx, n.joinRequest())
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("join via %s: %w", p.addr, err))
			continue
		}
		n.logger.Info("joined cluster", "via", p.addr, "suffrage", resp.GetSuffrage(), "role", n.role())
		return true, nil
	}
	// A non-voter never bootstraps (validate refuses --bootstrap-expect
	// with it; this is the second lock).
	if n.cfg.BootstrapExpect == 0 || !mayBootstrap || n.cfg.NonVoter {
		return false, errors.Join(append(errs, errors.New("no reachable node knows a leader"))...)
	}
	cands := []raft.Server{self}
	for _, p := range peers {
		if p.info.GetHasState() {
			continue
		}
		cands = append(cands, raft.Server{ID: raft.ServerID(p.info.GetId()), Address: raft.ServerAddress(p.info.GetRaftAddress()), Suffrage: raft.Voter})
	}
	if len(cands) < n.cfg.BootstrapExpect {
		return false, fmt.Errorf("found %d of %d nodes for bootstrap", len(cands), n.cfg.BootstrapExpect)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].ID < cands[j].ID })
	cands = cands[:n.cfg.BootstrapExpect]
	if cands[0].ID != self.ID {
		return false, fmt.Errorf("waiting for %s to bootstrap", cands[0].ID)
	}
	if err := n.store.Bootstrap(cands); err != nil {
		return false, fmt.Errorf("bootstrap: %w", err)
	}
	n.logger.Info("bootstrapped cluster", "voters", len(cands))
	n.bootstrapped = true
	return true, nil
}

// registerLoop keeps this node's admin address and protocol level in the
// replicated member table (so others can forward to it, and the leader
// knows which commands every member can apply: after an upgrade the
// record differs and is put again, which lets the cluster's level rise),
// and, on the leader, applies one
// command at the start of every term: until the leader has applied an
// entry of its own term it cannot serve linearizable reads (see
// leaderReadIndex).
func (n *Node) registerLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, id := n.store.Leader(); id == "" {
			continue
		}
		me := n.selfMember()
		term := n.store.Term()
		leaderNewTerm := n.store.IsLeader() && n.readyTerm.Load() != term
		cur, ok := n.store.View().Member(n.cfg.ID)
		if !leaderNewTerm && ok && cur == me {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.putMember(actx, me)
		cancel()
		if err != nil {
			n.logger.Debug("registering member", "err", err)
			continue
		}
		if leaderNewTerm && n.store.Term() == term {
			n.readyTerm.Store(term)
		}
	}
}

// selfMember is this node's member record.
func (n *Node) selfMember() raftstore.Member {
	return raftstore.Member{ID: n.cfg.ID, RaftAddr: n.store.Addr(), AdminAddr: n.cfg.AdminAdvertise, Protocol: raftstore.Protocol}
}

// leaderReadIndex confirms leadership and returns the commit index that a
// linearizable read must wait for. It refuses until the leader has applied
// an entry of its current term, because only then does its commit index
// cover every write acknowledged by earlier leaders.
func (n *Node) leaderReadIndex() (uint64, error) {
	if !n.store.IsLeader() {
		return 0, raftstore.ErrNotLeader
	}
	if n.readyTerm.Load() != n.store.Term() {
		return 0, fmt.Errorf("%w: leader has not applied an entry of its term yet", raftstore.ErrNotLeader)
	}
	return n.store.ReadIndex()
}

// joinRequest asks to add this node in its configured role.
func (n *Node) joinRequest() *edgev1.JoinRequest {
	return &edgev1.JoinRequest{Id: n.cfg.ID, RaftAddress: n.store.Addr(), AdminAddress: n.cfg.AdminAdvertise, Nonvoter: n.cfg.NonVoter}
}

func (n *Node) role() string {
	if n.cfg.NonVoter {
		return "nonvoter"
	}
	return "voter"
}

// keepRoleEvery is how often a voter held as a non-voter asks the leader
// for a voter slot again.
const keepRoleEvery = 2 * time.Second

// keepRole runs for the node's life once it joined. A --role=voter node
// that the configuration holds as a non-voter (the voters were full when
// it joined, e.g. an unreachable voter was still listed) asks the leader
// to add it again, which promotes it as soon as the voters are fewer than
// the leader's --voters. A --role=nonvoter node held as a voter (its
// role was changed on a running cluster) is only reported: demoting a
// voter changes the quorum, which is an operator's call.
func (n *Node) keepRole(ctx context.Context) {
	t := time.NewTicker(keepRoleEvery)
	defer t.Stop()
	var logged raft.ServerSuffrage = -1
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		suffrage, ok := n.selfSuffrage()
		if !ok || (suffrage == raft.Voter) != n.cfg.NonVoter {
			continue // not in the configuration (rejoin's business), or in the right role
		}
		if n.cfg.NonVoter {
			if logged != suffrage {
				n.logger.Warn("this node is --role=nonvoter but the configuration holds it as a voter; remove it (edgectl cluster remove) and restart it to make it a non-voter", "id", n.cfg.ID)
				logged = suffrage
			}
			continue
		}
		addr, err := n.leaderAdmin()
		if err != nil {
			continue
		}
		c, err := n.peers.cluster(addr)
		if err != nil {
			continue
		}
		jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		resp, err := c.Join(jctx, n.joinRequest())
		cancel()
		switch {
		case err != nil:
			n.logger.Debug("asking for a voter slot", "err", err)
		case resp.GetSuffrage() == "voter":
			n.logger.Info("this --role=voter node is a voter again")
			logged = -1
		case logged != suffrage:
			n.logger.Warn("this node is --role=voter but every voter slot (the leader's --voters) is taken; it serves as a non-voter and asks again until one is free", "id", n.cfg.ID)
			logged = suffrage
		}
	}
}

// selfSuffrage is this node's suffrage in its own copy of the
// configuration; ok is false when the configuration does not list it.
func (n *Node) selfSuffrage() (raft.ServerSuffrage, bool) {
	f := n.store.Raft().GetConfiguration()
	if f.Error() != nil {
		return 0, false
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == n.cfg.ID {
			return srv.Suffrage, true
		}
	}
	return 0, false
}
