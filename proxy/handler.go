package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeproxy/edge/proxy/accesslog"
	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// StatusClientClosedRequest is nginx's non-standard status for a client
// that went away before the response was sent. It appears in logs and
// metrics only; nothing is written to the (gone) client.
const StatusClientClosedRequest = 499

// Routes finds the tenant serving a normalised host. It must not make a
// network call; raftstore's View satisfies it (through an atomic pointer
// to the current view) without locking or allocating.
type Routes interface {
	// Lookup returns the tenant for host, or nil for an unknown host.
	Lookup(host string) *tenantcfg.Tenant
}

// Upstreams gives the pooled transport and the parsed origin URL for a
// tenant. Implementations cache both (per origin and TLS settings): this
// is called on every origin fetch. The returned URL is read-only.
type Upstreams interface {
	RoundTripper(t *tenantcfg.Tenant) (http.RoundTripper, *url.URL, error)
}

// BufferPool hands out buffers for copying bodies. Unlike
// httputil.BufferPool it deals in *[]byte so that a sync.Pool-backed
// implementation does not allocate on Put.
type BufferPool interface {
	Get() *[]byte
	Put(*[]byte)
}

// Exchange is one proxied request as the fetch chain sees it.
type Exchange struct {
	// Tenant serves the request; never nil.
	Tenant *tenantcfg.Tenant
	// Host is the normalised client host, the routing key.
	Host string
	// Request is the client's request, already cleaned for forwarding
	// (hop-by-hop headers removed, X-Forwarded-* and Via set). Stages may
	// change its headers; the origin fetch builds the outgoing request
	// from it (URL and Host rewritten for the origin).
	Request *http.Request
	// Start is when the handler received the request.
	Start time.Time
	// OriginTime is the time the origin took to answer with headers. The
	// origin fetch sets it; a stage that answers without the origin (a
	// cache hit) leaves it 0, which is what the timing headers then show.
	OriginTime time.Duration

	upgrade string // requested protocol switch, e.g. "websocket"

	// body wraps the client's request body in the origin request
	// (fetchOrigin); a read of it that failed makes a failed fetch the
	// client's error (fail). The server's own request keeps its body:
	// net/http decides by its type whether an unread rest is discarded.
	body clientBody

	// interim, when set, receives the origin's informational responses
	// (the client's state, which forwards 103 Early Hints).
	interim upstream.Interim
}

// FetchFunc produces the response for an exchange. The innermost
// FetchFunc is the origin round trip; the response body is streamed to the
// client and closed by the handler.
type FetchFunc func(x *Exchange) (*http.Response, error)

// Stage wraps the fetch chain, e.g. a cache that answers hits itself and
// calls next on a miss, or an HTML transform that replaces the body of
// next's response with a streaming rewriter.
type Stage func(next FetchFunc) FetchFunc

