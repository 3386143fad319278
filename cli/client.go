package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

// errAttemptTimeout is the cause of an attempt's context when the
// attempt's own deadline (--attempt-timeout) ran out, as opposed to the
// command's (--timeout).
var errAttemptTimeout = errors.New("attempt deadline exceeded")

// attemptScope says what one attempt's own deadline covers. Connecting is
// always covered: a node that is hung (SIGSTOP, a wedged process) still has
// its kernel accept the TCP connection but never answers gRPC's handshake,
// and waiting on it for the whole --timeout is what issue 15 was about.
type attemptScope int

const (
	// scopeCall: connecting and the whole call. For calls that answer
	// quickly and are safe to send again: reads, and writes that go
	// through the raft log under the command's request ID.
	scopeCall attemptScope = iota
	// scopeFirstResponse: connecting and the first message of a server
	// stream (snapshot save); fn calls started() once it has it, and the
	// rest of the stream runs under --timeout only.
	scopeFirstResponse
	// scopeConnect: connecting only. For calls that legitimately run long
	// (a purge waits for every node, issuing a certificate waits for the
	// CA, a restore streams the whole file, a preview fetches from the
	// origin) or that are not safe to send twice (transfer-leader, member
	// and certificate removal do not go through the request-ID check).
	scopeConnect
)

// call runs fn against the first server that answers, with the attempt
// deadline covering the whole call (scopeCall).
func (g *globals) call(ctx context.Context, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	return g.attempts(ctx, scopeCall, func(ctx context.Context, cc *grpc.ClientConn, _ func()) error { return fn(ctx, cc) })
}

// callLong is call for calls that may legitimately run long or must not be
// sent twice: the attempt deadline covers connecting only (scopeConnect).
func (g *globals) callLong(ctx context.Context, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	return g.attempts(ctx, scopeConnect, func(ctx context.Context, cc *grpc.ClientConn, _ func()) error { return fn(ctx, cc) })
}

// callStream is call for server streams: the attempt deadline covers
// connecting and the first message, which fn reports with started().
func (g *globals) callStream(ctx context.Context, fn func(ctx context.Context, cc *grpc.ClientConn, started func()) error) error {
	return g.attempts(ctx, scopeFirstResponse, fn)
}

// attemptTimeout is --attempt-timeout, or by default the smaller of 2s and
// a third of --timeout (so that at least three servers get a try).
func (g *globals) attemptTimeout() time.Duration {
	if g.attemptLimit > 0 {
		return min(g.attemptLimit, g.timeout)
	}
	return min(2*time.Second, g.timeout/3)
}

// attempts runs fn against the servers in order until one answers. It
// moves to the next server when one is unavailable (down, or without a
// leader) or does not answer within the attempt deadline; the whole list
// is tried up to three times within --timeout, the attempt deadline
// doubling each round so that a server that is slow rather than hung gets
// its answer through. A server that cannot serve the call but knows who
// leads says so (edgev1.LeaderHint): that address is tried next, at once,
// ahead of the rest of the list, and at most once per command. Between
// rounds edgectl pauses briefly (retryPause). Every attempt carries the
// same request ID, so a write retried after an unknown outcome (an
// attempt deadline ran out after the server had proposed it) is applied
// at most once: the state machine answers a repeated ID with the first
// result.
func (g *globals) attempts(ctx context.Context, scope attemptScope, fn func(ctx context.Context, cc *grpc.ClientConn, started func()) error) error {
	servers := splitList(g.servers)
	if len(servers) == 0 {
		return usagef("--server: no address given")
	}
	token, err := g.resolveToken()
	if err != nil {
		return err
	}
	creds, err := g.transportCreds()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	md := metadata.Pairs("x-edge-request-id", newRequestID(), "x-edge-actor", actorName(g.getenv))
	if token != "" {
		md.Append("authorization", "Bearer "+token)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)

	var errs []string
	hinted := map[string]bool{}
	for round := 0; round < 3; round++ {
		errs = errs[:0]
		limit := g.attemptTimeout() << round
		order := slices.Clone(servers)
		for i := 0; i < len(order); i++ {
			addr := order[i]
			err := g.callOne(ctx, addr, creds, scope, limit, fn)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				errs = append(errs, fmt.Sprintf("%s: %s", addr, attemptReason(err)))
				return g.unusable(servers, creds, md, fmt.Errorf("timed out after %v (--timeout): %s", g.timeout, strings.Join(errs, "; ")))
			}
			if errors.Is(err, errAttemptTimeout) {
				errs = append(errs, fmt.Sprintf("%s: no answer within %v", addr, limit))
				continue
			}
			s, _ := status.FromError(err)
			if s.Code() != codes.Unavailable {
				return statusError(err)
			}
			errs = append(errs, fmt.Sprintf("%s: %s", addr, unavailableReason(s.Message())))
			if next := hintedAddr(err, addr, hinted); next != "" {
				order = slices.Insert(order, i+1, next)
			}
		}
		select {
		case <-ctx.Done():
			return g.unusable(servers, creds, md, fmt.Errorf("timed out after %v (--timeout): %s", g.timeout, strings.Join(errs, "; ")))
		case <-time.After(retryPause(round)):
		}
	}
	return g.unusable(servers, creds, md, fmt.Errorf("cannot reach a usable server: %s", strings.Join(errs, "; ")))
}

