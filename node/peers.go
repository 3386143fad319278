package node

import (
	"sync"

	"google.golang.org/grpc"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

// peers caches one client connection per admin address of another node.
type peers struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	opts  []grpc.DialOption
}

func newPeers(opts ...grpc.DialOption) *peers {
	return &peers{conns: map[string]*grpc.ClientConn{}, opts: opts}
}

func (p *peers) conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peers) internal(addr string) (edgev1.InternalServiceClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return edgev1.NewInternalServiceClient(c), nil
}

func (p *peers) cluster(addr string) (edgev1.ClusterServiceClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return edgev1.NewClusterServiceClient(c), nil
}

func (p *peers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
}
