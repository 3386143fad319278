package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLS holds a tenant's settings for TLS towards its origin.
type TLS struct {
	// ServerName overrides the SNI and the name the certificate must match.
	// Empty: the origin's host.
	ServerName string
	// CAPEM is a PEM bundle of CAs that replaces the system roots.
	CAPEM []byte
	// ClientCertPEM and ClientKeyPEM are presented to origins that ask for
	// a client certificate (mTLS). Both or neither.
	ClientCertPEM, ClientKeyPEM []byte
	// InsecureSkipVerify disables certificate verification. Only for
	// tenants that opted in.
	InsecureSkipVerify bool
}

// Target is an origin as a tenant configured it.
type Target struct {
	// URL is the origin: scheme http or https and host[:port]. Its path and
	// query are ignored here.
	URL *url.URL
	// TLS applies to https origins only.
	TLS TLS
}

// Fingerprint returns the pool key of t: scheme://host:port, plus a hash of
// the TLS settings for https. Targets with equal fingerprints share a pool.
func (t Target) Fingerprint() (string, error) {
	if t.URL == nil {
		return "", errors.New("upstream: target has no URL")
	}
	scheme := strings.ToLower(t.URL.Scheme)
	port := "80"
	switch scheme {
	case "http":
	case "https":
		port = "443"
	default:
		return "", fmt.Errorf("upstream: origin %q: scheme must be http or https", t.URL.Redacted())
	}
	host := strings.ToLower(t.URL.Hostname())
	if host == "" {
		return "", fmt.Errorf("upstream: origin %q has no host", t.URL.Redacted())
	}
	if p := t.URL.Port(); p != "" {
		port = p
	}
	key := scheme + "://" + net.JoinHostPort(host, port)
	if scheme == "http" {
		return key, nil
	}
	h := sha256.New()
	for _, b := range [][]byte{[]byte(t.TLS.ServerName), t.TLS.CAPEM, t.TLS.ClientCertPEM, t.TLS.ClientKeyPEM} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	if t.TLS.InsecureSkipVerify {
		h.Write([]byte("insecure"))
	}
	return key + "#" + hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// DialFunc dials a network address, like net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Config configures Pools. Zero fields take the defaults in their comments.
type Config struct {
	// MaxIdleConnsPerHost is the number of keep-alive connections kept per
	// pool (default 50).
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes keep-alive connections idle this long (default 60s).
	IdleConnTimeout time.Duration
	// DialTimeout bounds connecting, name resolution included (default 5s).
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake (default 5s).
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the origin's response
	// headers once the request is written (default 60s).
	ResponseHeaderTimeout time.Duration
	// DialContext opens TCP connections, e.g. (*dnscache.Resolver).DialContext.
	// Default: a net.Dialer.
	DialContext DialFunc
	// Logger is told about pool changes. Default: discard.
	Logger *slog.Logger
	// Registerer receives the pool metrics. nil: not registered.
	Registerer prometheus.Registerer
	// MaxUploadsPerOrigin bounds the request bodies streaming to one
	// pool's origin at once; a request with a body beyond it fails with
	// ErrUploadsBusy before anything is sent (see uploads.go). 0 →
	// DefaultMaxUploadsPerOrigin, negative: unbounded.
	MaxUploadsPerOrigin int
	// DisableLeanHTTP1 sends plain-http requests through http.Transport
	// too. By default they take the pool's own HTTP/1.1 client, which does
	// the exchange on the calling goroutine (see the package doc).
	DisableLeanHTTP1 bool
}

// Pools is the set of origin pools of one node. It is safe for concurrent use.
type Pools struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	readers, writers sync.Pool // *bufio.Reader, *bufio.Writer of lean connections

	mu      sync.RWMutex
	tenants map[string]*binding // read under RLock on the request path
	pools   map[string]*pool    // by fingerprint
	closed  bool
}

// binding is a tenant's last Target and the pool (or error) it led to.
// Immutable once stored.
type binding struct {
	scheme, host string
	tls          TLS
	pool         *pool
	err          error
}

func (b *binding) matches(t *Target) bool {
	return t.URL != nil && b.scheme == t.URL.Scheme && b.host == t.URL.Host &&
		b.tls.ServerName == t.TLS.ServerName &&
		b.tls.InsecureSkipVerify == t.TLS.InsecureSkipVerify &&
		bytes.Equal(b.tls.CAPEM, t.TLS.CAPEM) &&
		bytes.Equal(b.tls.ClientCertPEM, t.TLS.ClientCertPEM) &&
		bytes.Equal(b.tls.ClientKeyPEM, t.TLS.ClientKeyPEM)
}

// New returns an empty set of pools. It fails only if the metrics cannot be
// registered.
func New(cfg Config) (*Pools, error) {
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = 50
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 60 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.TLSHandshakeTimeout <= 0 {
		cfg.TLSHandshakeTimeout = 5 * time.Second
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 60 * time.Second
	}
	if cfg.MaxUploadsPerOrigin == 0 {
		cfg.MaxUploadsPerOrigin = DefaultMaxUploadsPerOrigin
	}
	if cfg.DialContext == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		cfg.DialContext = d.DialContext
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Pools{
		cfg:     cfg,
		log:     log,
		m:       m,
		tenants: make(map[string]*binding),
		pools:   make(map[string]*pool),
	}, nil
}