// hintedAddr is the leader's admin address that err names, when it is not
// the server that answered and has not been followed yet (recorded in
// seen): a hint is worth one attempt, and two servers that name each
// other cannot keep edgectl going back and forth.
func hintedAddr(err error, answered string, seen map[string]bool) string {
	_, addr := edgev1.LeaderHint(err)
	if addr == "" || addr == answered || seen[addr] {
		return ""
	}
	seen[addr] = true
	return addr
}

// retryPause is the pause after a round in which every server was down,
// leaderless or silent: 100 ms, then 200 ms, jittered ±50% so that
// clients that failed together do not come back together. Short, because
// an election takes well under a second and a server that holds a write
// waits for the new leader itself; the rounds' growing attempt deadlines,
// not the pauses, are what give a slow cluster time.
func retryPause(round int) time.Duration {
	d := 100 * time.Millisecond << min(round, 1)
	return d/2 + mathrand.N(d)
}

// transportCreds is plaintext, or TLS when --tls-ca or --tls-cert is set:
// the server is verified against --tls-ca (the system roots without it),
// and --tls-cert/--tls-key are presented as the client certificate that
// edged's --admin-client-ca accepts in place of the token.
func (g *globals) transportCreds() (credentials.TransportCredentials, error) {
	if g.caFile == "" && g.certFile == "" {
		return insecure.NewCredentials(), nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.caFile != "" {
		b, err := os.ReadFile(g.caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificates", g.caFile)
		}
		tc.RootCAs = pool
	}
	if g.certFile != "" {
		cert, err := tls.LoadX509KeyPair(g.certFile, g.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(tc), nil
}

// exitNoLeader is edgectl's exit status when the cluster has no leader
// (quorum lost, or an election that does not finish): writes and
// leader-confirmed reads cannot succeed, --local reads still can.
const exitNoLeader = 3

// unusable explains why no server could answer. Every server being down
// or silent most often means the cluster lost its quorum: the reachable
// nodes accept connections but cannot confirm a leader, and what the
// operator saw was gRPC's wording for the attempts running out. One
// quick local status call (no leader needed) tells that case apart and
// names the unreachable voters; it is bounded by one attempt deadline
// (at most 2s by default) and may run past --timeout by that much.
func (g *globals) unusable(servers []string, creds credentials.TransportCredentials, md metadata.MD, cause error) error {
	ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), md), g.attemptTimeout())
	defer cancel()
	for _, addr := range servers {
		var st *edgev1.StatusResponse
		err := g.callOne(ctx, addr, creds, scopeCall, g.attemptTimeout(), func(ctx context.Context, cc *grpc.ClientConn, _ func()) (err error) {
			st, err = edgev1.NewClusterServiceClient(cc).Status(ctx, &edgev1.StatusRequest{})
			return err
		})
		if err == nil {
			if st.GetLeader() == "" {
				return exitError{exitNoLeader, noLeaderError(st)}
			}
			return cause
		}
		if ctx.Err() != nil {
			break
		}
	}
	return cause
}

// noLeaderError says how many voters a leaderless node can reach.
func noLeaderError(st *edgev1.StatusResponse) error {
	var voters, reachable int
	var down []string
	for _, m := range st.GetMembers() {
		if m.GetSuffrage() != "voter" {
			continue
		}
		voters++
		if m.GetState() == "unreachable" {
			down = append(down, m.GetId())
		} else {
			reachable++
		}
	}
	msg := fmt.Sprintf("no leader: %d of %d voters reachable", reachable, voters)
	if len(down) > 0 {
		msg += " (" + strings.Join(down, ", ") + " unreachable)"
	}
	if reachable*2 > voters {
		msg += ", a majority, so an election should finish shortly"
	}
	return errors.New(msg + "; reads with --local still work")
}

