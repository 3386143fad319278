package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore"
)

// clusterService implements edgev1.ClusterService. Membership changes run
// on the leader; a follower forwards them.
type clusterService struct {
	edgev1.UnimplementedClusterServiceServer
	n *Node
}

func suffrageName(s raft.ServerSuffrage) string {
	if s == raft.Voter {
		return "voter"
	}
	return "nonvoter"
}

func (s *clusterService) Status(ctx context.Context, _ *edgev1.StatusRequest) (*edgev1.StatusResponse, error) {
	n := s.n
	f := n.store.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, grpcError(err)
	}
	_, leader := n.store.Leader()
	servers := f.Configuration().Servers
	resp := &edgev1.StatusResponse{Leader: leader, Members: make([]*edgev1.Member, len(servers))}
	v := n.store.View()
	var wg sync.WaitGroup
	for i, srv := range servers {
		m := &edgev1.Member{Id: string(srv.ID), Address: string(srv.Address), Suffrage: suffrageName(srv.Suffrage), State: "unreachable"}
		resp.Members[i] = m
		if string(srv.ID) == n.cfg.ID {
			info := n.info()
			m.AdminAddress, m.State, m.AppliedIndex, m.LastIndex, m.Term, m.Version = info.AdminAddress, info.State, info.AppliedIndex, info.LastIndex, info.Term, info.Version
			continue
		}
		reg, ok := v.Member(string(srv.ID))
		if !ok || reg.AdminAddr == "" {
			continue
		}
		m.AdminAddress = reg.AdminAddr
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := n.peers.internal(reg.AdminAddr)
			if err != nil {
				return
			}
			ictx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			info, err := c.Info(ictx, &edgev1.InfoRequest{})
			if err != nil {
				return
			}
			// The build version is asked here rather than replicated: it
			// changes with a restart, not with a raft write, and a
			// record in the state would be stale for a member that is
			// down or was rolled back.
			m.State, m.AppliedIndex, m.LastIndex, m.Term, m.Version = info.State, info.AppliedIndex, info.LastIndex, info.Term, info.Version
		}()
	}
	wg.Wait()
	return resp, nil
}

// forward runs fn against the leader's ClusterService when this node does
// not lead.
func (s *clusterService) leaderClient() (edgev1.ClusterServiceClient, error) {
	addr, err := s.n.leaderAdmin()
	if err != nil {
		return nil, grpcError(err)
	}
	return s.n.peers.cluster(addr)
}

func (s *clusterService) Join(ctx context.Context, req *edgev1.JoinRequest) (*edgev1.JoinResponse, error) {
	if req.GetId() == "" || req.GetRaftAddress() == "" {
		return nil, status.Error(codes.InvalidArgument, "id and raft_address: required")
	}
	if !s.n.store.IsLeader() {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.Join(ctx, req)
	}
	suffrage, err := s.n.addServer(req.GetId(), req.GetRaftAddress(), req.GetNonvoter())
	if err != nil {
		return nil, grpcError(err)
	}
	if req.GetAdminAddress() != "" {
		// The joiner's level is not in the request: keep the one it
		// published (registerLoop) rather than reset it to the base.
		m := raftstore.Member{ID: req.GetId(), RaftAddr: req.GetRaftAddress(), AdminAddr: req.GetAdminAddress()}
		if cur, ok := s.n.store.View().Member(m.ID); ok {
			m.Protocol = cur.Protocol
		}
		if err := s.n.putMember(ctx, m); err != nil {
			return nil, grpcError(err)
		}
	}
	return &edgev1.JoinResponse{Suffrage: suffrage}, nil
}

// addServer adds a server to the raft configuration on the leader, in
// the role the joiner asks for: nonvoter joins as a non-voter whatever the
// free slots, so a read replica never takes a voter's place; a voter
// joins as a voter while fewer than cfg.Voters voters are listed (the
// safe limit: every voter beyond the planned set raises the quorum, and
// one that vanishes costs the margin), otherwise as a non-voter that asks
// again (keepRole). A server already present with the same address keeps
// its place (joins are idempotent), except that a non-voter asking to be
// a voter is promoted when a slot is free. A voter asking to be a
// non-voter is left a voter: demoting one is an operator's call.
func (n *Node) addServer(id, addr string, nonvoter bool) (string, error) {
	r := n.store.Raft()
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", err
	}
	voters := 0
	var present *raft.Server
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == id {
			if string(srv.Address) == addr {
				present = &srv
				continue
			}
			if err := r.RemoveServer(srv.ID, 0, 0).Error(); err != nil {
				return "", fmt.Errorf("replace %s: %w", id, err)
			}
			continue
		}
		if srv.Suffrage == raft.Voter {
			voters++
		}
	}
	if present != nil && (present.Suffrage == raft.Voter || nonvoter || voters >= n.cfg.Voters) {
		return suffrageName(present.Suffrage), nil
	}
	if nonvoter || voters >= n.cfg.Voters {
		if err := r.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error(); err != nil {
			return "", fmt.Errorf("add non-voter %s: %w", id, err)
		}
		n.logger.Info("added non-voter", "id", id, "addr", addr, "asked_nonvoter", nonvoter)
		return "nonvoter", nil
	}
	if err := r.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error(); err != nil {
		return "", fmt.Errorf("add voter %s: %w", id, err)
	}
	if present != nil {
		n.logger.Info("promoted non-voter to voter", "id", id, "addr", addr)
	} else {
		n.logger.Info("added voter", "id", id, "addr", addr)
	}
	return "voter", nil
}

