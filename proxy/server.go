package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeproxy/edge/proxy/h1"
	"github.com/edgeproxy/edge/proxy/rawconn"
)

// Defaults for ServerConfig.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxConns          = 50_000
)

// ServerConfig configures the client-facing listeners.
type ServerConfig struct {
	// HTTPAddr is the plain HTTP listen address (--http-addr); "" disables it.
	HTTPAddr string
	// HTTPSAddr is the TLS listen address (--https-addr); "" disables it.
	// It serves HTTP/2 (ALPN "h2") and HTTP/1.1.
	HTTPSAddr string
	// Handler serves every request, normally a *Handler.
	Handler http.Handler
	// HandlerRecovers says Handler turns its own panics into responses (a
	// *Handler behind a thin router does), so the server adds no wrapper;
	// a panic that still escapes closes the connection and is logged.
	HandlerRecovers bool
	// GetCertificate picks the certificate for a TLS handshake (by SNI):
	// the store's certificates now, on-demand ACME later. Required with
	// HTTPSAddr.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// TLSConfig, when set, replaces the listener's TLS configuration (its
	// NextProtos must be set; the ACME manager adds "acme-tls/1" when
	// TLS-ALPN-01 is its challenge). Its GetCertificate, if set, replaces
	// GetCertificate. The server uses a copy whose GetCertificate records
	// the certificate each connection presented, for the 421 check.
	TLSConfig *tls.Config
	// LookupCertificate returns the certificate a full handshake for
	// serverName would present now, without side effects (no ACME order,
	// no network call), or nil. A resumed TLS session skips GetCertificate,
	// so its first request asks this to know what the connection's
	// certificate covers (the 421 check; see Handler). nil calls
	// GetCertificate with a ClientHelloInfo holding only the server name,
	// which suits a static certificate but not one obtained on demand.
	LookupCertificate func(serverName string) *tls.Certificate

	// ReadHeaderTimeout bounds the TLS handshake and the reading of the
	// request headers; a slowloris client is disconnected after it.
	// 0 → DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	// 0 → DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the request line and headers; larger requests
	// get 431. net/http allows 4096 bytes of slack over this value.
	// 0 → DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxConns caps concurrent client connections across both listeners;
	// at the cap, new connections wait in the kernel's accept queue.
	// 0 → DefaultMaxConns, negative → unlimited.
	MaxConns int

	// Logger receives server errors (TLS handshakes, panics outside the
	// Handler). nil discards.
	Logger *slog.Logger
	// Registerer receives edge_connections_* metrics; nil skips them.
	Registerer prometheus.Registerer

	// StandardPaths serves the plain-HTTP listener with net/http's
	// server over plain net calls, as the TLS listener is: no proxy/h1,
	// no raw socket calls (proxy/rawconn). The off switch for an incident
	// where a fast path is suspected (edged --standard-paths).
	StandardPaths bool
}

// Server runs the HTTP and HTTPS listeners of one node.
type Server struct {
	srv      *http.Server // HTTPS, HTTP/2 and what fast hands over
	fast     *h1.Server   // plain HTTP/1.1; nil with StandardPaths
	handoff  *h1.Handoff
	httpLn   net.Listener
	httpsLn  net.Listener
	log      *slog.Logger
	shutdown chan struct{}
	once     sync.Once
}

