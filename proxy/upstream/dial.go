package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
)

// clientTLSConfig builds the TLS client configuration of an https Target.
func clientTLSConfig(t Target) (*tls.Config, error) {
	origin := t.URL.Redacted()
	tc := &tls.Config{
		ServerName:         t.TLS.ServerName,
		InsecureSkipVerify: t.TLS.InsecureSkipVerify, //nolint:gosec // only when the tenant opted in
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2", "http/1.1"},
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
	}
	if tc.ServerName == "" {
		tc.ServerName = t.URL.Hostname()
	}
	if len(t.TLS.CAPEM) > 0 {
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(t.TLS.CAPEM) {
			return nil, fmt.Errorf("upstream: origin %s: CA bundle holds no valid PEM certificate", origin)
		}
		tc.RootCAs = roots
	}
	if len(t.TLS.ClientCertPEM) > 0 || len(t.TLS.ClientKeyPEM) > 0 {
		cert, err := tls.X509KeyPair(t.TLS.ClientCertPEM, t.TLS.ClientKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("upstream: origin %s: client certificate: %w", origin, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// dialer returns the pool's TCP dialer: Config.DialContext bounded by
// DialTimeout, counting connections.
func (p *Pools) dialer(pl *pool) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		dctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
		defer cancel()
		c, err := p.cfg.DialContext(dctx, network, addr)
		if err != nil {
			timeout := ctx.Err() == nil && errors.Is(dctx.Err(), context.DeadlineExceeded)
			p.m.dialResult(timeout)
			return nil, &opError{op: "dial", addr: addr, err: err, timeout: timeout}
		}
		p.m.dials.WithLabelValues("ok").Inc()
		p.m.connsOpen.Inc()
		pl.open.Add(1)
		if pl.retired.Load() {
			pl.sweepLater()
		}
		return &countedConn{Conn: c, pool: pl, m: p.m}, nil
	}
}

// tlsDialer returns the pool's TLS dialer: a TCP connection from dialer,
// then a handshake bounded by TLSHandshakeTimeout. The result is a
// *tls.Conn, which http.Transport inspects for ALPN h2.
func (p *Pools) tlsDialer(pl *pool, tc *tls.Config) DialFunc {
	dial := p.dialer(pl)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, tc)
		hctx, cancel := context.WithTimeout(ctx, p.cfg.TLSHandshakeTimeout)
		defer cancel()
		if err := conn.HandshakeContext(hctx); err != nil {
			raw.Close()
			timeout := ctx.Err() == nil && errors.Is(hctx.Err(), context.DeadlineExceeded)
			p.m.tlsErrors.Inc()
			return nil, &opError{op: "tls handshake", addr: addr, err: err, timeout: timeout}
		}
		return conn, nil
	}
}

// errOriginH2: a lean dial to an https origin that chose HTTP/2 by ALPN.
// The lean client speaks HTTP/1.1 only; the pool hands such an origin to
// http.Transport from then on (pool.h2), and the request, not yet sent,
// goes there too.
var errOriginH2 = errors.New("origin negotiated HTTP/2")

// leanTLSDialer is tlsDialer for the lean client: the same configuration,
// so the same ALPN offer (h2, http/1.1), and an origin that picks h2 is
// marked for http.Transport instead. The handshake is wasted once per
// pool; an origin that offers no ALPN, or http/1.1, stays on the lean
// client.
func (p *Pools) leanTLSDialer(pl *pool, tc *tls.Config) DialFunc {
	dial := p.tlsDialer(pl, tc)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if c.(*tls.Conn).ConnectionState().NegotiatedProtocol == "h2" {
			pl.h2.Store(true)
			c.Close()
			return nil, errOriginH2
		}
		return c, nil
	}
}

// countedConn keeps the open-connection gauges right.
type countedConn struct {
	net.Conn
	pool   *pool
	m      *metrics
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.pool.open.Add(-1)
		c.m.connsOpen.Dec()
	}
	return c.Conn.Close()
}