// Get returns the round tripper for tenant's origin t. Requests sent through
// it must have URL scheme and host of t.URL. The result is cached per tenant:
// while t is unchanged Get does not allocate. An invalid Target (scheme,
// PEM) gives an error, also cached until the Target changes.
func (p *Pools) Get(tenant string, t Target) (http.RoundTripper, error) {
	p.mu.RLock()
	b := p.tenants[tenant]
	p.mu.RUnlock()
	if b != nil && b.matches(&t) {
		if b.err != nil {
			return nil, b.err
		}
		return b.pool, nil
	}
	return p.rebind(tenant, t)
}

// rebind moves tenant to the pool of t, retiring its previous pool if no
// tenant uses it any more.
func (p *Pools) rebind(tenant string, t Target) (http.RoundTripper, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("upstream: pools closed")
	}
	old := p.tenants[tenant]
	if old != nil && old.matches(&t) { // raced with another rebind
		if old.err != nil {
			return nil, old.err
		}
		return old.pool, nil
	}
	nb := &binding{tls: t.TLS}
	if t.URL != nil {
		nb.scheme, nb.host = t.URL.Scheme, t.URL.Host
	}
	key, err := t.Fingerprint()
	if err == nil {
		pl := p.pools[key]
		if pl == nil {
			pl, err = p.newPool(key, t)
			if err == nil {
				p.pools[key] = pl
				p.m.pools.Set(float64(len(p.pools)))
				p.log.Debug("upstream pool created", "origin", t.URL.Redacted(), "pools", len(p.pools))
			}
		}
		if err == nil {
			nb.pool = pl
			pl.refs++
		}
	}
	nb.err = err
	p.tenants[tenant] = nb
	if old != nil && old.pool != nil {
		p.release(old.pool)
		p.log.Info("upstream settings changed", "tenant", tenant, "origin", t.URL.Redacted())
	}
	if err != nil {
		return nil, err
	}
	return nb.pool, nil
}

// release drops one tenant reference; the last one retires the pool.
// p.mu must be held.
func (p *Pools) release(pl *pool) {
	pl.refs--
	if pl.refs > 0 {
		return
	}
	delete(p.pools, pl.key)
	p.m.pools.Set(float64(len(p.pools)))
	pl.retire(p.cfg.IdleConnTimeout)
}

// Remove forgets tenant (e.g. deleted); its pool is retired if no other
// tenant uses it.
func (p *Pools) Remove(tenant string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.tenants[tenant]; b != nil {
		delete(p.tenants, tenant)
		if b.pool != nil {
			p.release(b.pool)
		}
	}
}

// Close retires every pool: idle connections close now, busy ones when
// their response is done. Get fails afterwards.
func (p *Pools) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, pl := range p.pools {
		pl.retire(p.cfg.IdleConnTimeout)
	}
	clear(p.pools)
	clear(p.tenants)
	p.m.pools.Set(0)
}

// pool is one http.Transport, for plain http also a leanPool, and what
// they need. It is the http.RoundTripper handed out by Get.
type pool struct {
	key  string
	tr   *http.Transport
	lean *leanPool // nil with Config.DisableLeanHTTP1
	refs int       // tenants bound to it; guarded by Pools.mu
	// h2 is set once an https origin chose HTTP/2 by ALPN on a lean dial:
	// from then on every request goes to http.Transport, which speaks it.
	h2 atomic.Bool

	plain   bool    // http origin: the Transport's connections are HTTP/1.1 on TCP
	uploads uploads // request bodies streaming now

	open    atomic.Int64 // connections open
	retired atomic.Bool
	// sweepUntil (unix ns) ends the sweeps of a retired pool; sweeping
	// is set while one is scheduled.
	sweepUntil atomic.Int64
	sweeping   atomic.Bool
}

func (p *Pools) newPool(key string, t Target) (*pool, error) {
	pl := &pool{key: key}
	pl.uploads.max = int64(p.cfg.MaxUploadsPerOrigin)
	tr := &http.Transport{
		Proxy:                  nil, // origins are reached directly
		DialContext:            p.dialer(pl),
		MaxIdleConnsPerHost:    p.cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:        p.cfg.IdleConnTimeout,
		ResponseHeaderTimeout:  p.cfg.ResponseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		ForceAttemptHTTP2:      true,
		DisableCompression:     true, // pass the client's Accept-Encoding and the origin's bytes through
		MaxResponseHeaderBytes: 1 << 20,
	}
	if strings.EqualFold(t.URL.Scheme, "https") {
		tc, err := clientTLSConfig(t)
		if err != nil {
			return nil, err
		}
		tr.DialTLSContext = p.tlsDialer(pl, tc)
		if !p.cfg.DisableLeanHTTP1 {
			addr, _, _ := strings.Cut(key[len("https://"):], "#")
			pl.lean = p.newLeanPool(pl, addr, p.leanTLSDialer(pl, tc))
		}
	} else {
		pl.plain = true
		if !p.cfg.DisableLeanHTTP1 {
			pl.lean = p.newLeanPool(pl, key[len("http://"):], p.dialer(pl))
		}
	}
	pl.tr = tr
	return pl, nil
}