// NewServer validates cfg and binds the listeners, so that a port 0
// address is known (HTTPAddr, HTTPSAddr) before Serve.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("proxy: ServerConfig.Handler is required")
	}
	if cfg.HTTPAddr == "" && cfg.HTTPSAddr == "" {
		return nil, errors.New("proxy: no listen address")
	}
	if cfg.HTTPSAddr != "" && cfg.GetCertificate == nil {
		return nil, errors.New("proxy: ServerConfig.GetCertificate is required with HTTPSAddr")
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	handler := cfg.Handler
	if _, ok := handler.(*Handler); !ok && !cfg.HandlerRecovers { // *Handler recovers by itself
		handler = recoverer{next: handler, log: log}
	}
	s := &Server{log: log, shutdown: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           closeAfterChunked{handler},
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if cfg.HTTPSAddr != "" {
		src := &certSource{get: cfg.GetCertificate, lookup: cfg.LookupCertificate}
		tc := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		if cfg.TLSConfig != nil {
			tc = cfg.TLSConfig.Clone()
			if tc.GetCertificate != nil {
				src.get = tc.GetCertificate
			}
		}
		tc.GetCertificate = src.getCertificate
		s.srv.TLSConfig = tc
		s.srv.ConnContext = src.connContext
	}
	if cfg.Registerer != nil {
		cs, err := newConnStats(cfg.Registerer)
		if err != nil {
			return nil, err
		}
		s.srv.ConnState = cs.track
	}
	if !cfg.StandardPaths {
		s.fast = &h1.Server{
			Handler:           handler,
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxHeaderBytes:    cfg.MaxHeaderBytes,
			ConnState:         s.srv.ConnState,
			Logger:            log,
		}
	}

	var sem chan struct{}
	if cfg.MaxConns > 0 {
		sem = make(chan struct{}, cfg.MaxConns)
	}
	listen := func(addr string, raw bool) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		if raw {
			ln = rawListener{ln}
		}
		if sem == nil {
			return ln, nil
		}
		return &limitListener{Listener: ln, sem: sem, done: make(chan struct{})}, nil
	}
	var err error
	if cfg.HTTPAddr != "" {
		// Plain HTTP connections read and write with raw system calls
		// (proxy/rawconn): the hot path's sockets, where the scheduler's
		// system-call bookkeeping costs the most.
		if s.httpLn, err = listen(cfg.HTTPAddr, !cfg.StandardPaths); err != nil {
			return nil, err
		}
	}
	if cfg.HTTPSAddr != "" {
		if s.httpsLn, err = listen(cfg.HTTPSAddr, false); err != nil {
			if s.httpLn != nil {
				s.httpLn.Close()
			}
			return nil, err
		}
	}
	return s, nil
}

// HTTPAddr is the bound plain HTTP address, or nil.
func (s *Server) HTTPAddr() net.Addr { return addrOf(s.httpLn) }

// HTTPSAddr is the bound TLS address, or nil.
func (s *Server) HTTPSAddr() net.Addr { return addrOf(s.httpsLn) }

func addrOf(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

// Serve serves both listeners until Shutdown. It returns nil after a
// Shutdown, or the first listener error (after shutting the other down).
func (s *Server) Serve() error {
	errc := make(chan error, 2)
	n := 0
	switch {
	case s.httpLn != nil && s.fast == nil:
		n++
		go func() { errc <- s.srv.Serve(s.httpLn) }()
	case s.httpLn != nil:
		// Plain HTTP/1.1 is served by h1; the connections it hands over
		// (request bodies, upgrades, anything unusual) go to net/http.
		s.handoff = h1.NewHandoff(s.httpLn.Addr())
		s.fast.Fallback = s.handoff.Offer
		n += 2
		go func() { errc <- s.fast.Serve(s.httpLn) }()
		go func() { errc <- s.srv.Serve(s.handoff) }()
	}
	if s.httpsLn != nil {
		n++
		go func() { errc <- s.srv.ServeTLS(s.httpsLn, "", "") }()
	}
	var first error
	for range n {
		err := <-errc
		if errors.Is(err, http.ErrServerClosed) || first != nil {
			continue
		}
		first = fmt.Errorf("proxy serve: %w", err)
		s.srv.Close()
		if s.fast != nil {
			s.fast.Close()
		}
	}
	if first == nil {
		<-s.shutdown // let Shutdown finish draining before Serve returns
	}
	return first
}

// Shutdown stops accepting connections, closes idle ones and waits for
// in-flight requests to finish or ctx to end. Upgraded (WebSocket)
// connections are not waited for; they end with the process.
func (s *Server) Shutdown(ctx context.Context) error {
	fastDone := make(chan error, 1)
	if s.fast == nil {
		fastDone <- nil
	} else {
		go func() { fastDone <- s.fast.Shutdown(ctx) }()
	}
	err := s.srv.Shutdown(ctx)
	err = errors.Join(err, <-fastDone)
	// A Server that never served still holds its listeners (closing
	// one twice is harmless).
	for _, ln := range []net.Listener{s.httpLn, s.httpsLn} {
		if ln != nil {
			ln.Close()
		}
	}
	s.once.Do(func() { close(s.shutdown) })
	if err != nil {
		return fmt.Errorf("proxy shutdown: %w", err)
	}
	return nil
}

// closeAfterChunked closes an HTTP/1.x connection of the net/http
// server (the TLS listener, and connections proxy/h1 handed over) after
// a request with a chunked body. net/http drops a Content-Length sent
// with Transfer-Encoding before the handler runs, so such a request
// cannot be told apart here: it is processed by its chunked framing
// alone, which RFC 9112 section 6.1 allows provided the connection is
// closed after the response. Without the close, the bytes after the
// chunked body were served as the next request, which a front end that
// framed by Content-Length never saw (request smuggling). proxy/h1
// rejects the same request with 400 when it reads the head itself.
// The cost: a legitimate chunked upload does not keep its connection.
//
// The header is set when the response's header is written (closingWriter),
// not before the handler runs: the cache writes an origin's header into
// the response's map and drops the hop-by-hop fields from it, Connection
// included, which let the smuggled request through on the TLS listener.
type closeAfterChunked struct{ next http.Handler }

func (h closeAfterChunked) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		w = &closingWriter{ResponseWriter: w} // rare: a chunked request
	}
	h.next.ServeHTTP(w, r)
}