// Config configures a Handler. Routes and Upstreams are required.
type Config struct {
	Routes    Routes
	Upstreams Upstreams

	// Stages wrap the origin fetch, outermost first: with
	// []Stage{cache, transform} a request flows cache → transform →
	// origin. Empty means every request goes to the origin.
	Stages []Stage

	// WrapWriter, when set, is called with each fetched response (not
	// for 101 upgrades or the proxy's own 4xx/5xx answers) before its
	// headers are copied, and returns the writer the body goes to, e.g.
	// compression: it may adjust resp (decode an encoding the client does
	// not accept), and the wrapper decides at WriteHeader from the
	// headers. The wrapper must support Flush (http.Flusher) for
	// streaming. If it is an io.Closer, Close is called once after the
	// body was copied and must flush what the wrapper buffered. An error
	// answers 502. CompressWriter adapts a *compress.Compressor.
	//
	// On the cache path resp is nil and the call is made when the cache
	// writes the header: not at all for a response that already has a
	// Content-Encoding (a stored gzip, br or zstd form), which a wrapper must pass through
	// untouched; an error there sends the response unwrapped (logged).
	// Header values the cache writes are shared with other requests:
	// replace them, never modify them in place.
	WrapWriter func(w http.ResponseWriter, r *http.Request, resp *http.Response) (http.ResponseWriter, error)

	// IsTimeout classifies fetch errors as timeouts (→ 504). Context
	// deadlines and net.Error timeouts are always timeouts; this adds the
	// upstream package's own (upstream.IsTimeout).
	IsTimeout func(error) bool
	// ErrorReason gives a short reason for a failed fetch for the error
	// log ("tls: unknown authority"); nil logs err.Error().
	ErrorReason func(error) string

	// Cache, when set, answers GET and HEAD requests (all but protocol
	// upgrades go through it): a hit is served without the fetch chain, a
	// miss runs the fetch chain (Stages, then the origin) once per key
	// however many clients wait, and Cache-Status is sent. Without it
	// every request goes to the fetch chain.
	Cache *cache.Cache
	// CachePolicy gives a tenant's cache policy; nil uses TenantPolicy.
	CachePolicy func(t *tenantcfg.Tenant) cache.Policy
	// Variant names the representation a stage produces for a request
	// (e.g. the transform's language and rules version): part of the
	// cache key, and a non-empty variant is also kept in L3. nil means "".
	Variant func(x *Exchange) string
	// FetchTimeout bounds an origin fetch made for the cache that no
	// client can cancel (a collapsed miss runs detached from the client
	// that started it): the wait for the response headers and then each
	// wait for body bytes; an event stream is bound to its client instead.
	// Default 30 s. A timeout answers 504.
	FetchTimeout time.Duration
	// DecodeOrigin, when set, is applied on the cache path to every origin
	// response with the Accept-Encoding of the request the cache sent
	// (the codings among br, zstd and gzip the client accepts, or none): it decodes a content coding that request did not
	// ask for, so the cache can store it and no client gets a coding it
	// cannot read. CompressDecoder adapts a *compress.Compressor.
	DecodeOrigin func(resp *http.Response, acceptEncoding string) error

	// BufferPool supplies copy buffers; nil uses a pool of 32 KB buffers.
	BufferPool BufferPool
	// Logger receives access logs (Info, message "request") and errors.
	// nil discards.
	Logger *slog.Logger
	// DisableAccessLog keeps errors but drops the per-request line.
	DisableAccessLog bool
	// AccessLog, when set, receives the per-request line instead of
	// Logger: the same JSON shape, encoded without allocating and
	// buffered, so a request pays neither slog's encoding nor a write to
	// stdout. Its lines carry no level filtering and none of Logger's
	// attributes; set the static fields on the Writer (With).
	AccessLog *accesslog.Writer
	// Registerer receives the edge_ metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer

	// Direct, with a Cache, enables the direct path for GET requests the
	// cache passes to the origin (direct.go); nil disables it.
	Direct *DirectConfig

	// ClientBodyTimeout bounds each wait for the next bytes of a
	// request body while it streams to the origin (nginx's
	// client_body_timeout): a client that stops sending is answered 408
	// and its origin connection closed, instead of holding it.
	// 0 → DefaultClientBodyTimeout; negative: no bound.
	ClientBodyTimeout time.Duration
}

// Handler is the proxy's http.Handler. It is safe for concurrent use.
type Handler struct {
	cache        *cache.Cache
	cachePolicy  func(*tenantcfg.Tenant) cache.Policy
	variant      func(*Exchange) string
	fetchTimeout time.Duration
	decodeOrigin func(*http.Response, string) error
	cacheFetch   cache.Fetcher

	upstreams   Upstreams
	lookup      Routes
	fetch       FetchFunc
	wrapWriter  func(http.ResponseWriter, *http.Request, *http.Response) (http.ResponseWriter, error)
	isTimeout   func(error) bool
	errorReason func(error) string
	pool        BufferPool
	log         *slog.Logger
	accessLog   bool
	access      *accesslog.Writer
	direct      *DirectConfig
	bodyTimeout time.Duration
	passFields  sync.Pool // *passFields for the direct path
	states      sync.Pool // *state of finished direct-path requests (state.recycle)
	ids         *requestIDs
	m           *metrics
}

