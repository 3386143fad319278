package node

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

// Non-voters are read replicas an autoscaler adds and removes. One that
// leaves politely removes itself (leaveIfNonvoter, on SIGTERM); one that
// vanishes is reaped by the leader after ReapNonvotersAfter without an
// answer. Voters are never removed automatically: losing one is a quorum
// matter for an operator (edgectl cluster remove).

// reapLoop runs on every node and acts only while it leads.
func (n *Node) reapLoop(ctx context.Context) {
	if n.cfg.ReapNonvotersAfter <= 0 {
		return
	}
	lastSeen := map[string]time.Time{}
	t := time.NewTicker(n.cfg.ReapNonvotersAfter / 6)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !n.store.IsLeader() {
			clear(lastSeen)
			continue
		}
		f := n.store.Raft().GetConfiguration()
		if f.Error() != nil {
			continue
		}
		now := time.Now()
		present := map[string]bool{}
		for _, srv := range f.Configuration().Servers {
			id := string(srv.ID)
			if srv.Suffrage == raft.Voter || id == n.cfg.ID {
				continue
			}
			present[id] = true
			if _, ok := lastSeen[id]; !ok {
				lastSeen[id] = now // give a new one the full grace period
			}
			if n.pingMember(ctx, id) {
				lastSeen[id] = now
				continue
			}
			if now.Sub(lastSeen[id]) < n.cfg.ReapNonvotersAfter {
				continue
			}
			if err := n.store.Raft().RemoveServer(srv.ID, 0, 10*time.Second).Error(); err != nil {
				n.logger.Warn("reaping unreachable non-voter failed", "id", id, "err", err)
				continue
			}
			n.logger.Warn("removed unreachable non-voter", "id", id, "unreachable_for", now.Sub(lastSeen[id]).Round(time.Second))
			delete(lastSeen, id)
		}
		for id := range lastSeen {
			if !present[id] {
				delete(lastSeen, id)
			}
		}
	}
}

func (n *Node) pingMember(ctx context.Context, id string) bool {
	m, ok := n.store.View().Member(id)
	if !ok || m.AdminAddr == "" {
		return false
	}
	c, err := n.peers.internal(m.AdminAddr)
	if err != nil {
		return false
	}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = c.Info(ictx, &edgev1.InfoRequest{})
	return err == nil
}

// leaveIfNonvoter asks the leader to remove this node when it is a
// non-voter, so scaling down leaves no stale member behind.
func (n *Node) leaveIfNonvoter() {
	f := n.store.Raft().GetConfiguration()
	if f.Error() != nil {
		return
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) != n.cfg.ID || srv.Suffrage == raft.Voter {
			continue
		}
		addr, err := n.leaderAdmin()
		for deadline := time.Now().Add(3 * time.Second); err != nil && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			addr, err = n.leaderAdmin()
		}
		if err != nil {
			n.logger.Warn("non-voter could not leave: no leader", "err", err)
			return
		}
		c, err := n.peers.cluster(addr)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Remove(ctx, &edgev1.RemoveMemberRequest{Id: n.cfg.ID}); err != nil {
			n.logger.Warn("non-voter could not leave the configuration", "err", err)
			return
		}
		n.logger.Info("non-voter left the raft configuration")
	}
}