// RoundTrip sends req on the pool: plain http without Upgrade on the lean
// client, anything else on http.Transport. A non-idempotent request loses
// its GetBody so that http.Transport cannot replay it (see the package doc).
func (pl *pool) RoundTrip(req *http.Request) (*http.Response, error) {
	return pl.RoundTripInterim(req, nil)
}

// Interim receives the informational responses (1xx other than 101) an
// origin sends before its final response, in the order they arrive and
// before RoundTrip returns. 100 Continue is among them (http.Transport
// answers it itself); the caller picks what it forwards. header is the
// origin's, already parsed; it must not be kept after the call. On
// http.Transport the call may come from the transport's own goroutine.
type Interim interface {
	Interim(code int, header http.Header)
}

// InterimTripper is implemented by the round trippers Pools hands out.
type InterimTripper interface {
	// RoundTripInterim is RoundTrip, with in (when not nil) given each
	// informational response before the final one.
	RoundTripInterim(req *http.Request, in Interim) (*http.Response, error)
}

var _ InterimTripper = (*pool)(nil)

// RoundTripInterim implements InterimTripper. On the lean client the
// hook costs nothing until a 1xx arrives; on http.Transport it is an
// httptrace.ClientTrace (Got1xxResponse) on the request's context.
func (pl *pool) RoundTripInterim(req *http.Request, in Interim) (*http.Response, error) {
	req, err := pl.uploads.withUploadSlot(req)
	if err != nil {
		return nil, err
	}
	if pl.usesLean(req) {
		resp, err := pl.lean.roundTrip(req, in)
		if !errors.Is(err, errOriginH2) {
			return resp, err
		}
		// Nothing was sent: the lean dial found an HTTP/2 origin.
	}
	if req.GetBody != nil && !idempotent(req.Method) {
		r2 := new(http.Request)
		*r2 = *req
		r2.GetBody = nil
		req = r2
	}
	if pl.plain {
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &strayCheck))
	}
	if in != nil {
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				if code != http.StatusSwitchingProtocols {
					in.Interim(code, http.Header(h))
				}
				return nil
			},
		}))
	}
	return pl.tr.RoundTrip(req)
}

// strayCheck closes a reused plain-http connection of http.Transport
// that has bytes pending when a request takes it. The Transport's
// background reader closes an idle connection on which bytes arrive,
// but a request that takes the connection between their arrival and
// the reader's wake-up would read them as its response (the lean
// client's clean, for the same reason). The request then fails before
// a byte of it was written: the Transport retries a bodiless GET on a
// new connection, anything else gets an error (502), never the stray
// bytes. Plain http only: an HTTP/2 connection is reused while frames
// arrive, and is framed against this anyway.
var strayCheck = httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
	if !info.Reused {
		return
	}
	var p peeker
	p.init(socketOf(info.Conn))
	if p.pending() {
		info.Conn.Close()
	}
}}

// usesLean reports whether req goes to the lean client: a pool that has
// one and has not found its https origin speaking HTTP/2, and a request
// without a protocol upgrade (101 needs the connection handed over) or
// CONNECT.
func (pl *pool) usesLean(req *http.Request) bool {
	return pl.lean != nil && !pl.h2.Load() && req.URL != nil &&
		(req.URL.Scheme == "http" || req.URL.Scheme == "https") &&
		req.Header["Upgrade"] == nil && req.Method != http.MethodConnect
}

func idempotent(method string) bool {
	switch method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// retire closes the idle connections now, then sweeps each second while
// connections are open, for up to maxWait (after which the transport's own
// idle timeout has closed them). Requests in flight finish; their
// connections close when they are done (lean) or at the next sweep.
func (pl *pool) retire(maxWait time.Duration) {
	pl.sweepUntil.Store(time.Now().Add(maxWait).UnixNano())
	pl.retired.Store(true)
	pl.tr.CloseIdleConnections()
	if pl.lean != nil {
		pl.lean.retire()
	}
	pl.sweepLater()
}

// sweepLater schedules the next sweep of a retired pool, unless one is
// scheduled, no connection is open or the sweeps are over. The dialer
// calls it too: a request that took the pool just before it was retired
// may open a connection after the last sweep found none.
func (pl *pool) sweepLater() {
	if pl.open.Load() == 0 || time.Now().UnixNano() >= pl.sweepUntil.Load() ||
		!pl.sweeping.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(time.Second, func() {
		pl.tr.CloseIdleConnections()
		pl.sweeping.Store(false)
		pl.sweepLater()
	})
}
