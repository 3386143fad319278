package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore"
	"github.com/edgeproxy/edge/scripts/testkit"
)

const testToken = "test-token-0123456789abcdef0123456789"

// testClusterKey is the raft credential of every node a test starts.
const testClusterKey = "node-test-cluster-key-0123456789abcdef"

var testTimings = raftstore.Timings{
	HeartbeatTimeout:   100 * time.Millisecond,
	ElectionTimeout:    100 * time.Millisecond,
	LeaderLeaseTimeout: 50 * time.Millisecond,
	CommitTimeout:      5 * time.Millisecond,
}

type testNode struct {
	*Node
	cfg      Config
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// stop cancels the node and waits for Run to return; safe to call twice.
func (tn *testNode) stop() {
	tn.stopOnce.Do(func() {
		tn.cancel()
		<-tn.done
	})
}

func testConfig(t *testing.T, id string) Config {
	return Config{
		ID:          id,
		DataDir:     t.TempDir(),
		RaftAddr:    testkit.FreeAddr(t),
		AdminAddr:   testkit.FreeAddr(t),
		AdminToken:  testToken,
		ClusterKeys: [][]byte{[]byte(testClusterKey)},
		RaftTimings: testTimings,
		Voters:      3,
		Logger:      testLogger(),
		JoinRetry:   50 * time.Millisecond,
	}
}

func startNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("node %s: %v", cfg.ID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{Node: n, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { tn.done <- n.Run(ctx) }()
	t.Cleanup(tn.stop)
	return tn
}

// startCluster starts n nodes at the same moment, all with
// --bootstrap-expect n and the full --join list.
func startCluster(t *testing.T, n int) []*testNode {
	t.Helper()
	cfgs := make([]Config, n)
	var join []string
	for i := range cfgs {
		cfgs[i] = testConfig(t, fmt.Sprintf("node%d", i))
		join = append(join, cfgs[i].AdminAddr)
	}
	nodes := make([]*testNode, n)
	var wg sync.WaitGroup
	for i := range cfgs {
		cfgs[i].Join = join
		cfgs[i].BootstrapExpect = n
		wg.Add(1)
		go func() { defer wg.Done(); nodes[i] = startNode(t, cfgs[i]) }()
	}
	wg.Wait()
	testkit.Eventually(t, 10*time.Second, "all nodes to see one leader and register", func() bool {
		for _, tn := range nodes {
			_, id := tn.store.Leader()
			if id == "" || len(tn.store.View().Members()) < n {
				return false
			}
		}
		return true
	})
	return nodes
}

func dial(t *testing.T, addr, token string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func authCtx(token string) context.Context {
	ctx := context.Background()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return ctx
}

func leaderNode(nodes []*testNode) *testNode {
	for _, n := range nodes {
		if n.store.IsLeader() {
			return n
		}
	}
	return nil
}

// waitLeader returns the leader among nodes, waiting for one: on a loaded
// machine an election may be under way at any moment.
func waitLeader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var l *testNode
	testkit.Eventually(t, 10*time.Second, "a leader", func() bool { l = leaderNode(nodes); return l != nil })
	return l
}

func follower(nodes []*testNode) *testNode {
	for _, n := range nodes {
		if !n.store.IsLeader() {
			return n
		}
	}
	return nil
}

func TestClusterBootstrapsOnceAndForwardsWrites(t *testing.T) {
	nodes := startCluster(t, 3)
	leaders := 0
	for _, n := range nodes {
		if n.store.IsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders, want exactly 1", leaders)
	}

	f := follower(nodes)
	ctx := authCtx(testToken)
	tc := edgev1.NewTenantServiceClient(dial(t, f.AdminAddr(), testToken))
	resp, err := tc.Add(ctx, &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{
		Domain: "Shop.Example", Aliases: []string{"www.shop.example"},
		Origin: &edgev1.Origin{Url: "https://origin.shop.example"},
	}})
	if err != nil {
		t.Fatalf("add through follower: %v", err)
	}
	if resp.GetTenant().GetDomain() != "shop.example" || resp.GetTenant().GetIndex() == 0 {
		t.Fatalf("add returned %+v", resp.GetTenant())
	}
	// A leader-confirmed read on another follower sees the write at once.
	for _, n := range nodes {
		c := edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), testToken))
		got, err := c.Get(ctx, &edgev1.GetTenantRequest{Domain: "www.shop.example"})
		if err != nil || got.GetTenant().GetDomain() != "shop.example" {
			t.Fatalf("%s: consistent get = %v, %v", n.ID(), got, err)
		}
	}
	// Every node's own view gets it too.
	for _, n := range nodes {
		testkit.Eventually(t, 2*time.Second, n.ID()+" local view", func() bool { return n.store.Lookup("shop.example") != nil })
	}

	st, err := edgev1.NewClusterServiceClient(dial(t, f.AdminAddr(), testToken)).Status(ctx, &edgev1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetLeader() == "" || len(st.GetMembers()) != 3 {
		t.Fatalf("status = %v", st)
	}
	for _, m := range st.GetMembers() {
		if m.GetSuffrage() != "voter" || m.GetState() == "unreachable" || m.GetAppliedIndex() == 0 {
			t.Errorf("member %+v", m)
		}
	}
}

