package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/proxy/certs"
	"github.com/edgeproxy/edge/raftstore"
)

// ACMEOptions configure certificate issuance (proxy/certs).
type ACMEOptions struct {
	Directory   string
	Email       string
	CARootFile  string
	Challenge   string
	RenewBefore time.Duration
	Grace       time.Duration
}

// certStore is the certificate manager's view of the replicated KV space:
// reads are local, writes go through the leader, fenced by raft term.
type certStore struct{ n *Node }

var _ certs.Store = certStore{}

func (k certStore) Get(key string) ([]byte, uint64, bool) {
	e, ok := k.n.store.View().Get(key)
	if !ok {
		return nil, 0, false
	}
	return e.Value, e.Index, true
}

func (k certStore) Keys(prefix string) []string { return k.n.store.View().Keys(prefix) }

func (k certStore) Put(ctx context.Context, key string, value []byte, term uint64) error {
	return k.apply(ctx, raftstore.CmdKVPut, raftstore.KVPut{Key: key, Value: value, Term: term})
}

func (k certStore) Delete(ctx context.Context, key string, term uint64) error {
	err := k.apply(ctx, raftstore.CmdKVDelete, raftstore.KVDelete{Key: key, Term: term})
	if errors.Is(err, raftstore.ErrNotFound) {
		return nil
	}
	return err
}

func (k certStore) apply(ctx context.Context, t raftstore.CommandType, p any) error {
	cmd, err := raftstore.NewCommand(t, "", time.Now(), p)
	if err != nil {
		return err
	}
	_, err = k.n.apply(ctx, cmd)
	return err
}

// licenses answers the certificate manager's license check from memory.
type licenses struct{ n *Node }

func (l licenses) Active(host string) bool {
	t := l.n.store.Lookup(host)
	return t != nil && t.License.Active(time.Now())
}

// forwarder sends a follower's certificate need to the leader.
type forwarder struct{ n *Node }

func (f forwarder) RequestCertificate(ctx context.Context, host string) error {
	addr, err := f.n.leaderAdmin()
	if err != nil {
		return err
	}
	c, err := f.n.peers.internal(addr)
	if err != nil {
		return err
	}
	_, err = c.EnsureCertificate(ctx, &edgev1.EnsureCertificateRequest{Host: host})
	return err
}

func (n *Node) newCertManager(reg prometheus.Registerer) (*certs.Manager, error) {
	a := n.cfg.ACME
	cfg := certs.Config{
		Store: certStore{n}, Licenses: licenses{n}, Leadership: n.store, Forwarder: forwarder{n},
		DirectoryURL: a.Directory, Email: a.Email, Challenge: a.Challenge,
		RenewBefore: a.RenewBefore, Grace: a.Grace,
		Logger: n.logger.With("component", "certs"), Registerer: reg,
	}
	if a.CARootFile != "" {
		b, err := os.ReadFile(a.CARootFile)
		if err != nil {
			return nil, fmt.Errorf("--acme-ca-root: %w", err)
		}
		cfg.CARoot = b
	}
	if n.cfg.ProxyOptions.S3Bucket != "" {
		client, err := n.s3Client(context.Background())
		if err != nil {
			return nil, err
		}
		m, err := certs.NewS3Mirror(client, n.cfg.ProxyOptions.S3Bucket, "edge-certs/")
		if err != nil {
			return nil, err
		}
		cfg.Mirror = m
	}
	return certs.New(cfg)
}

func (s *internalService) EnsureCertificate(ctx context.Context, req *edgev1.EnsureCertificateRequest) (*edgev1.EnsureCertificateResponse, error) {
	if s.n.certMgr == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node has no certificate manager")
	}
	if err := s.n.certMgr.Ensure(ctx, req.GetHost()); err != nil {
		return nil, certError(err)
	}
	return &edgev1.EnsureCertificateResponse{}, nil
}

func certError(err error) error {
	switch {
	case errors.Is(err, certs.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, certs.ErrInvalidCertificate):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, certs.ErrNotLicensed):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, certs.ErrBackoff), errors.Is(err, certs.ErrRateLimited):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, certs.ErrNotLeader):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, certs.ErrImported):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return grpcError(err)
}