// callOne is one attempt against addr, bounded by limit as scope says. It
// returns an error wrapping errAttemptTimeout when the attempt's own
// deadline ran out (or the server gave up on the deadline it was sent)
// while --timeout still runs.
func (g *globals) callOne(ctx context.Context, addr string, creds credentials.TransportCredentials, scope attemptScope, limit time.Duration, fn func(context.Context, *grpc.ClientConn, func()) error) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer cc.Close()

	var (
		actx    context.Context
		started = func() {}
	)
	if scope == scopeCall {
		// A real deadline, which gRPC sends along: the server stops
		// forwarding to its leader when this client has moved on.
		c, cancel := context.WithDeadlineCause(ctx, time.Now().Add(limit), errAttemptTimeout)
		defer cancel()
		actx = c
	} else {
		c, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		timer := time.AfterFunc(limit, func() { cancel(errAttemptTimeout) })
		defer timer.Stop()
		actx, started = c, func() { timer.Stop() }
	}
	err = waitConnected(actx, cc)
	if err == nil {
		if scope == scopeConnect {
			started()
		}
		err = fn(actx, cc, started)
	}
	if err == nil || ctx.Err() != nil {
		return err
	}
	if errors.Is(context.Cause(actx), errAttemptTimeout) {
		switch status.Code(err) {
		case codes.DeadlineExceeded, codes.Canceled:
			return fmt.Errorf("%s: %w", addr, errAttemptTimeout)
		}
	}
	if status.Code(err) == codes.DeadlineExceeded {
		// The server ran out of the deadline it was sent (a hair before
		// this side noticed), or of its own forwarding deadline.
		return fmt.Errorf("%s: %w: %v", addr, errAttemptTimeout, err)
	}
	return err
}

// waitConnected waits until cc has a connection (gRPC's handshake done:
// the server answered) or has failed to get one, in which case the call
// that follows fails at once with the dial error. A hung server does
// neither, and ctx's attempt deadline ends the wait.
func waitConnected(ctx context.Context, cc *grpc.ClientConn) error {
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready || s == connectivity.TransientFailure {
			return nil
		}
		if !cc.WaitForStateChange(ctx, s) {
			if errors.Is(context.Cause(ctx), errAttemptTimeout) {
				return status.Error(codes.DeadlineExceeded, "no answer to the connection handshake")
			}
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// attemptReason is the last attempt's error in a few words.
func attemptReason(err error) string {
	if errors.Is(err, errAttemptTimeout) {
		return "no answer"
	}
	if s, ok := status.FromError(err); ok {
		return unavailableReason(s.Message())
	}
	return err.Error()
}

// unavailableReason trims gRPC's transport wording down to the cause.
func unavailableReason(msg string) string {
	if i := strings.LastIndex(msg, "dial tcp "); i >= 0 {
		msg = msg[i:]
	}
	return strings.TrimRight(strings.TrimSpace(plainMessage(msg)), "\"")
}

// grpcWording matches what gRPC adds around a message that crossed a
// node-to-node call ("rpc error: code = Unavailable desc = …").
var grpcWording = regexp.MustCompile(`rpc error: code = \w+ desc = `)

// plainMessage removes gRPC's wording from a server's message, which may
// carry a forwarded call's error.
func plainMessage(msg string) string {
	msg = grpcWording.ReplaceAllString(msg, "")
	msg = strings.ReplaceAll(msg, "context deadline exceeded", "no answer in time")
	return msg
}

// statusError turns a gRPC error into one readable line.
func statusError(err error) error {
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	s = status.New(s.Code(), plainMessage(s.Message()))
	switch s.Code() {
	case codes.InvalidArgument:
		return fmt.Errorf("invalid argument: %s", s.Message())
	case codes.NotFound, codes.FailedPrecondition:
		return errors.New(s.Message())
	case codes.AlreadyExists:
		return errors.New(s.Message())
	case codes.Unauthenticated:
		return fmt.Errorf("unauthenticated: %s (set --token or EDGECTL_TOKEN, or --tls-cert and --tls-key)", s.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("timed out: %s", s.Message())
	}
	return fmt.Errorf("%s: %s", s.Code(), s.Message())
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// actorName identifies the operator in the cluster's change history.
func actorName(getenv func(string) string) string {
	user := getenv("USER")
	if user == "" {
		user = "unknown"
	}
	host, _ := os.Hostname()
	return user + "@" + host
}