// New builds a Handler from cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Routes == nil {
		return nil, errors.New("proxy: Config.Routes is required")
	}
	if cfg.Upstreams == nil {
		return nil, errors.New("proxy: Config.Upstreams is required")
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	ids, err := newRequestIDs()
	if err != nil {
		return nil, fmt.Errorf("proxy: request ID prefix: %w", err)
	}
	h := &Handler{
		ids:          ids,
		cache:        cfg.Cache,
		cachePolicy:  cfg.CachePolicy,
		variant:      cfg.Variant,
		fetchTimeout: cfg.FetchTimeout,
		decodeOrigin: cfg.DecodeOrigin,

		upstreams:   cfg.Upstreams,
		lookup:      cfg.Routes,
		wrapWriter:  cfg.WrapWriter,
		isTimeout:   cfg.IsTimeout,
		errorReason: cfg.ErrorReason,
		pool:        cfg.BufferPool,
		log:         cfg.Logger,
		accessLog:   !cfg.DisableAccessLog,
		access:      cfg.AccessLog,
		m:           m,
	}
	if d := cfg.Direct; d != nil && cfg.Cache != nil {
		if d.Untransformed == nil {
			return nil, errors.New("proxy: Config.Direct.Untransformed is required")
		}
		if d.Compressor == nil && (cfg.WrapWriter != nil || cfg.DecodeOrigin != nil) {
			return nil, errors.New("proxy: Config.Direct.Compressor is required with WrapWriter or DecodeOrigin")
		}
		h.direct = d
	}
	if h.pool == nil {
		h.pool = newBufferPool(32 << 10)
	}
	switch h.bodyTimeout = cfg.ClientBodyTimeout; {
	case h.bodyTimeout == 0:
		h.bodyTimeout = DefaultClientBodyTimeout
	case h.bodyTimeout < 0:
		h.bodyTimeout = 0
	}
	h.passFields.New = func() any { return &passFields{h: make(http.Header, len(cacheFields))} }
	if h.cachePolicy == nil {
		h.cachePolicy = TenantPolicy
	}
	if h.fetchTimeout <= 0 {
		h.fetchTimeout = 30 * time.Second
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.cacheFetch = h.fetchForCache
	h.fetch = h.fetchOrigin
	for i := len(cfg.Stages) - 1; i >= 0; i-- {
		h.fetch = cfg.Stages[i](h.fetch)
	}
	return h, nil
}

// state is everything one request needs, allocated once.
type state struct {
	responseWriter
	x   Exchange
	hdr [4]string // backing arrays for forwarded headers
	rid [1]string // backing array for a generated X-Request-Id
	h   *Handler
	cw  cacheWriter // the cache's writer when a WrapWriter is set

	// fctx is the client's context with the state attached, given to the
	// cache for the fetches it makes for this client (hints.go).
	fctx fetchContext

	// direct holds the direct path's origin request and response, made
	// on its first use and kept when the state is recycled (only after a
	// direct-path response): a hit does not carry them.
	direct *directState

	// recycle is set when nothing can hold the state once the handler
	// returns: the direct path relayed the response (its head went out
	// as bytes; no header map the server writes later points into
	// w.timing, and no fill or revalidation runs on). done then zeroes
	// the state and keeps it for the next request. Not after a hit:
	// the server may write the header map, timing values and all, after
	// the handler has returned.
	recycle bool
}

// ServeHTTP routes, checks the license and proxies r.
//
// Over TLS it first answers 421 Misdirected Request when the certificate
// the connection presented does not cover the Host (domain fronting; see
// tlsconn.go). It reads that certificate from what Server recorded for
// the connection, so TLS requests must come through Server: any other TLS
// request gets 421.
//
// X-Total-Time is measured from the start of ServeHTTP to the moment the
// response headers are written (it has to be known then); the access log's
// duration_ms also covers the body.
func (h *Handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	st, _ := h.states.Get().(*state)
	if st == nil {
		st = new(state)
	}
	st.h = h
	st.responseWriter = responseWriter{rw: rw, start: time.Now(), x: &st.x}
	w := &st.responseWriter
	defer h.done(st, r)
	if w.reqID = incomingRequestID(r.Header); w.reqID == nil {
		st.rid[0] = h.ids.next()
		w.reqID = st.rid[:]
	}

	host, err := NormalizeHost(r.Host)
	if err != nil {
		if errors.Is(err, ErrMissingHost) {
			h.plain(w, http.StatusBadRequest, "edge: missing Host header\n", "")
		} else {
			h.plain(w, http.StatusBadRequest, "edge: invalid Host header\n", "")
		}
		return
	}
	st.x.Host = host
	if r.TLS != nil && misdirected(r, host) {
		h.plain(w, http.StatusMisdirectedRequest, "edge: the certificate of this connection does not cover ", host)
		return
	}
	t := h.lookup.Lookup(host)
	if t == nil {
		h.plain(w, http.StatusForbidden, "edge: unknown domain ", host)
		return
	}
	st.x.Tenant = t
	if lic := &t.License; !lic.Active(w.start) {
		switch {
		case lic.Expired(w.start):
			h.plain(w, http.StatusForbidden, "edge: license expired for ", host)
		case lic.Status == tenantcfg.LicenseSuspended:
			h.plain(w, http.StatusForbidden, "edge: license suspended for ", host)
		default:
			h.plain(w, http.StatusForbidden, "edge: license not active for ", host)
		}
		return
	}
	if t.HTTPSRedirect && r.TLS == nil {
		w.Header().Set("Location", "https://"+r.Host+r.URL.RequestURI())
		h.plain(w, http.StatusPermanentRedirect, "", "")
		return
	}

	if r.Body != nil && r.Body != http.NoBody {
		st.x.body.rw, st.x.body.timeout = rw, h.bodyTimeout
	}
	st.x.upgrade = upgradeType(r.Header)
	prepareRequestHeaders(r, host, st.x.upgrade, &st.hdr)
	if st.x.upgrade == "" && r.ProtoAtLeast(1, 1) {
		// The origin's 103s may go to this client (never to HTTP/1.0:
		// RFC 9110 §15.2).
		w.hints.open()
		st.x.interim = st
	}
	r.Header[headerRequestID] = w.reqID // after: a Connection header may name it
	st.x.Request = r
	st.x.Start = w.start

	if h.cache != nil && st.x.upgrade == "" && !acceptsEventStream(r.Header) {
		h.serveCached(st, r) // the direct path, when set, from inside (PassDirect)
		return
	}
	if h.cache != nil {
		w.cache = cacheBypass // protocol upgrade or event stream
	}
	resp, err := h.fetch(&st.x)
	if err != nil {
		h.fail(w, &st.x, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		h.serveUpgrade(w, &st.x, resp)
		return
	}
	h.serveResponse(w, r, resp)
}

// plain writes a short text/plain answer: msg followed by arg and a newline
// (arg == "" writes msg as is), assembled in a pooled buffer.
func (h *Handler) plain(w *responseWriter, code int, msg, arg string) {
	hd := w.Header()
	hd["Content-Type"] = textPlain
	hd["X-Content-Type-Options"] = nosniff
	hd["Cache-Control"] = noStore
	w.WriteHeader(code)
	if msg == "" {
		return
	}
	bp := h.pool.Get()
	b := append((*bp)[:0], msg...)
	if arg != "" {
		b = append(append(b, arg...), '\n')
	}
	w.Write(b)
	h.pool.Put(bp)
}

var (
	textPlain = []string{"text/plain; charset=utf-8"}
	nosniff   = []string{"nosniff"}
	noStore   = []string{"no-store"}
)

// fetchOrigin is the innermost FetchFunc: it rewrites the request for the
// tenant's origin and round-trips it through the tenant's pooled
// transport. It never retries: the transport replays a request only when
// none of it was written, or when it is idempotent and bodiless (the
// net/http.Transport rules).
func (h *Handler) fetchOrigin(x *Exchange) (*http.Response, error) {
	rt, target, err := h.upstreams.RoundTripper(x.Tenant)
	if err != nil {
		return nil, fmt.Errorf("upstream for %s: %w", x.Tenant.Domain, err)
	}
	out := newOutgoing(x.Request, target, x.Tenant.Origin.HostHeader)
	if out.Body != nil && out.Body != http.NoBody {
		out.Body = x.body.wrap(out.Body)
	}
	start := time.Now()
	var resp *http.Response
	if it, ok := rt.(upstream.InterimTripper); ok && x.interim != nil {
		resp, err = it.RoundTripInterim(out, x.interim)
	} else {
		resp, err = rt.RoundTrip(out)
	}
	x.OriginTime = time.Since(start)
	return resp, err
}

// outgoing holds the request to the origin and its URL in one allocation.
type outgoing struct {
	req http.Request
	url url.URL
}

// newOutgoing derives the origin request from the cleaned client request
// in. Headers are shared with in, which is no longer used for anything
// else.
func newOutgoing(in *http.Request, target *url.URL, hostHeader string) *http.Request {
	return new(outgoing).init(in, target, hostHeader)
}

// init makes o the origin request for in (see newOutgoing).
func (o *outgoing) init(in *http.Request, target *url.URL, hostHeader string) *http.Request {
	o.req = *in // shallow: same context, body and header map
	o.url = *in.URL
	o.url.Scheme = target.Scheme
	o.url.Host = target.Host
	if target.Path != "" && target.Path != "/" {
		o.url.Path, o.url.RawPath = joinURLPath(target, in.URL)
	}
	if target.RawQuery != "" {
		if in.URL.RawQuery == "" {
			o.url.RawQuery = target.RawQuery
		} else {
			o.url.RawQuery = target.RawQuery + "&" + in.URL.RawQuery
		}
	}
	o.req.URL = &o.url
	o.req.RequestURI = ""
	o.req.Close = false
	o.req.Host = hostHeader
	if o.req.Host == "" {
		o.req.Host = target.Host
	}
	if in.ContentLength == 0 {
		o.req.Body = nil // lets the transport treat a bodiless request as such
	}
	o.req.Trailer = nil
	return &o.req
}

// joinURLPath joins the origin's base path and the request path with
// exactly one slash between them, keeping an escaped form when either has
// one.
func joinURLPath(a, b *url.URL) (path, rawpath string) {
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	apath, bpath := a.EscapedPath(), b.EscapedPath()
	return singleJoiningSlash(a.Path, b.Path), singleJoiningSlash(apath, bpath)
}

func singleJoiningSlash(a, b string) string {
	as, bs := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case as && bs:
		return a + b[1:]
	case !as && !bs:
		return a + "/" + b
	}
	return a + b
}

// serveResponse copies resp's headers, status, body and trailers to w.
func (h *Handler) serveResponse(w *responseWriter, r *http.Request, resp *http.Response) {
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)
	var dst http.ResponseWriter = w
	if h.wrapWriter != nil {
		var err error
		if dst, err = h.wrapWriter(w, r, resp); err != nil {
			h.fail(w, w.x, err)
			return
		}
	}
	hd := dst.Header()
	for k, vv := range resp.Header {
		hd[k] = vv
	}
	// Event streams and bodies of unknown length are flushed after every
	// read so that each chunk reaches the client when the origin sends it.
	flush := resp.ContentLength == -1 || isEventStream(resp.Header)
	dst.WriteHeader(resp.StatusCode)
	if flush {
		flushWriter(dst)
	}

	err := h.copyBody(dst, resp.Body, flush)
	if c, ok := dst.(io.Closer); ok && dst != http.ResponseWriter(w) {
		if ferr := c.Close(); ferr != nil && err == nil {
			err = clientWriteError{ferr}
		}
	}
	if err != nil {
		var cw clientWriteError
		if errors.As(err, &cw) || r.Context().Err() != nil {
			w.clientGone = true
			return
		}
		// The origin broke off mid-body: abort so the client sees a
		// truncated response, not a complete one.
		w.err = err
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "origin body failed",
			slog.String("tenant", tenantName(w.x)), slog.String("host", w.x.Host),
			slog.String("reason", h.reason(err)))
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		hd[http.TrailerPrefix+k] = vv
	}
}

