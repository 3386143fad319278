package cli

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

func TestAttemptTimeoutDefaults(t *testing.T) {
	for _, c := range []struct {
		timeout, flag, want time.Duration
	}{
		{15 * time.Second, 0, 2 * time.Second}, // the default --timeout
		{3 * time.Second, 0, time.Second},      // a third of a short --timeout
		{15 * time.Second, 5 * time.Second, 5 * time.Second},
		{3 * time.Second, 5 * time.Second, 3 * time.Second}, // never past --timeout
	} {
		g := &globals{timeout: c.timeout, attemptLimit: c.flag}
		if got := g.attemptTimeout(); got != c.want {
			t.Errorf("--timeout %v --attempt-timeout %v: %v, want %v", c.timeout, c.flag, got, c.want)
		}
	}
}

// A listener whose process never accepts stands for a hung node (the
// kernel completes the TCP handshake, nobody answers gRPC's): edgectl
// gives up on it after the attempt deadline and tries the next server
// (here a closed port) instead of waiting out --timeout.
func TestHungServerIsSkippedAfterTheAttemptDeadline(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String()
	closed.Close()

	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Execute(context.Background(), []string{"--server", hung.Addr().String() + "," + dead, "--timeout", "30s", "--attempt-timeout", "300ms", "tenant", "list"},
		&stdout, &stderr, func(string) string { return "" })
	took := time.Since(start)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, stderr.String())
	}
	msg := stderr.String()
	// Three rounds at 300ms, 600ms and 1.2s (the deadline doubles each
	// round; the message names the last), plus two pauses of at most
	// 150ms and 300ms.
	if took > 5*time.Second {
		t.Errorf("took %v: the hung server was waited on past its attempt deadlines", took)
	}
	if !strings.Contains(msg, hung.Addr().String()+": no answer within 1.2s") || !strings.Contains(msg, dead+": dial tcp") {
		t.Errorf("stderr %q: want both servers named with their reasons", msg)
	}
}

func TestNegativeAttemptTimeoutIsAUsageError(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := Execute(context.Background(), []string{"--attempt-timeout", "-1s", "tenant", "list"}, &stdout, &stderr, func(string) string { return "" }); code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, stderr.String())
	}
}

func TestPlainMessageDropsGRPCWording(t *testing.T) {
	in := `no raft leader reachable: rpc error: code = Unavailable desc = forward: rpc error: code = DeadlineExceeded desc = context deadline exceeded`
	got := plainMessage(in)
	if strings.Contains(got, "rpc error") || strings.Contains(got, "code =") || strings.Contains(got, "context deadline exceeded") {
		t.Fatalf("plainMessage(%q) = %q", in, got)
	}
}

// tenantServer is a real gRPC server on loopback whose Add answers with
// add and records the request ID of every call.
type tenantServer struct {
	edgev1.UnimplementedTenantServiceServer
	add func() (*edgev1.TenantResponse, error)

	mu  sync.Mutex
	ids []string
}

func (s *tenantServer) Add(ctx context.Context, req *edgev1.AddTenantRequest) (*edgev1.TenantResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.ids = append(s.ids, strings.Join(md.Get("x-edge-request-id"), ","))
	s.mu.Unlock()
	return s.add()
}

func (s *tenantServer) requestIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

func serveTenants(t *testing.T, s *tenantServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	edgev1.RegisterTenantServiceServer(srv, s)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// A node that cannot serve a write but knows the leader names it in its
// error (edgev1.LeaderHint). edgectl goes there next, ahead of the rest
// of --server, with the same request ID: here past a hung server that
// would otherwise cost the whole 3 s attempt deadline.
func TestLeaderHintIsTriedNext(t *testing.T) {
	leader := &tenantServer{add: func() (*edgev1.TenantResponse, error) {
		return &edgev1.TenantResponse{Tenant: &edgev1.Tenant{Domain: "hint.example"}}, nil
	}}
	leaderAddr := serveTenants(t, leader)
	follower := &tenantServer{add: func() (*edgev1.TenantResponse, error) {
		st := status.New(codes.Unavailable, "no raft leader reachable")
		return nil, edgev1.WithLeaderHint(st, "edge-2", leaderAddr).Err()
	}}
	followerAddr := serveTenants(t, follower)
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()

	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Execute(context.Background(), []string{"--server", followerAddr + "," + hung.Addr().String() + "," + leaderAddr,
		"--timeout", "30s", "--attempt-timeout", "3s", "tenant", "add", "hint.example", "--origin", "http://origin.example"},
		&stdout, &stderr, func(string) string { return "" })
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if took > time.Second {
		t.Errorf("took %v: the hint was not followed at once (the hung server costs 3s)", took)
	}
	f, l := follower.requestIDs(), leader.requestIDs()
	if len(f) != 1 || len(l) != 1 || f[0] == "" || f[0] != l[0] {
		t.Errorf("request IDs: follower %q, leader %q: want one call each with the same ID", f, l)
	}
}

// Two servers that name each other do not keep edgectl going back and
// forth: each hint is followed once, the command ends with the servers'
// reasons, and it ends quickly (the pauses between rounds are short).
func TestLeaderHintsThatLoopAreFollowedOnce(t *testing.T) {
	var aAddr, bAddr string
	a := &tenantServer{add: func() (*edgev1.TenantResponse, error) {
		return nil, edgev1.WithLeaderHint(status.New(codes.Unavailable, "no raft leader reachable"), "b", bAddr).Err()
	}}
	b := &tenantServer{add: func() (*edgev1.TenantResponse, error) {
		return nil, edgev1.WithLeaderHint(status.New(codes.Unavailable, "no raft leader reachable"), "a", aAddr).Err()
	}}
	aAddr, bAddr = serveTenants(t, a), serveTenants(t, b)

	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Execute(context.Background(), []string{"--server", aAddr, "--timeout", "30s", "tenant", "add", "loop.example", "--origin", "http://origin.example"},
		&stdout, &stderr, func(string) string { return "" })
	took := time.Since(start)
	if code == 0 {
		t.Fatal("exit 0, want a failure")
	}
	// Round 1: a, b (a's hint), a (b's hint); rounds 2 and 3: a only,
	// both hints having been followed once.
	if na, nb := len(a.requestIDs()), len(b.requestIDs()); na != 4 || nb != 1 {
		t.Errorf("calls: a %d, b %d; want 4 and 1", na, nb)
	}
	if took > 2*time.Second {
		t.Errorf("took %v", took)
	}
	if !strings.Contains(stderr.String(), "no raft leader reachable") {
		t.Errorf("stderr %q: want the servers' reason", stderr.String())
	}
}
