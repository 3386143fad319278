package cli

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
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
	// round; the message names the last), plus 200ms+400ms pauses.
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
