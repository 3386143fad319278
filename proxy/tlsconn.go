package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
)

// The 421 check (domain fronting). A TLS connection is bound to the
// certificate it presented: a request whose Host that certificate does not
// cover is answered 421 Misdirected Request (RFC 9110 §15.5.20), so a
// connection made for one tenant's name cannot reach another tenant. The
// rule is "the certificate covers Host", not "SNI == Host": browsers
// legitimately reuse an HTTP/2 connection for every name its certificate
// covers (connection coalescing, RFC 9113 §9.1.1). A connection without
// SNI is held to the certificate it got in the same way.
//
// Server records the certificate per connection: its GetCertificate
// wrapper stores what the handshake presented in a holder the connection's
// context carries (ConnContext), and Handler reads it per request: a
// context lookup, an atomic load and a scan of the parsed leaf's SANs, no
// x509 parsing and no allocation. A resumed session skips GetCertificate;
// its first request looks up the certificate for its SNI once
// (ServerConfig.LookupCertificate) and the connection keeps it.

// presentedKey is the context key of a TLS connection's *presented.
type presentedKey struct{}

// presented is the certificate one TLS connection presented.
type presented struct {
	cert atomic.Pointer[tls.Certificate] // Leaf set
	src  *certSource
}

// certSource is how Server finds certificates: the configured
// GetCertificate and the side-effect-free lookup for resumed sessions.
type certSource struct {
	get    func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	lookup func(serverName string) *tls.Certificate
}

// connContext gives every TLS connection an empty holder (http.Server's
// ConnContext); other connections (plain ones handed over by h1) get none.
func (cs *certSource) connContext(ctx context.Context, c net.Conn) context.Context {
	if _, ok := c.(*tls.Conn); !ok {
		return ctx
	}
	return context.WithValue(ctx, presentedKey{}, &presented{src: cs})
}

// getCertificate is the listener's GetCertificate: the configured one,
// with the certificate it returns recorded for the connection (the
// handshake runs with the connection's context).
func (cs *certSource) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, err := cs.get(hello)
	if err != nil || c == nil {
		return c, err
	}
	if ctx := hello.Context(); ctx != nil {
		if p, _ := ctx.Value(presentedKey{}).(*presented); p != nil {
			p.cert.Store(withLeaf(c))
		}
	}
	return c, nil
}

// certificate returns the certificate p's connection presented; for a
// resumed session, the one its SNI maps to, looked up once.
func (p *presented) certificate(serverName string) *tls.Certificate {
	if c := p.cert.Load(); c != nil {
		return c
	}
	var c *tls.Certificate
	if p.src.lookup != nil {
		c = p.src.lookup(serverName)
	} else if got, err := p.src.get(&tls.ClientHelloInfo{ServerName: serverName}); err == nil {
		c = got
	}
	if c == nil {
		return nil
	}
	c = withLeaf(c)
	p.cert.Store(c)
	return c
}

// misdirected reports whether r, a request for the normalised host,
// arrived over TLS on a connection whose certificate does not cover host.
// A TLS request that did not come through Server (no recorded
// certificate) counts as misdirected: the check fails closed.
func misdirected(r *http.Request, host string) bool {
	if r.TLS == nil {
		return false
	}
	p, _ := r.Context().Value(presentedKey{}).(*presented)
	if p == nil {
		return true
	}
	c := p.certificate(r.TLS.ServerName)
	return c == nil || !covers(c.Leaf, host)
}

// withLeaf returns c with its parsed leaf: c itself when it has one (the
// certificate manager's and tls.X509KeyPair's do), else a copy, parsed
// once for the connection.
func withLeaf(c *tls.Certificate) *tls.Certificate {
	if c.Leaf != nil || len(c.Certificate) == 0 {
		return c
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return c
	}
	cp := *c
	cp.Leaf = leaf
	return &cp
}

// covers reports whether leaf is valid for host, a normalised Host
// (lowercase, no port, an IPv6 literal without brackets), the way a
// browser checks it: a DNS SAN equal to host, a wildcard SAN "*.parent"
// when host is exactly one label under parent, or an IP SAN equal to an
// IP literal host. The subject's common name does not count (crypto/x509
// ignores it too). It does not allocate.
func covers(leaf *x509.Certificate, host string) bool {
	if leaf == nil || host == "" {
		return false
	}
	if ipLiteral(host) {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return false
		}
		ip = ip.Unmap()
		for _, a := range leaf.IPAddresses {
			if b, ok := netip.AddrFromSlice(a); ok && b.Unmap() == ip {
				return true
			}
		}
		return false
	}
	dot := strings.IndexByte(host, '.')
	for _, n := range leaf.DNSNames {
		if len(n) > 2 && n[0] == '*' && n[1] == '.' {
			if dot > 0 && strings.EqualFold(n[1:], host[dot:]) {
				return true
			}
		} else if strings.EqualFold(n, host) {
			return true
		}
	}
	return false
}

// ipLiteral tells a normalised IP host from a name without parsing it: an
// IPv6 literal has colons, and an IPv4 one ends in a digit, which no
// top-level domain does.
func ipLiteral(host string) bool {
	last := host[len(host)-1]
	return strings.IndexByte(host, ':') >= 0 || '0' <= last && last <= '9'
}