func TestAdminAPIRequiresToken(t *testing.T) {
	cfg := testConfig(t, "solo")
	cfg.BootstrapExpect = 1
	n := startNode(t, cfg)
	c := edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), ""))
	for _, tok := range []string{"", "wrong-token"} {
		_, err := c.List(authCtx(tok), &edgev1.ListTenantsRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("token %q: err = %v, want Unauthenticated", tok, err)
		}
	}
	testkit.Eventually(t, 5*time.Second, "leader", func() bool { return n.store.IsLeader() })
	if _, err := c.List(authCtx(testToken), &edgev1.ListTenantsRequest{}); err != nil {
		t.Fatalf("valid token: %v", err)
	}
}

// TestWeakAdminTokenRefused: the base manifests' placeholder, or any
// token shorter than 32 bytes (the node's own or an accepted one), stops
// edged at start with a message that says how to make one.
func TestWeakAdminTokenRefused(t *testing.T) {
	for name, set := range map[string]func(*Config){
		"placeholder":    func(c *Config) { c.AdminToken = "PLACEHOLDER-replace-me-not-a-secret" },
		"short":          func(c *Config) { c.AdminToken = "secret" },
		"short accepted": func(c *Config) { c.AdminTokensAccepted = []string{"old"} },
	} {
		cfg := testConfig(t, "weak")
		set(&cfg)
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), "head -c 32 /dev/urandom") {
			t.Errorf("%s: New = %v, want a refusal saying how to make a token", name, err)
		}
	}
}