func isEventStream(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream")
}

func flushWriter(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// clientWriteError marks a failure to write to the client.
type clientWriteError struct{ err error }

func (e clientWriteError) Error() string { return "write to client: " + e.err.Error() }
func (e clientWriteError) Unwrap() error { return e.err }

// copyBody streams src to dst through a pooled buffer. Read errors are
// returned as they are, write errors as clientWriteError.
func (h *Handler) copyBody(dst http.ResponseWriter, src io.Reader, flush bool) error {
	bp := h.pool.Get()
	defer h.pool.Put(bp)
	buf := *bp
	var flusher http.Flusher
	if flush {
		flusher, _ = dst.(http.Flusher)
	}
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return clientWriteError{werr}
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// statusForError is the one place that maps a fetch error to a status:
// the client left → 499 (logged only), the client's request body failed
// (ClientBodyError) → 400, or 408 when it stalled, too many request
// bodies streaming to the origin (upstream.ErrUploadsBusy) → 503, a
// timeout → 504, anything else → 502.
func (h *Handler) statusForError(r *http.Request, err error) int {
	var be *ClientBodyError
	isBody := errors.As(err, &be)
	if isBody && be.Timeout {
		// Before the context check: net/http cancels the request's
		// context when a read of the connection fails, deadline too.
		return http.StatusRequestTimeout
	}
	if r.Context().Err() != nil {
		return StatusClientClosedRequest
	}
	if isBody {
		return http.StatusBadRequest
	}
	if errors.Is(err, upstream.ErrUploadsBusy) {
		return http.StatusServiceUnavailable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout
	}
	if h.isTimeout != nil && h.isTimeout(err) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// fail answers a failed fetch and logs it with the tenant and the reason.
// A fetch that failed because the client's request body did (its read
// error may come back wrapped, or hidden by the origin client) is the
// client's error: 400 or 408, logged at Info, the connection closed
// (what is left of the body cannot be framed, or is not coming).
func (h *Handler) fail(w *responseWriter, x *Exchange, err error) {
	if be := x.body.failed(); be != nil {
		err = be
	}
	code := h.statusForError(x.Request, err)
	w.err = err
	switch code {
	case http.StatusBadRequest, http.StatusRequestTimeout:
		h.log.LogAttrs(x.Request.Context(), slog.LevelInfo, "client request body failed",
			slog.String("tenant", x.Tenant.Domain), slog.String("host", x.Host),
			slog.Int("status", code), slog.String("error", err.Error()))
		w.Header().Set("Connection", "close")
		if code == http.StatusRequestTimeout {
			h.plain(w, code, "edge: request body timed out\n", "")
		} else {
			h.plain(w, code, "edge: malformed request body\n", "")
		}
		return
	}
	level := slog.LevelWarn
	if code == StatusClientClosedRequest {
		level = slog.LevelInfo
	}
	h.log.LogAttrs(x.Request.Context(), level, "origin fetch failed",
		slog.String("tenant", x.Tenant.Domain), slog.String("host", x.Host),
		slog.Int("status", code), slog.String("reason", h.reason(err)),
		slog.String("error", err.Error()))
	switch code {
	case StatusClientClosedRequest:
		w.clientGone = true
	case http.StatusGatewayTimeout:
		h.plain(w, code, "edge: origin timed out\n", "")
	case http.StatusServiceUnavailable:
		// The body was not read: closing spares net/http discarding it
		// from a client that may be sending it slowly.
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		h.plain(w, code, "edge: too many uploads to this origin\n", "")
	default:
		h.plain(w, code, "edge: origin unreachable\n", "")
	}
}

func (h *Handler) reason(err error) string {
	if h.errorReason != nil {
		if s := h.errorReason(err); s != "" {
			return s
		}
	}
	return err.Error()
}

func tenantName(x *Exchange) string {
	if x.Tenant == nil {
		return ""
	}
	return x.Tenant.Domain
}

// done recovers panics, then records the access log line and metrics,
// and recycles the state when it may.
func (h *Handler) done(st *state, r *http.Request) {
	w := &st.responseWriter
	if p := recover(); p != nil {
		st.recycle = false
		if p == http.ErrAbortHandler { //nolint:errorlint // sentinel panic value
			h.record(w, r)
			panic(p)
		}
		h.log.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
			slog.String("tenant", tenantName(w.x)), slog.String("host", r.Host),
			slog.String("path", r.URL.Path), slog.Any("panic", p),
			slog.String("stack", string(debug.Stack())))
		if w.hijacked || w.wroteHeader {
			// Part of a response is out: the connection cannot be reused
			// sanely, let the server close it.
			w.err = fmt.Errorf("panic: %v", p)
			h.record(w, r)
			panic(http.ErrAbortHandler)
		}
		h.plain(w, http.StatusInternalServerError, "edge: internal error\n", "")
	}
	h.record(w, r)
	if st.recycle {
		ds := st.direct // set: only the direct path recycles
		*ds = directState{}
		*st = state{direct: ds}
		h.states.Put(st)
	}
}

// record writes the access log line and updates the metrics.
func (h *Handler) record(w *responseWriter, r *http.Request) {
	status := w.status
	if w.clientGone || (status == 0 && r.Context().Err() != nil) {
		status = StatusClientClosedRequest
	}
	h.m.observe(status, w.cache, w.total, w.x.OriginTime, w.x.Tenant)
	if !h.accessLog {
		return
	}
	if h.access != nil {
		now := time.Now()
		e := accesslog.Entry{
			Time:     now,
			Tenant:   tenantName(w.x),
			Host:     r.Host,
			Method:   r.Method,
			Path:     r.URL.Path,
			Status:   status,
			Bytes:    w.bytes,
			Origin:   w.x.OriginTime,
			Total:    w.total,
			Duration: now.Sub(w.start),
			Proto:    r.Proto,
			Cache:    cacheLabels[w.cache],

			RequestID: w.reqID[0],
			ClientIP:  clientIP(r.RemoteAddr),
			UserAgent: firstValue(r.Header, "User-Agent"),
		}
		if w.err != nil {
			e.Error = w.err.Error()
		}
		h.access.Log(&e)
		return
	}
	if !h.log.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	attrs := [...]slog.Attr{
		slog.String("tenant", tenantName(w.x)),
		slog.String("host", r.Host),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", w.bytes),
		slog.Float64("origin_ms", ms(w.x.OriginTime)),
		slog.Float64("total_ms", ms(w.total)),
		slog.Float64("duration_ms", ms(time.Since(w.start))),
		slog.String("proto", r.Proto),
		slog.String("cache", cacheLabels[w.cache]),
		slog.String("request_id", w.reqID[0]),
		slog.String("client_ip", clientIP(r.RemoteAddr)),
		slog.String("user_agent", firstValue(r.Header, "User-Agent")),
	}
	n := len(attrs)
	if w.err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelInfo, "request", append(attrs[:n:n], slog.String("error", w.err.Error()))...)
		return
	}
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs[:]...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// bufferPool is the default BufferPool.
type bufferPool struct{ p sync.Pool }

func newBufferPool(size int) *bufferPool {
	bp := &bufferPool{}
	bp.p.New = func() any { b := make([]byte, size); return &b }
	return bp
}

func (bp *bufferPool) Get() *[]byte  { return bp.p.Get().(*[]byte) }
func (bp *bufferPool) Put(b *[]byte) { bp.p.Put(b) }
