package node

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/proxy/transform"
	"github.com/edgeproxy/edge/raftstore"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// tenantService implements edgev1.TenantService. Writes are validated
// here, before they are proposed, so a bad request never enters the log.
type tenantService struct {
	edgev1.UnimplementedTenantServiceServer
	n *Node
}

func (s *tenantService) write(ctx context.Context, t raftstore.CommandType, payload any) (*raftstore.Result, error) {
	cmd, err := raftstore.NewCommand(t, requestID(ctx), time.Now(), payload)
	if err != nil {
		return nil, grpcError(err)
	}
	cmd.Actor = actor(ctx)
	r, err := s.n.apply(ctx, cmd)
	if err != nil {
		return nil, grpcError(err)
	}
	return r, nil
}

func (s *tenantService) Add(ctx context.Context, req *edgev1.AddTenantRequest) (*edgev1.TenantResponse, error) {
	if req.GetTenant() == nil {
		return nil, status.Error(codes.InvalidArgument, "tenant: required")
	}
	t := tenantFromProto(req.GetTenant())
	if t.Transform != "" {
		canonical, err := canonicalRules(t.Transform)
		if err != nil {
			return nil, err
		}
		t.Transform = canonical
	}
	if err := tenantcfg.Validate(t); err != nil {
		return nil, grpcError(err)
	}
	typ := raftstore.CmdTenantAdd
	if t.EarlyHints { // a level-2 field: the leader waits for every member to know it
		typ = raftstore.CmdTenantAddV2
	}
	r, err := s.write(ctx, typ, t)
	if err != nil {
		return nil, err
	}
	return &edgev1.TenantResponse{Tenant: tenantToProto(r.Tenant, time.Now())}, nil
}

// domainArg normalises a domain given by a client the same way stored
// domains are normalised, so `tenant get SHOP.example.` finds shop.example.
func domainArg(d string) (string, error) {
	n, err := tenantcfg.NormalizeDomain("domain", d)
	if err != nil {
		return "", grpcError(err)
	}
	return n, nil
}

func (s *tenantService) Get(ctx context.Context, req *edgev1.GetTenantRequest) (*edgev1.TenantResponse, error) {
	d, err := domainArg(req.GetDomain())
	if err != nil {
		return nil, err
	}
	if err := s.n.readBarrier(ctx, req.GetConsistency()); err != nil {
		return nil, grpcError(err)
	}
	t := s.n.store.View().Tenant(d)
	if t == nil {
		return nil, status.Errorf(codes.NotFound, "tenant %s not found", d)
	}
	return &edgev1.TenantResponse{Tenant: tenantToProto(t, time.Now())}, nil
}

func (s *tenantService) List(ctx context.Context, req *edgev1.ListTenantsRequest) (*edgev1.ListTenantsResponse, error) {
	if req.GetLimit() < 0 {
		return nil, status.Error(codes.InvalidArgument, "limit: must not be negative")
	}
	f, err := listFilterFromProto(req)
	if err != nil {
		return nil, err
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		if after, err = f.decodeToken(tok); err != nil {
			return nil, err
		}
	}
	if err := s.n.readBarrier(ctx, req.GetConsistency()); err != nil {
		return nil, grpcError(err)
	}
	v := s.n.store.View()
	now := time.Now()
	limit := int(req.GetLimit())
	resp := &edgev1.ListTenantsResponse{Index: v.Index(), Paging: listPagingVersion}
	for _, t := range v.Tenants(after, 0) {
		if !f.match(t, now) {
			continue
		}
		if limit > 0 && len(resp.Tenants) == limit {
			resp.NextPageToken = f.token(resp.Tenants[limit-1].GetDomain())
			break
		}
		resp.Tenants = append(resp.Tenants, tenantToProto(t, now))
	}
	return resp, nil
}

func (s *tenantService) Update(ctx context.Context, req *edgev1.UpdateTenantRequest) (*edgev1.TenantResponse, error) {
	d, err := domainArg(req.GetDomain())
	if err != nil {
		return nil, err
	}
	p := patchFromProto(req.GetPatch())
	if p.Transform != nil && *p.Transform != "" {
		canonical, err := canonicalRules(*p.Transform)
		if err != nil {
			return nil, err
		}
		p.Transform = &canonical
	}
	// Validate the patch against the local copy first; the state machine
	// validates again against the state it applies to.
	if cur := s.n.store.View().Tenant(d); cur != nil && cur.Domain == d {
		if err := tenantcfg.Validate(tenantcfg.ApplyPatch(cur, &p)); err != nil {
			return nil, grpcError(err)
		}
	}
	typ := raftstore.CmdTenantUpdate
	if p.NeedsProtocol2() {
		typ = raftstore.CmdTenantUpdateV2
	}
	r, err := s.write(ctx, typ, raftstore.TenantUpdate{Domain: d, ExpectIndex: req.GetExpectIndex(), Patch: p})
	if err != nil {
		return nil, err
	}
	return &edgev1.TenantResponse{Tenant: tenantToProto(r.Tenant, time.Now())}, nil
}

func (s *tenantService) setSuspended(ctx context.Context, domain string, suspended bool) (*edgev1.TenantResponse, error) {
	d, err := domainArg(domain)
	if err != nil {
		return nil, err
	}
	r, err := s.write(ctx, raftstore.CmdTenantUpdate, raftstore.TenantUpdate{Domain: d, Patch: tenantcfg.Patch{Suspended: &suspended}})
	if err != nil {
		return nil, err
	}
	return &edgev1.TenantResponse{Tenant: tenantToProto(r.Tenant, time.Now())}, nil
}

func (s *tenantService) Suspend(ctx context.Context, req *edgev1.TenantRef) (*edgev1.TenantResponse, error) {
	return s.setSuspended(ctx, req.GetDomain(), true)
}

func (s *tenantService) Resume(ctx context.Context, req *edgev1.TenantRef) (*edgev1.TenantResponse, error) {
	return s.setSuspended(ctx, req.GetDomain(), false)
}

func (s *tenantService) Remove(ctx context.Context, req *edgev1.TenantRef) (*edgev1.RemoveTenantResponse, error) {
	d, err := domainArg(req.GetDomain())
	if err != nil {
		return nil, err
	}
	r, err := s.write(ctx, raftstore.CmdTenantRemove, raftstore.DomainRef{Domain: d})
	if err != nil {
		return nil, err
	}
	return &edgev1.RemoveTenantResponse{Domain: d, Index: r.Index}, nil
}

// canonicalRules parses transform rules as submitted (YAML, see
// docs/transform.md), validates them (size limits, selector syntax…) and
// returns the canonical JSON form that is stored and replicated.
func canonicalRules(src string) (string, error) {
	r, err := transform.ParseRules([]byte(src))
	if err != nil {
		return "", status.Error(codes.InvalidArgument, "transform: "+err.Error())
	}
	b, err := r.Encode()
	if err != nil {
		return "", status.Error(codes.Internal, "transform: "+err.Error())
	}
	return string(b), nil
}