func TestDevModeRefusesNonLoopbackWithoutToken(t *testing.T) {
	cfg := testConfig(t, "dev")
	cfg.AdminToken = ""
	cfg.Dev = true
	cfg.AdminAddr = "0.0.0.0:0"
	if _, err := New(cfg); err == nil {
		t.Fatal("--dev without token on 0.0.0.0 was accepted")
	}
	cfg.Dev = false
	cfg.AdminAddr = "127.0.0.1:0"
	if _, err := New(cfg); err == nil {
		t.Fatal("a node without token and without --dev was accepted")
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	cfg := testConfig(t, "solo")
	cfg.BootstrapExpect = 1
	n := startNode(t, cfg)
	testkit.Eventually(t, 5*time.Second, "leader", func() bool { return n.store.IsLeader() })
	ctx := authCtx(testToken)
	c := edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), testToken))
	// A new leader appends a no-op entry just after it is elected: let
	// that land before taking the index the bad requests must not move.
	if err := n.store.Raft().Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	before := n.store.Raft().LastIndex()
	bad := []struct {
		tenant *edgev1.Tenant
		field  string
	}{
		{&edgev1.Tenant{Domain: "not a domain", Origin: &edgev1.Origin{Url: "http://o.example"}}, "domain"},
		{&edgev1.Tenant{Domain: "shop.example", Origin: &edgev1.Origin{Url: "ftp://o.example"}}, "origin.url"},
		{&edgev1.Tenant{Domain: "shop.example", Origin: &edgev1.Origin{Url: "https://o.example", Tls: &edgev1.OriginTLS{CaPem: "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}}}, "origin.tls.ca_pem"},
	}
	for _, b := range bad {
		_, err := c.Add(ctx, &edgev1.AddTenantRequest{Tenant: b.tenant})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), b.field) {
			t.Errorf("add %v: err = %v, want InvalidArgument naming %s", b.tenant.GetDomain(), err, b.field)
		}
	}
	if after := n.store.Raft().LastIndex(); after != before {
		t.Fatalf("invalid requests reached the raft log: index %d → %d", before, after)
	}
	_, err := c.Get(ctx, &edgev1.GetTenantRequest{Domain: "unknown.example"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("get unknown: %v, want NotFound", err)
	}
	_, err = c.Remove(ctx, &edgev1.TenantRef{Domain: "unknown.example"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("remove unknown: %v, want NotFound", err)
	}
	add := func(d string, aliases ...string) error {
		_, err := c.Add(ctx, &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: d, Aliases: aliases, Origin: &edgev1.Origin{Url: "http://o.example"}}})
		return err
	}
	if err := add("shop.example", "www.shop.example"); err != nil {
		t.Fatal(err)
	}
	if err := add("blog.example", "www.shop.example"); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("alias owned by another tenant: %v, want AlreadyExists", err)
	}
}

func TestNodesBeyondVotersJoinAsNonVoters(t *testing.T) {
	a := testConfig(t, "a")
	b := testConfig(t, "b")
	a.Voters, b.Voters = 2, 2
	a.BootstrapExpect, b.BootstrapExpect = 2, 2
	a.Join = []string{a.AdminAddr, b.AdminAddr}
	b.Join = a.Join
	na, nb := startNode(t, a), startNode(t, b)
	testkit.Eventually(t, 10*time.Second, "leader", func() bool { return na.store.IsLeader() || nb.store.IsLeader() })

	c := testConfig(t, "c")
	c.Voters = 2
	c.Join = []string{a.AdminAddr}
	nc := startNode(t, c)
	got := map[string]string{}
	testkit.Eventually(t, 10*time.Second, "c to join and see 3 members", func() bool {
		st, err := edgev1.NewClusterServiceClient(dial(t, nc.AdminAddr(), testToken)).Status(authCtx(testToken), &edgev1.StatusRequest{})
		if err != nil {
			return false
		}
		got = map[string]string{}
		for _, m := range st.GetMembers() {
			got[m.GetId()] = m.GetSuffrage()
		}
		return len(got) == 3
	})
	if got["a"] != "voter" || got["b"] != "voter" || got["c"] != "nonvoter" {
		t.Fatalf("suffrage = %v, want a,b voters and c non-voter", got)
	}
}

func TestRestartKeepsStateWithoutJoinFlags(t *testing.T) {
	cfg := testConfig(t, "solo")
	cfg.BootstrapExpect = 1
	n := startNode(t, cfg)
	testkit.Eventually(t, 5*time.Second, "leader", func() bool { return n.store.IsLeader() })
	c := edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), testToken))
	if _, err := c.Add(authCtx(testToken), &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: "keep.example", Origin: &edgev1.Origin{Url: "http://o.example"}}}); err != nil {
		t.Fatal(err)
	}
	n.stop()

	cfg.BootstrapExpect = 0
	var n2 *testNode
	testkit.Eventually(t, 5*time.Second, "restart on the same ports", func() bool {
		nn, err := New(cfg)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithCancel(context.Background())
		n2 = &testNode{Node: nn, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
		go func() { n2.done <- nn.Run(ctx) }()
		return true
	})
	t.Cleanup(n2.stop)
	testkit.Eventually(t, 5*time.Second, "leader after restart", func() bool { return n2.store.IsLeader() })
	got, err := edgev1.NewTenantServiceClient(dial(t, n2.AdminAddr(), testToken)).Get(authCtx(testToken), &edgev1.GetTenantRequest{Domain: "keep.example"})
	if err != nil || got.GetTenant().GetDomain() != "keep.example" {
		t.Fatalf("after restart: %v, %v", got, err)
	}
}