// closingWriter sends Connection: close with the response's header,
// whatever the handler did to the header map before.
type closingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *closingWriter) WriteHeader(code int) {
	if !w.wrote {
		w.ResponseWriter.Header().Set("Connection", "close")
		w.wrote = code >= 200 || code == http.StatusSwitchingProtocols
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closingWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush is found by type assertion (the proxy's writer flushes so).
func (w *closingWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer
// (hijacking, read deadlines).
func (w *closingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// limitListener caps accepted-but-not-closed connections with a semaphore
// shared by every listener of a Server.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes the connection (the h1 server's lingering close
// and net/http look for it).
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// rawListener hands out connections that read and write with raw system
// calls (rawconn.Wrap).
type rawListener struct{ net.Listener }

func (l rawListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return rawconn.Wrap(c), nil
}

// connStats tracks client connections for metrics.
type connStats struct {
	open     prometheus.Gauge
	accepted prometheus.Counter
}

func newConnStats(reg prometheus.Registerer) (*connStats, error) {
	cs := &connStats{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edge_connections_open", Help: "Open client connections.",
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_connections_accepted_total", Help: "Client connections accepted.",
		}),
	}
	for _, c := range []prometheus.Collector{cs.open, cs.accepted} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register server metrics: %w", err)
		}
	}
	return cs, nil
}

func (cs *connStats) track(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		if h1.HandedOver(c) {
			return // counted when h1 accepted it
		}
		cs.open.Inc()
		cs.accepted.Inc()
	case http.StateClosed, http.StateHijacked:
		cs.open.Dec()
	}
}

// recoverer turns a panic in a handler other than *Handler into a 500
// (or, once the response has started, an aborted connection) and a log line.
type recoverer struct {
	next http.Handler
	log  *slog.Logger
}

func (rc recoverer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tw := &trackingWriter{ResponseWriter: w}
	defer func() {
		p := recover()
		if p == nil || p == http.ErrAbortHandler { //nolint:errorlint // sentinel panic value
			if p != nil {
				panic(p)
			}
			return
		}
		rc.log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
			slog.String("host", r.Host), slog.String("path", r.URL.Path),
			slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		if tw.wrote {
			panic(http.ErrAbortHandler)
		}
		http.Error(w, "edge: internal error", http.StatusInternalServerError)
	}()
	rc.next.ServeHTTP(tw, r)
}

type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *trackingWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
