package node

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/proxy"
	"github.com/edgeproxy/edge/proxy/transform"
)

type transformService struct {
	edgev1.UnimplementedTransformServiceServer
	n *Node
}

func (s *transformService) Preview(ctx context.Context, req *edgev1.PreviewRequest) (*edgev1.PreviewResponse, error) {
	d, err := domainArg(req.GetDomain())
	if err != nil {
		return nil, err
	}
	ten := s.n.store.View().Tenant(d)
	if ten == nil {
		return nil, status.Errorf(codes.NotFound, "tenant %s not found", d)
	}
	path := req.GetPath()
	if path == "" || path[0] != '/' {
		return nil, status.Error(codes.InvalidArgument, "path: must start with /")
	}
	var rules *transform.Rules
	switch {
	case req.GetRules() != "":
		rules, err = transform.ParseRules([]byte(req.GetRules()))
	case ten.Transform != "":
		rules, err = transform.DecodeRules([]byte(ten.Transform))
	default:
		return nil, status.Errorf(codes.FailedPrecondition, "tenant %s has no transform rules; pass some with -f to try them", d)
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "rules: "+err.Error())
	}
	if s.n.dp == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node runs no proxy (no --http-addr/--https-addr)")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := proxy.Preview(ctx, s.n.dp.ups, ten, rules, req.GetLang(), path)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, "preview: "+err.Error())
	}
	return &edgev1.PreviewResponse{Status: int32(res.Status), ContentType: res.ContentType, Original: res.Original,
		Transformed: res.Transformed, OriginPath: res.OriginPath, RulesVersion: res.RulesVersion}, nil
}
