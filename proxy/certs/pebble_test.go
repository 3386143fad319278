package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// pebbleCA is a running Pebble, the ACME CA's own test server.
type pebbleCA struct {
	dirURL string
	caPEM  []byte         // Pebble's own TLS certificate (for --acme-ca-root)
	roots  *x509.CertPool // roots of the certificates Pebble issues
}

type pebbleOpts struct {
	httpPort, tlsPort int
	dnsAddr           string // -dnsserver; empty uses the system resolver
	alwaysValid       bool
}

func startPebble(t *testing.T, o pebbleOpts) *pebbleCA {
	t.Helper()
	ca := testkit.Pebble(t, testkit.PebbleOptions{HTTPPort: o.httpPort, TLSPort: o.tlsPort, DNSAddr: o.dnsAddr, AlwaysValid: o.alwaysValid})
	return &pebbleCA{dirURL: ca.DirURL, caPEM: ca.CAPEM, roots: ca.Roots}
}

// caCounter counts the requests nodes send to the CA, by kind, and can cut
// one node off (a killed process sends nothing).
type caCounter struct {
	base      http.RoundTripper
	total     atomic.Int64
	newOrders atomic.Int64
}

type countingTransport struct {
	c    *caCounter
	dead atomic.Bool
}

func (ct *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if ct.dead.Load() {
		return nil, fmt.Errorf("node is dead")
	}
	ct.c.total.Add(1)
	if strings.HasSuffix(r.URL.Path, "/order-plz") {
		ct.c.newOrders.Add(1)
	}
	return ct.c.base.RoundTrip(r)
}

func newCACounter(t *testing.T, p *pebbleCA) *caCounter {
	hc, err := acmeHTTPClient(p.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &caCounter{base: hc.Transport}
}

func (c *caCounter) client() (*http.Client, *countingTransport) {
	ct := &countingTransport{c: c}
	return &http.Client{Transport: ct, Timeout: time.Minute}, ct
}

// startDNS answers every A query with 127.0.0.1 over TCP (Pebble's VA asks
// its -dnsserver over TCP), so validation reaches the test's listeners.
func startDNS(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: l, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.IPv4(127, 0, 0, 1)})
			}
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return l.Addr().String()
}

// acmeCluster is n nodes, each with a Manager pointed at Pebble.
type acmeCluster struct {
	*cluster
	nodes []*node
	fwd   *leaderForwarder
	ct    []*countingTransport
	ca    *caCounter
}

func newACMECluster(t *testing.T, n int, p *pebbleCA, cfg Config) *acmeCluster {
	t.Helper()
	c := newCluster(t, n)
	ac := &acmeCluster{cluster: c, fwd: &leaderForwarder{dead: map[int]bool{}}, ca: newCACounter(t, p)}
	for i, s := range c.stores {
		lic := &licenses{s: s}
		hc, ct := ac.ca.client()
		ncfg := cfg
		ncfg.Store, ncfg.Licenses, ncfg.Leadership, ncfg.Forwarder = kvStore{s}, lic, s, ac.fwd
		ncfg.DirectoryURL, ncfg.HTTPClient, ncfg.Email = p.dirURL, hc, "ops@edge.test"
		m, err := New(ncfg)
		if err != nil {
			t.Fatal(err)
		}
		nd := &node{s: s, m: m, lic: lic}
		nd.addr = startTLS(t, m)
		ac.nodes = append(ac.nodes, nd)
		ac.ct = append(ac.ct, ct)
		_ = i
	}
	ac.fwd.nodes = ac.nodes
	return ac
}

// follower returns the index of a live follower other than skip.
func (ac *acmeCluster) follower(skip int) int {
	for i := range ac.nodes {
		if i != skip && !ac.closed[i] && !ac.stores[i].IsLeader() {
			return i
		}
	}
	return -1
}

// challengeServer is a loopback HTTP listener whose handler is set once
// the node it belongs to exists (Pebble needs the port first). It counts
// the validations it answers; gate, if set, runs before each.
type challengeServer struct {
	port int
	hits atomic.Int64
	h    atomic.Pointer[http.Handler]
	gate func()
}

