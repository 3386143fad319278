package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/raftstore/peertls"
	"github.com/edgeproxy/edge/scripts/testkit"

	"github.com/edgeproxy/edge/raftstore"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
	"github.com/hashicorp/raft"
)

// kvStore is the Store the node wires: raftstore's KV space.
type kvStore struct{ s *raftstore.Store }

func (k kvStore) Get(key string) ([]byte, uint64, bool) {
	e, ok := k.s.View().Get(key)
	if !ok {
		return nil, 0, false
	}
	return e.Value, e.Index, true
}

func (k kvStore) Keys(prefix string) []string { return k.s.View().Keys(prefix) }

func (k kvStore) Put(ctx context.Context, key string, value []byte, term uint64) error {
	return k.apply(ctx, raftstore.CmdKVPut, raftstore.KVPut{Key: key, Value: value, Term: term})
}

func (k kvStore) Delete(ctx context.Context, key string, term uint64) error {
	err := k.apply(ctx, raftstore.CmdKVDelete, raftstore.KVDelete{Key: key, Term: term})
	if errors.Is(err, raftstore.ErrNotFound) {
		return nil
	}
	return err
}

func (k kvStore) apply(ctx context.Context, t raftstore.CommandType, p any) error {
	cmd, err := raftstore.NewCommand(t, "", time.Now(), p)
	if err != nil {
		return err
	}
	r, err := k.s.Apply(ctx, cmd)
	if err != nil {
		return err
	}
	if r.Err != nil {
		return r.Err
	}
	return nil
}

// licenses is the node's license check: the tenant table in raftstore.
type licenses struct {
	s     *raftstore.Store
	calls atomic.Int64
}

func (l *licenses) Active(host string) bool {
	l.calls.Add(1)
	t := l.s.Lookup(host)
	return t != nil && t.License.Active(time.Now())
}

// fastTimings are short enough for quick elections, long enough that a
// loaded 2-core machine running the race detector does not lose the leader
// in the middle of an ACME order (100 ms did, about once in three runs).
var fastTimings = raftstore.Timings{
	HeartbeatTimeout:   300 * time.Millisecond,
	ElectionTimeout:    300 * time.Millisecond,
	LeaderLeaseTimeout: 150 * time.Millisecond,
	CommitTimeout:      5 * time.Millisecond,
}

// cluster is n real raftstore nodes on loopback.
type cluster struct {
	stores []*raftstore.Store
	closed []bool
}

func newCluster(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{stores: make([]*raftstore.Store, n), closed: make([]bool, n)}
	var servers []raft.Server
	peerTLS, err := peertls.FromClusterKeys([][]byte{[]byte(peertls.NewKey())})
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.stores {
		s, err := raftstore.Open(raftstore.Config{ID: fmt.Sprintf("n%d", i), DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Timings: fastTimings, RaftLogLevel: "error", PeerTLS: peerTLS})
		if err != nil {
			t.Fatal(err)
		}
		c.stores[i] = s
		servers = append(servers, raft.Server{ID: raft.ServerID(s.ID()), Address: raft.ServerAddress(s.Addr()), Suffrage: raft.Voter})
	}
	t.Cleanup(func() {
		for i, s := range c.stores {
			if !c.closed[i] {
				s.Close()
			}
		}
	})
	if err := c.stores[0].Bootstrap(servers); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "a leader", func() bool { return c.leader() >= 0 })
	return c
}

func (c *cluster) leader() int {
	for i, s := range c.stores {
		if !c.closed[i] && s.IsLeader() {
			return i
		}
	}
	return -1
}

func (c *cluster) kill(i int) {
	c.closed[i] = true
	c.stores[i].Close()
}

func (c *cluster) apply(t testing.TB, typ raftstore.CommandType, p any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	// One request ID for every attempt: a retry after an unknown outcome
	// is not applied twice.
	cmd, err := raftstore.NewCommand(typ, fmt.Sprintf("t-%d", time.Now().UnixNano()), time.Now(), p)
	if err != nil {
		t.Fatal(err)
	}
	for {
		l := c.leader()
		if l >= 0 {
			r, err := c.stores[l].Apply(context.Background(), cmd)
			if err == nil {
				if r.Err != nil {
					t.Fatalf("apply %s: %v", typ, r.Err)
				}
				// Let every live node apply it.
				for i, s := range c.stores {
					if !c.closed[i] {
						testkit.Eventually(t, 5*time.Second, "apply on all nodes", func() bool { return s.AppliedIndex() >= r.Index })
					}
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader to apply %s", typ)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *cluster) addTenant(t testing.TB, domain string) {
	t.Helper()
	c.apply(t, raftstore.CmdTenantAdd, &tenantcfg.Tenant{Domain: domain, License: tenantcfg.License{Status: tenantcfg.LicenseActive}, Origin: tenantcfg.Origin{URL: "http://127.0.0.1:9"}})
}

func (c *cluster) suspend(t *testing.T, domain string) {
	t.Helper()
	yes := true
	c.apply(t, raftstore.CmdTenantUpdate, raftstore.TenantUpdate{Domain: domain, Patch: tenantcfg.Patch{Suspended: &yes}})
}

// node is one Manager over one cluster member.
type node struct {
	s    *raftstore.Store
	m    *Manager
	lic  *licenses
	addr string // TLS listener
}

// leaderForwarder forwards to whichever node currently leads, like the
// node's internal gRPC call would.
type leaderForwarder struct {
	mu    sync.Mutex
	nodes []*node
	dead  map[int]bool
	calls atomic.Int64
}

func (f *leaderForwarder) RequestCertificate(ctx context.Context, host string) error {
	f.calls.Add(1)
	f.mu.Lock()
	var target *Manager
	for i, n := range f.nodes {
		if !f.dead[i] && n.s.IsLeader() {
			target = n.m
		}
	}
	f.mu.Unlock()
	if target == nil {
		return errors.New("no leader")
	}
	return target.Ensure(ctx, host)
}

// startTLS serves handshakes with m on a loopback listener.
func startTLS(t testing.TB, m *Manager) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }), ErrorLog: discardLog()}
	go func() { _ = srv.Serve(tls.NewListener(l, m.TLSConfig("http/1.1"))) }()
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

// handshake dials addr with SNI name and returns the server's leaf.
func handshake(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, InsecureSkipVerify: roots == nil})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func poolOf(t testing.TB, pemBytes []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in PEM")
	}
	return p
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

func helloFor(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{ServerName: name}
}

// len is how many names the negative cache holds (tests only).
func (c *negCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
