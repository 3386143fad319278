package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/raftstore"
)

// Cache purges are raft commands: every node applies them to its own cache
// in log order (purgeLoop), and reports the last applied purge index in its
// Info, so the node that proposed a purge can tell the operator when every
// member has applied it.

type cacheService struct {
	edgev1.UnimplementedCacheServiceServer
	n *Node
}

func toCachePurge(r raftstore.PurgeRecord) cache.Purge {
	return cache.Purge{ID: r.ID, Index: r.Index, Tenant: r.Tenant, URLs: r.URLs, Prefixes: r.Prefixes, Tags: r.Tags, All: r.All, Soft: r.Soft}
}

func (s *cacheService) Purge(ctx context.Context, req *edgev1.PurgeRequest) (*edgev1.PurgeResponse, error) {
	n := s.n
	p := raftstore.Purge{URLs: req.GetUrls(), Prefixes: req.GetPrefixes(), Tags: req.GetTags(), All: req.GetAll(), Soft: req.GetSoft()}
	switch {
	case req.GetEverything():
		if req.GetDomain() != "" {
			return nil, status.Error(codes.InvalidArgument, "domain: must be empty with everything (it purges every tenant)")
		}
		if len(p.URLs)+len(p.Prefixes)+len(p.Tags) > 0 {
			return nil, status.Error(codes.InvalidArgument, "everything: cannot be combined with urls, prefixes or tags")
		}
		p.All = true
	default:
		d, err := domainArg(req.GetDomain())
		if err != nil {
			return nil, err
		}
		t := n.store.View().Tenant(d)
		if t == nil {
			return nil, status.Errorf(codes.NotFound, "tenant %s not found", d)
		}
		p.Tenant = t.Domain
	}
	cp := toCachePurge(raftstore.PurgeRecord{Purge: p})
	if err := cp.Validate(); err != nil {
		return nil, status.Error(codes.InvalidArgument, "selector: "+err.Error())
	}
	if req.GetDryRun() {
		var matched int
		if n.cache != nil {
			m, err := n.cache.Match(cp)
			if err != nil {
				return nil, status.Error(codes.InvalidArgument, err.Error())
			}
			matched = m
		}
		m64 := int64(matched)
		return &edgev1.PurgeResponse{DryRun: true, Matched: &m64}, nil
	}
	p.ID = newPurgeID()
	cmd, err := raftstore.NewCommand(raftstore.CmdPurge, requestID(ctx), time.Now(), p)
	if err != nil {
		return nil, grpcError(err)
	}
	cmd.Actor = actor(ctx)
	start := time.Now()
	r, err := n.apply(ctx, cmd)
	if err != nil {
		return nil, grpcError(err)
	}
	wait := time.Duration(req.GetWaitMs()) * time.Millisecond
	if wait <= 0 {
		wait = 10 * time.Second
	}
	resp := n.awaitPurge(ctx, r.Index, wait)
	resp.Id, resp.Index = p.ID, r.Index
	if n.raftMetrics != nil {
		n.raftMetrics.purgeLatency.Observe(time.Since(start).Seconds())
	}
	n.logger.Info("cache purge", "id", p.ID, "tenant", p.Tenant, "index", r.Index, "acknowledged", resp.Acknowledged, "total", resp.Total, "took", time.Since(start))
	return resp, nil
}

func newPurgeID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "prg-" + hex.EncodeToString(b[:])
}

// awaitPurge polls every member until its cache has applied index or the
// wait is over.
func (n *Node) awaitPurge(ctx context.Context, index uint64, wait time.Duration) *edgev1.PurgeResponse {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	f := n.store.Raft().GetConfiguration()
	if f.Error() != nil {
		return &edgev1.PurgeResponse{}
	}
	servers := f.Configuration().Servers
	resp := &edgev1.PurgeResponse{Total: int32(len(servers)), Nodes: make([]*edgev1.PurgeNode, len(servers))}
	var wg sync.WaitGroup
	for i, srv := range servers {
		pn := &edgev1.PurgeNode{Id: string(srv.ID)}
		resp.Nodes[i] = pn
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				idx, err := n.memberPurgeIndex(ctx, pn.Id)
				if err == nil {
					pn.PurgeIndex, pn.Error = idx, ""
					if idx >= index {
						pn.Done = true
						return
					}
				} else {
					pn.Error = err.Error()
				}
				select {
				case <-ctx.Done():
					if pn.Error == "" {
						pn.Error = "not applied before the deadline"
					}
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
	for _, pn := range resp.Nodes {
		if pn.Done {
			resp.Acknowledged++
		}
	}
	return resp
}

func (n *Node) memberPurgeIndex(ctx context.Context, id string) (uint64, error) {
	if id == n.cfg.ID {
		return n.purgeIndex(), nil
	}
	m, ok := n.store.View().Member(id)
	if !ok || m.AdminAddr == "" {
		return 0, errors.New("admin address unknown")
	}
	c, err := n.peers.internal(m.AdminAddr)
	if err != nil {
		return 0, err
	}
	ictx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := c.Info(ictx, &edgev1.InfoRequest{})
	if err != nil {
		return 0, fmt.Errorf("unreachable: %s", status.Convert(err).Message())
	}
	return info.GetPurgeIndex(), nil
}

// purgeIndex is the raft index of the last purge this node's cache
// applied. A node without a cache has nothing to purge: it counts as
// having applied every purge in its view.
func (n *Node) purgeIndex() uint64 {
	if n.cache != nil {
		return n.cache.PurgeIndex()
	}
	ps := n.store.View().Purges(0)
	if len(ps) == 0 {
		return 0
	}
	return ps[len(ps)-1].Index
}

// purgeLoop applies replicated purge records to the local cache, in order,
// off raft's FSM goroutine (a purge may touch Redis and S3). It also
// releases the origin pools of tenants that were removed: their cached
// objects need nothing, since the cache keys on the tenant's OriginIndex
// and a tenant added again gets a new one.
func (n *Node) purgeLoop(ctx context.Context) {
	if n.cache == nil {
		return
	}
	var last, seen uint64
	for {
		v := n.store.View()
		for _, r := range v.Purges(last) {
			p := toCachePurge(r)
			if t := v.Tenant(r.Tenant); t != nil && t.Domain == r.Tenant {
				p.Generation = t.OriginIndex // only for deleting exact URLs eagerly
			}
			if err := n.cache.ApplyPurge(p); err != nil {
				n.logger.Warn("applying cache purge", "id", r.ID, "index", r.Index, "err", err)
			}
			last = r.Index
		}
		if n.dp != nil && v.Index() != seen {
			seen = v.Index()
			if k := n.dp.ups.Prune(n.store); k > 0 {
				n.logger.Info("released origin pools of removed tenants", "tenants", k)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-n.applied:
		}
	}
}

// onApply runs on raft's FSM goroutine after every published view; it
// only signals.
func (n *Node) onApply(*raftstore.View) {
	select {
	case n.applied <- struct{}{}:
	default:
	}
}