func (n *Node) putMember(ctx context.Context, m raftstore.Member) error {
	cmd, err := raftstore.NewCommand(raftstore.CmdMemberPut, "", time.Now(), m)
	if err != nil {
		return err
	}
	_, err = n.apply(ctx, cmd)
	return err
}

func (s *clusterService) Remove(ctx context.Context, req *edgev1.RemoveMemberRequest) (*edgev1.RemoveMemberResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id: required")
	}
	if !s.n.store.IsLeader() {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.Remove(ctx, req)
	}
	r := s.n.store.Raft()
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, grpcError(err)
	}
	found := false
	for _, srv := range f.Configuration().Servers {
		found = found || string(srv.ID) == req.GetId()
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "member %s not found", req.GetId())
	}
	if err := r.RemoveServer(raft.ServerID(req.GetId()), 0, 10*time.Second).Error(); err != nil {
		return nil, grpcError(err)
	}
	cmd, err := raftstore.NewCommand(raftstore.CmdMemberRemove, requestID(ctx), time.Now(), raftstore.MemberRef{ID: req.GetId()})
	if err == nil {
		_, err = s.n.apply(ctx, cmd)
	}
	if err != nil {
		return nil, grpcError(err)
	}
	return &edgev1.RemoveMemberResponse{}, nil
}

func (s *clusterService) TransferLeadership(ctx context.Context, req *edgev1.TransferLeadershipRequest) (*edgev1.TransferLeadershipResponse, error) {
	if !s.n.store.IsLeader() {
		c, err := s.leaderClient()
		if err != nil {
			return nil, err
		}
		return c.TransferLeadership(ctx, req)
	}
	r := s.n.store.Raft()
	var fut raft.Future
	if id := req.GetId(); id != "" {
		if id == s.n.cfg.ID {
			return &edgev1.TransferLeadershipResponse{Leader: id}, nil
		}
		var addr raft.ServerAddress
		cfg := r.GetConfiguration()
		if err := cfg.Error(); err != nil {
			return nil, grpcError(err)
		}
		for _, srv := range cfg.Configuration().Servers {
			if string(srv.ID) == id {
				if srv.Suffrage != raft.Voter {
					return nil, status.Errorf(codes.FailedPrecondition, "member %s is a non-voter and cannot lead", id)
				}
				addr = srv.Address
			}
		}
		if addr == "" {
			return nil, status.Errorf(codes.NotFound, "member %s not found", id)
		}
		fut = r.LeadershipTransferToServer(raft.ServerID(id), addr)
	} else {
		cfg := r.GetConfiguration()
		if err := cfg.Error(); err != nil {
			return nil, grpcError(err)
		}
		others := 0
		for _, srv := range cfg.Configuration().Servers {
			if srv.Suffrage == raft.Voter && string(srv.ID) != s.n.cfg.ID {
				others++
			}
		}
		if others == 0 {
			// raft's own answer is "cannot find peer".
			return nil, status.Error(codes.FailedPrecondition, "no other voter to transfer to")
		}
		fut = r.LeadershipTransfer()
	}
	if err := fut.Error(); err != nil {
		return nil, grpcError(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, id := s.n.store.Leader(); id != "" && id != s.n.cfg.ID {
			return &edgev1.TransferLeadershipResponse{Leader: id}, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil, status.Error(codes.DeadlineExceeded, "leadership transferred but no new leader seen within 5s")
}

// internalService implements the node-to-node calls.
type internalService struct {
	edgev1.UnimplementedInternalServiceServer
	n *Node
}

func (n *Node) info() *edgev1.InfoResponse {
	r := n.store.Raft()
	laddr, lid := n.store.Leader()
	return &edgev1.InfoResponse{
		Id:                n.cfg.ID,
		RaftAddress:       n.store.Addr(),
		AdminAddress:      n.cfg.AdminAdvertise,
		State:             stateName(r.State()),
		HasState:          n.store.HasState(),
		LeaderId:          lid,
		LeaderRaftAddress: laddr,
		AppliedIndex:      n.store.AppliedIndex(),
		LastIndex:         r.LastIndex(),
		Term:              n.store.Term(),
		PurgeIndex:        n.purgeIndex(),
		Version:           n.cfg.Version,
	}
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "shutdown"
}

func (s *internalService) Info(context.Context, *edgev1.InfoRequest) (*edgev1.InfoResponse, error) {
	return s.n.info(), nil
}

func (s *internalService) Apply(ctx context.Context, req *edgev1.ApplyRequest) (*edgev1.ApplyResponse, error) {
	r, err := s.n.store.ApplyEncoded(ctx, req.GetCommand())
	if err != nil {
		if errors.Is(err, raftstore.ErrNotLeader) {
			return nil, s.n.notLeaderError("not the leader")
		}
		if errors.Is(err, raftstore.ErrInvalid) {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	b, err := raftstore.EncodeResult(r)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &edgev1.ApplyResponse{Result: b, Index: r.Index}, nil
}

func (s *internalService) ReadIndex(context.Context, *edgev1.ReadIndexRequest) (*edgev1.ReadIndexResponse, error) {
	idx, err := s.n.leaderReadIndex()
	if err != nil {
		return nil, s.n.notLeaderError(err.Error())
	}
	return &edgev1.ReadIndexResponse{Index: idx}, nil
}