func newChallengeServer(t *testing.T) *challengeServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs := &challengeServer{port: l.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{ErrorLog: discardLog(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			cs.hits.Add(1)
			if cs.gate != nil {
				cs.gate()
			}
		}
		h := cs.h.Load()
		if h == nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		(*h).ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return cs
}

func (cs *challengeServer) serve(m *Manager) {
	h := m.HTTPHandler(nil)
	cs.h.Store(&h)
}

func TestACMELicensedDomainIssuedOnceWithValidationOnFollower(t *testing.T) {
	// The CA validates over HTTP-01 for real: its DNS points the domain at
	// 127.0.0.1 and its httpPort is a follower's HTTP listener.
	cs := newChallengeServer(t)
	p := startPebble(t, pebbleOpts{httpPort: cs.port, dnsAddr: startDNS(t)})
	ac := newACMECluster(t, 3, p, Config{})
	// Under load an election may be under way: wait for a leader, and
	// take the other two as the followers.
	leader := -1
	testkit.Eventually(t, 10*time.Second, "a leader", func() bool { leader = ac.leader(); return leader >= 0 })
	f1, f2 := (leader+1)%3, (leader+2)%3
	cs.serve(ac.nodes[f1].m)
	ac.addTenant(t, "shop.edge.test")

	// Concurrent handshakes on the leader and on the other follower.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		target := ac.nodes[leader]
		if i%2 == 1 {
			target = ac.nodes[f2]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			leaf, err := handshake(target.addr, "shop.edge.test", p.roots)
			if err == nil && leaf.DNSNames[0] != "shop.edge.test" {
				err = fmt.Errorf("served %v", leaf.DNSNames)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
	}
	if n := ac.ca.newOrders.Load(); n != 1 {
		t.Fatalf("the CA received %d new orders, want exactly 1", n)
	}
	if cs.hits.Load() == 0 {
		t.Fatal("the CA's validation never reached the follower")
	}
	if ac.fwd.calls.Load() == 0 {
		t.Fatal("the follower never asked the leader")
	}
	// Every node now serves it from its own replica, the CA untouched.
	before := ac.ca.total.Load()
	for _, n := range ac.nodes {
		if _, err := handshake(n.addr, "shop.edge.test", p.roots); err != nil {
			t.Fatalf("node %s: %v", n.s.ID(), err)
		}
	}
	if ac.ca.total.Load() != before {
		t.Fatal("serving a stored certificate talked to the CA")
	}
	info, err := ac.nodes[f2].m.Get("shop.edge.test")
	if err != nil || info.Status != StatusActive || info.Source != SourceACME || !strings.Contains(info.Issuer, "Pebble") {
		t.Fatalf("Get = %+v, %v", info, err)
	}
	// Challenge tokens are cleaned up.
	testkit.Eventually(t, 5*time.Second, "challenge cleanup", func() bool {
		return len(ac.nodes[leader].m.cfg.Store.Keys(acmePrefix)) == 1 // the account key only
	})

	// A forced renewal places one more order; followers serve the new
	// certificate once they apply it.
	ctx := context.Background()
	renewed, err := ac.nodes[leader].m.Renew(ctx, "shop.edge.test")
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Serial == info.Serial {
		t.Fatal("Renew kept the old certificate")
	}
	if n := ac.ca.newOrders.Load(); n != 2 {
		t.Fatalf("new orders after Renew = %d, want 2", n)
	}
	testkit.Eventually(t, 5*time.Second, "the renewed certificate on a follower", func() bool {
		leaf, err := handshake(ac.nodes[f2].addr, "shop.edge.test", p.roots)
		return err == nil && leaf.SerialNumber.Text(16) == renewed.Serial
	})
}

func TestACMEUnlicensedAndSuspendedNeverReachTheCA(t *testing.T) {
	p := startPebble(t, pebbleOpts{alwaysValid: true})
	ac := newACMECluster(t, 1, p, Config{})
	ac.addTenant(t, "gone.edge.test")
	ac.suspend(t, "gone.edge.test")
	n := ac.nodes[0]
	for _, name := range []string{"stranger.edge.test", "gone.edge.test", "stranger.edge.test"} {
		start := time.Now()
		if _, err := handshake(n.addr, name, p.roots); err == nil {
			t.Fatalf("%s got a certificate", name)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("%s: rejection took %v", name, d)
		}
	}
	if _, err := n.m.Issue(context.Background(), "gone.edge.test"); err == nil {
		t.Fatal("Issue for a suspended tenant succeeded")
	}
	if got := ac.ca.total.Load(); got != 0 {
		t.Fatalf("the CA received %d requests", got)
	}
}

func TestACMELeaderKilledMidOrderCompletesWithOneOrder(t *testing.T) {
	cs := newChallengeServer(t)
	arrived := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	cs.gate = func() {
		once.Do(func() { close(arrived) })
		<-release
	}
	p := startPebble(t, pebbleOpts{httpPort: cs.port, dnsAddr: startDNS(t)})
	ac := newACMECluster(t, 3, p, Config{CheckInterval: 50 * time.Millisecond})
	leader := ac.leader()
	f1 := ac.follower(leader)
	cs.serve(ac.nodes[f1].m)
	ac.addTenant(t, "failover.edge.test")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, n := range ac.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); _ = n.m.Run(ctx) }()
	}

	// A handshake starts the order on the leader...
	go func() { _, _ = handshake(ac.nodes[leader].addr, "failover.edge.test", nil) }()
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the CA never started validating")
	}
	// ...which dies while the CA validates: it never talks again.
	ac.ct[leader].dead.Store(true)
	ac.fwd.mu.Lock()
	ac.fwd.dead[leader] = true
	ac.fwd.mu.Unlock()
	ac.kill(leader)
	close(release)

	testkit.Eventually(t, 20*time.Second, "a new leader", func() bool { return ac.leader() >= 0 })
	nl := ac.leader()
	testkit.Eventually(t, 30*time.Second, "the resumed order to complete", func() bool {
		info, err := ac.nodes[nl].m.Get("failover.edge.test")
		return err == nil && info.Status == StatusActive
	})
	for i, n := range ac.nodes {
		if i == leader {
			continue
		}
		if _, err := handshake(n.addr, "failover.edge.test", p.roots); err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	if n := ac.ca.newOrders.Load(); n != 1 {
		t.Fatalf("the CA received %d new orders, want exactly 1", n)
	}
	nm := ac.nodes[nl].m.metrics
	if placed, ok := testutil.ToFloat64(nm.orders.WithLabelValues(orderPlaced)), testutil.ToFloat64(nm.orders.WithLabelValues(orderSuccess)); placed != 0 || ok != 1 {
		t.Fatalf("new leader: placed %v orders and completed %v; want it to resume the old one", placed, ok)
	}
}