func certToProto(i certs.Info) *edgev1.Cert {
	return &edgev1.Cert{
		Domain: i.Domain, Source: i.Source, Status: i.Status, LastError: i.LastError, Issuer: i.Issuer,
		NotBefore: ts(i.NotBefore), NotAfter: ts(i.NotAfter), Sans: i.SANs, Serial: i.Serial,
		Failures: int32(i.Failures), RetryAt: ts(i.RetryAt), OrderPending: i.OrderPending,
		InactiveSince: ts(i.InactiveSince), UpdatedAt: ts(i.UpdatedAt), Version: i.Version,
	}
}

// certService implements edgev1.CertService. Reads answer from the local
// replica; issue, renew, import and remove run on the leader (a follower
// forwards them).
type certService struct {
	edgev1.UnimplementedCertServiceServer
	n *Node
}

func (s *certService) mgr() (*certs.Manager, error) {
	if s.n.certMgr == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node has no certificate manager")
	}
	return s.n.certMgr, nil
}

func (s *certService) leader() (edgev1.CertServiceClient, error) {
	addr, err := s.n.leaderAdmin()
	if err != nil {
		return nil, grpcError(err)
	}
	c, err := s.n.peers.conn(addr)
	if err != nil {
		return nil, err
	}
	return edgev1.NewCertServiceClient(c), nil
}

func (s *certService) List(ctx context.Context, req *edgev1.ListCertsRequest) (*edgev1.ListCertsResponse, error) {
	m, err := s.mgr()
	if err != nil {
		return nil, err
	}
	if req.GetExpiringWithinSeconds() < 0 {
		return nil, status.Error(codes.InvalidArgument, "expiring_within_seconds: must not be negative")
	}
	resp := &edgev1.ListCertsResponse{}
	for _, i := range m.List(time.Duration(req.GetExpiringWithinSeconds()) * time.Second) {
		resp.Certs = append(resp.Certs, certToProto(i))
	}
	return resp, nil
}

func (s *certService) Get(ctx context.Context, req *edgev1.CertRef) (*edgev1.Cert, error) {
	m, err := s.mgr()
	if err != nil {
		return nil, err
	}
	i, err := m.Get(req.GetDomain())
	if err != nil {
		return nil, certError(err)
	}
	return certToProto(i), nil
}

func (s *certService) Issue(ctx context.Context, req *edgev1.CertRef) (*edgev1.Cert, error) {
	return s.onLeader(ctx, func(m *certs.Manager) (certs.Info, error) { return m.Issue(ctx, req.GetDomain()) },
		func(c edgev1.CertServiceClient) (*edgev1.Cert, error) { return c.Issue(ctx, req) })
}

func (s *certService) Renew(ctx context.Context, req *edgev1.CertRef) (*edgev1.Cert, error) {
	return s.onLeader(ctx, func(m *certs.Manager) (certs.Info, error) { return m.Renew(ctx, req.GetDomain()) },
		func(c edgev1.CertServiceClient) (*edgev1.Cert, error) { return c.Renew(ctx, req) })
}

func (s *certService) Import(ctx context.Context, req *edgev1.ImportCertRequest) (*edgev1.Cert, error) {
	return s.onLeader(ctx, func(m *certs.Manager) (certs.Info, error) {
		return m.Import(ctx, req.GetDomain(), []byte(req.GetCertPem()), []byte(req.GetKeyPem()))
	}, func(c edgev1.CertServiceClient) (*edgev1.Cert, error) { return c.Import(ctx, req) })
}

func (s *certService) Remove(ctx context.Context, req *edgev1.CertRef) (*edgev1.RemoveCertResponse, error) {
	if !s.n.store.IsLeader() {
		c, err := s.leader()
		if err != nil {
			return nil, err
		}
		return c.Remove(ctx, req)
	}
	m, err := s.mgr()
	if err != nil {
		return nil, err
	}
	if err := m.Remove(ctx, req.GetDomain()); err != nil {
		return nil, certError(err)
	}
	return &edgev1.RemoveCertResponse{Domain: req.GetDomain()}, nil
}

func (s *certService) onLeader(ctx context.Context, local func(*certs.Manager) (certs.Info, error), remote func(edgev1.CertServiceClient) (*edgev1.Cert, error)) (*edgev1.Cert, error) {
	if !s.n.store.IsLeader() {
		c, err := s.leader()
		if err != nil {
			return nil, err
		}
		return remote(c)
	}
	m, err := s.mgr()
	if err != nil {
		return nil, err
	}
	i, err := local(m)
	if err != nil {
		return nil, certError(err)
	}
	return certToProto(i), nil
}
