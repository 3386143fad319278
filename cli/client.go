package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// call runs fn against the first server that answers. A server that is
// unavailable (down, or without a leader) is skipped for the next one; the
// whole list is tried a few times within --timeout. Every attempt carries
// the same request ID, so a write retried after an unknown outcome is
// applied at most once.
func (g *globals) call(ctx context.Context, fn func(ctx context.Context, cc *grpc.ClientConn) error) error {
	servers := splitList(g.servers)
	if len(servers) == 0 {
		return usagef("--server: no address given")
	}
	token, err := g.resolveToken()
	if err != nil {
		return err
	}
	creds := insecure.NewCredentials()
	if g.caFile != "" {
		b, err := os.ReadFile(g.caFile)
		if err != nil {
			return fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("--tls-ca %s: no PEM certificates", g.caFile)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	md := metadata.Pairs("x-edge-request-id", newRequestID(), "x-edge-actor", actorName(g.getenv))
	if token != "" {
		md.Append("authorization", "Bearer "+token)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)

	var errs []string
	for round := 0; round < 3; round++ {
		errs = errs[:0]
		for _, addr := range servers {
			err := g.callOne(ctx, addr, creds, fn)
			if err == nil {
				return nil
			}
			s, _ := status.FromError(err)
			if s.Code() != codes.Unavailable {
				return statusError(err)
			}
			errs = append(errs, fmt.Sprintf("%s: %s", addr, unavailableReason(s.Message())))
			if ctx.Err() != nil {
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(200*(round+1)) * time.Millisecond):
		}
	}
	return fmt.Errorf("cannot reach a usable server: %s", strings.Join(errs, "; "))
}

func (g *globals) callOne(ctx context.Context, addr string, creds credentials.TransportCredentials, fn func(context.Context, *grpc.ClientConn) error) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer cc.Close()
	return fn(ctx, cc)
}

// unavailableReason trims gRPC's transport wording down to the cause.
func unavailableReason(msg string) string {
	if i := strings.LastIndex(msg, "dial tcp "); i >= 0 {
		msg = msg[i:]
	}
	return strings.TrimRight(strings.TrimSpace(msg), "\"")
}

// statusError turns a gRPC error into one readable line.
func statusError(err error) error {
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch s.Code() {
	case codes.InvalidArgument:
		return fmt.Errorf("invalid argument: %s", s.Message())
	case codes.NotFound:
		return errors.New(s.Message())
	case codes.AlreadyExists:
		return errors.New(s.Message())
	case codes.Unauthenticated:
		return fmt.Errorf("unauthenticated: %s (set --token or EDGECTL_TOKEN)", s.Message())
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
