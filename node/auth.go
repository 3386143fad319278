package node

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// authenticator checks every admin call: a bearer token compared in
// constant time, or a client certificate verified by --admin-client-ca.
// Only --dev on loopback runs without either.
type authenticator struct {
	tokens [][]byte // the node's own first, then the other accepted ones
	mtls   bool
	open   bool // --dev without token
}

func newAuthenticator(c *Config) *authenticator {
	a := &authenticator{mtls: c.AdminClientCA != ""}
	if c.AdminToken != "" {
		a.tokens = append(a.tokens, []byte(c.AdminToken))
	}
	for _, t := range c.AdminTokensAccepted {
		a.tokens = append(a.tokens, []byte(t))
	}
	return a
}

// valid compares got with every accepted token, all of them each time, so
// the time taken does not tell which one (or how much of one) matched.
func (a *authenticator) valid(got string) bool {
	ok := 0
	for _, t := range a.tokens {
		ok |= subtle.ConstantTimeCompare([]byte(got), t)
	}
	return ok == 1
}

func (a *authenticator) check(ctx context.Context) error {
	if a.open {
		return nil
	}
	if a.mtls {
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
				return nil
			}
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return status.Error(codes.Unauthenticated, "missing admin token (authorization: Bearer …)")
	}
	got, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok || !a.valid(got) {
		return status.Error(codes.Unauthenticated, "invalid admin token")
	}
	return nil
}

func (a *authenticator) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (a *authenticator) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := a.check(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// serverCreds builds the admin listener's transport credentials.
func serverCreds(c *Config) (credentials.TransportCredentials, error) {
	if c.AdminTLSCert == "" {
		if c.AdminClientCA != "" {
			return nil, fmt.Errorf("--admin-client-ca needs --admin-tls-cert and --admin-tls-key")
		}
		return insecure.NewCredentials(), nil
	}
	cert, err := tls.LoadX509KeyPair(c.AdminTLSCert, c.AdminTLSKey)
	if err != nil {
		return nil, fmt.Errorf("admin TLS: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.AdminClientCA != "" {
		pool, err := loadPool(c.AdminClientCA)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return credentials.NewTLS(tc), nil
}

// peerCreds is how this node dials other nodes' admin listeners: the same
// token, and TLS with the cluster CA when the admin API uses TLS.
func peerCreds(c *Config) (credentials.TransportCredentials, error) {
	if c.AdminTLSCert == "" {
		return insecure.NewCredentials(), nil
	}
	cert, err := tls.LoadX509KeyPair(c.AdminTLSCert, c.AdminTLSKey)
	if err != nil {
		return nil, fmt.Errorf("admin TLS: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.AdminClientCA != "" {
		pool, err := loadPool(c.AdminClientCA)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	return credentials.NewTLS(tc), nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificates", file)
	}
	return pool, nil
}

// tokenCreds attaches the bearer token to outgoing calls.
type tokenCreds struct {
	token  string
	secure bool
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t.token == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}

func (t tokenCreds) RequireTransportSecurity() bool { return t.secure }