func TestGracefulLeaderShutdownTransfersLeadership(t *testing.T) {
	nodes := startCluster(t, 3)
	l := waitLeader(t, nodes)
	start := time.Now()
	l.stop()
	var rest []*testNode
	for _, n := range nodes {
		if n != l {
			rest = append(rest, n)
		}
	}
	testkit.Eventually(t, 3*time.Second, "new leader", func() bool { return leaderNode(rest) != nil })
	t.Logf("leader handover on shutdown: %v", time.Since(start))
	c := edgev1.NewTenantServiceClient(dial(t, rest[0].AdminAddr(), testToken))
	if _, err := c.Add(authCtx(testToken), &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: "after.example", Origin: &edgev1.Origin{Url: "http://o.example"}}}); err != nil {
		t.Fatalf("write after the leader left: %v", err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func configIDs(n *testNode) map[string]string {
	out := map[string]string{}
	f := n.store.Raft().GetConfiguration()
	if f.Error() != nil {
		return out
	}
	for _, s := range f.Configuration().Servers {
		out[string(s.ID)] = suffrageName(s.Suffrage)
	}
	return out
}

func TestNonVotersLeaveOnShutdownAndAreReaped(t *testing.T) {
	a := testConfig(t, "a")
	a.Voters, a.BootstrapExpect, a.ReapNonvotersAfter = 1, 1, 600*time.Millisecond
	na := startNode(t, a)
	testkit.Eventually(t, 5*time.Second, "leader", func() bool { return na.store.IsLeader() })

	join := func(id string) *testNode {
		c := testConfig(t, id)
		c.Voters, c.Join, c.ReapNonvotersAfter = 1, []string{a.AdminAddr}, 600*time.Millisecond
		return startNode(t, c)
	}
	nb, nc := join("b"), join("c")
	testkit.Eventually(t, 10*time.Second, "b and c as non-voters", func() bool {
		ids := configIDs(na)
		return ids["b"] == "nonvoter" && ids["c"] == "nonvoter"
	})
	// b leaves by what its own replica says it is, so it must have
	// received the configuration that names it (over the raft port's TLS
	// that takes a few more round trips than the leader's own view).
	testkit.Eventually(t, 10*time.Second, "b to know it is a non-voter", func() bool { return configIDs(nb)["b"] == "nonvoter" })

	// b scales down politely: it removes itself on shutdown.
	nb.stop()
	if ids := configIDs(na); ids["b"] != "" {
		t.Fatalf("b still in the configuration after a graceful stop: %v", ids)
	}
	// b comes back on its data dir (a rolling update, a rescheduled pod):
	// no leader contacts a server that left, so b asks to be added again.
	nb = startNode(t, nb.cfg)
	testkit.Eventually(t, 15*time.Second, "b back as a non-voter that follows the leader", func() bool {
		_, leader := nb.store.Leader()
		return configIDs(na)["b"] == "nonvoter" && leader == "a"
	})
	nb.stop()

	// c vanishes (no goodbye): the leader reaps it after the grace period.
	nc.admin.Stop()
	_ = nc.store.Close()
	testkit.Eventually(t, 10*time.Second, "c to be reaped", func() bool { return configIDs(na)["c"] == "" })
	if ids := configIDs(na); ids["a"] != "voter" {
		t.Fatalf("the voter was touched: %v", ids)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("EDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestRaftAddressesMayBeNames: peers are stored by name and resolved on
// every dial, so a node that comes back under the same name (with any IP)
// rejoins by itself.
func TestRaftAddressesMayBeNames(t *testing.T) {
	cfgs := make([]Config, 3)
	var join []string
	for i := range cfgs {
		cfgs[i] = testConfig(t, fmt.Sprintf("n%d", i))
		_, port, _ := net.SplitHostPort(cfgs[i].RaftAddr)
		cfgs[i].RaftAdvertise = "localhost:" + port
		join = append(join, cfgs[i].AdminAddr)
	}
	nodes := make([]*testNode, 3)
	for i := range cfgs {
		cfgs[i].Join, cfgs[i].BootstrapExpect = join, 3
		nodes[i] = startNode(t, cfgs[i])
	}
	f := waitLeader(t, nodes).store.Raft().GetConfiguration()
	for _, s := range f.Configuration().Servers {
		if !strings.HasPrefix(string(s.Address), "localhost:") {
			t.Fatalf("server %s stored as %s, want its name", s.ID, s.Address)
		}
	}
	// Restart a follower under the same name: it rejoins with no flags.
	fo := follower(nodes)
	fo.stop()
	c := fo.cfg
	c.Join, c.BootstrapExpect = nil, 0
	var again *testNode
	testkit.Eventually(t, 5*time.Second, "restart", func() bool {
		n, err := New(c)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithCancel(context.Background())
		again = &testNode{Node: n, cfg: c, cancel: cancel, done: make(chan error, 1)}
		go func() { again.done <- n.Run(ctx) }()
		return true
	})
	t.Cleanup(again.stop)
	l := waitLeader(t, nodes)
	if _, err := l.apply(context.Background(), addCmd("after-restart.example")); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "restarted node to catch up", func() bool { return again.store.Lookup("after-restart.example") != nil })
}

// TestAdminTokenRotation walks the rotation in docs/operations.md at its
// middle step: node a still sends the old token and accepts the new one,
// node b already sends the new one and accepts the old one. b joins a,
// writes made on either node are forwarded to the leader and applied,
// clients with either token are served, anything else is refused. The
// token file's format (first line the node's own, then accepted ones,
// blanks skipped) is read by ParseFlags.
func TestAdminTokenRotation(t *testing.T) {
	const oldTok, newTok = "old-token-0123456789abcdef0123456789", "new-token-9876543210fedcba9876543210"
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(" "+oldTok+"\n\n"+newTok+" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseFlags([]string{"--id", "x", "--admin-token-file", file}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.AdminToken != oldTok || len(parsed.AdminTokensAccepted) != 1 || parsed.AdminTokensAccepted[0] != newTok {
		t.Fatalf("token file read as own %q, accepted %q", parsed.AdminToken, parsed.AdminTokensAccepted)
	}

	a := testConfig(t, "a")
	a.AdminToken, a.AdminTokensAccepted = oldTok, []string{newTok}
	a.BootstrapExpect, a.Voters = 1, 2
	na := startNode(t, a)
	testkit.Eventually(t, 5*time.Second, "a leads", func() bool { return na.store.IsLeader() })
	b := testConfig(t, "b")
	b.AdminToken, b.AdminTokensAccepted = newTok, []string{oldTok}
	b.Join, b.Voters = []string{a.AdminAddr}, 2
	nb := startNode(t, b)
	testkit.Eventually(t, 10*time.Second, "b to join a", func() bool { return len(na.store.Raft().GetConfiguration().Configuration().Servers) == 2 })

	for i, tc := range []struct {
		node *testNode
		tok  string
	}{{na, oldTok}, {na, newTok}, {nb, oldTok}, {nb, newTok}} {
		c := edgev1.NewTenantServiceClient(dial(t, tc.node.AdminAddr(), tc.tok))
		d := fmt.Sprintf("rot%d.example", i)
		if _, err := c.Add(authCtx(tc.tok), &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: d, Origin: &edgev1.Origin{Url: "http://o.example"}}}); err != nil {
			t.Fatalf("add %s on %s with token %q: %v", d, tc.node.cfg.ID, tc.tok, err)
		}
	}
	for _, n := range []*testNode{na, nb} {
		c := edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), "wrong-token"))
		if _, err := c.List(authCtx("wrong-token"), &edgev1.ListTenantsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("%s with a third token: err = %v, want Unauthenticated", n.cfg.ID, err)
		}
	}
	testkit.Eventually(t, 5*time.Second, "all four tenants on b", func() bool {
		return nb.store.View().Len() == 4
	})
}