func TestACMETLSALPN01AndS3Restore(t *testing.T) {
	// TLS-ALPN-01 validated for real against a follower's TLS listener.
	tlsPort := testkit.FreePort(t)
	p := startPebble(t, pebbleOpts{tlsPort: tlsPort, dnsAddr: startDNS(t)})
	endpoint, bucket, ak, sk := testkit.S3(t)
	client := s3.New(s3.Options{
		Region: testkit.S3Region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(ak, sk, ""),
	})
	mirror, err := NewS3Mirror(client, bucket, "")
	if err != nil {
		t.Fatal(err)
	}
	ac := newACMECluster(t, 3, p, Config{Challenge: ChallengeTLSALPN01, Mirror: mirror})
	leader := ac.leader()
	f1 := ac.follower(leader)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)))
	if err != nil {
		t.Fatal(err)
	}
	var alpnHits atomic.Int64
	fm := ac.nodes[f1].m
	cfg := fm.TLSConfig("http/1.1")
	get := cfg.GetCertificate
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(h.SupportedProtos) == 1 && h.SupportedProtos[0] == ALPNProto {
			alpnHits.Add(1)
		}
		return get(h)
	}
	srv := &http.Server{ErrorLog: discardLog(), Handler: http.NotFoundHandler()}
	go func() { _ = srv.Serve(tls.NewListener(l, cfg)) }()
	t.Cleanup(func() { srv.Close() })

	ac.addTenant(t, "alpn.edge.test")
	if _, err := handshake(ac.nodes[leader].addr, "alpn.edge.test", p.roots); err != nil {
		t.Fatal(err)
	}
	if alpnHits.Load() == 0 {
		t.Fatal("the CA's TLS-ALPN-01 validation never reached the follower")
	}
	testkit.Eventually(t, 5*time.Second, "the mirror copy", func() bool {
		keys, err := mirror.List(context.Background())
		return err == nil && len(keys) == 1 && keys[0] == "alpn.edge.test"
	})

	// A fresh, empty cluster restores from the mirror instead of ordering.
	orders := ac.ca.newOrders.Load()
	fresh := newACMECluster(t, 1, p, Config{Mirror: mirror})
	fresh.addTenant(t, "alpn.edge.test")
	fresh.nodes[0].m.Tick(context.Background())
	leaf, err := handshake(fresh.nodes[0].addr, "alpn.edge.test", p.roots)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ac.nodes[leader].m.Get("alpn.edge.test")
	if leaf.SerialNumber.Text(16) != want.Serial {
		t.Fatal("the fresh cluster serves a different certificate")
	}
	if fresh.ca.total.Load() != 0 || ac.ca.newOrders.Load() != orders {
		t.Fatalf("restoring talked to the CA (%d requests)", fresh.ca.total.Load())
	}
}
