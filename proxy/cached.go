package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// cacheLabel is a request's cache result in logs and metrics: a fixed,
// small set so that the metric's cardinality stays bounded.
type cacheLabel uint8

const (
	cacheNone        cacheLabel = iota // no cache, or answered before it (400/403/308)
	cacheMiss                          // went to the origin through the cache
	cacheHit                           // fresh object from L1/L2/L3
	cacheStale                         // stale object (stale-while-revalidate, stale-if-error, soft purge)
	cacheRevalidated                   // stale object confirmed by the origin's 304
	cacheBypass                        // not cacheable by request (method, Authorization, upgrade)
	numCacheLabels
)

var cacheLabels = [numCacheLabels]string{"none", "miss", "hit", "stale", "revalidated", "bypass"}

func labelOf(o cache.Outcome) cacheLabel {
	switch o {
	case cache.OutcomeHit:
		return cacheHit
	case cache.OutcomeStale:
		return cacheStale
	case cache.OutcomeRevalidated:
		return cacheRevalidated
	case cache.OutcomeBypass:
		return cacheBypass
	}
	return cacheMiss
}

// TenantPolicy is the default Config.CachePolicy: the tenant's replicated
// cache settings (edgectl tenant add/update flags) as a cache.Policy.
func TenantPolicy(t *tenantcfg.Tenant) cache.Policy {
	return cache.Policy{
		DefaultTTL:      t.Cache.DefaultTTL,
		OverrideTTL:     t.Cache.OverrideTTL,
		CacheSetCookie:  t.Cache.CacheCookies,
		CacheAuthorized: t.Cache.CacheAuthorized,

		StaleIfError:         t.Cache.StaleIfError,
		StaleWhileRevalidate: t.Cache.StaleWhileRevalidate,
		KeepCDNCacheControl:  t.Cache.KeepCDNCacheControl,
		ClientNoCache:        t.Cache.ClientNoCache,
	}
}

// serveCached answers a routed, licensed request through the cache: a
// hit is written by the cache; a miss runs fetchForCache (the fetch chain) and
// the cache writes what it returns. Compression wraps the writer the cache
// writes to (see cacheWriter); timing headers are stamped by the handler's
// writer underneath once BeforeWrite has set the origin time.
func (h *Handler) serveCached(st *state, r *http.Request) {
	w, x := &st.responseWriter, &st.x
	var dst http.ResponseWriter = w
	if h.wrapWriter != nil {
		st.cw = cacheWriter{w: w, r: r, h: h}
		dst = &st.cw
	}
	var variant string
	if h.variant != nil {
		variant = h.variant(x)
	}
	var fetchCtx context.Context
	if x.interim != nil {
		st.fctx = fetchContext{Context: r.Context(), st: st}
		fetchCtx = &st.fctx
	}
	res, err := h.cache.Serve(dst, r, cache.Request{
		Tenant:      x.Tenant.Domain,
		Generation:  x.Tenant.OriginIndex,
		Host:        x.Host,
		Variant:     variant,
		Policy:      h.cachePolicy(x.Tenant),
		Persist:     variant != "",
		BeforeWrite: st,
		Pass:        st,
		Context:     fetchCtx,
	}, h.cacheFetch)
	w.cache = labelOf(res.Outcome)
	x.OriginTime = res.OriginDuration
	var closer io.Closer
	if st.cw.dst != nil && st.cw.dst != http.ResponseWriter(w) {
		closer, _ = st.cw.dst.(io.Closer)
	}
	switch {
	case err == nil:
	case errors.Is(err, cache.ErrTruncated):
		if r.Context().Err() != nil {
			w.clientGone = true
			return
		}
		// The origin broke off mid-body: abort so the client sees a
		// truncated response, not a complete one.
		w.err = err
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "origin body failed",
			slog.String("tenant", x.Tenant.Domain), slog.String("host", x.Host),
			slog.String("reason", h.reason(err)))
		panic(http.ErrAbortHandler)
	default: // nothing was written
		if closer != nil {
			_ = closer.Close()
		}
		h.fail(w, x, err)
		return
	}
	if closer != nil {
		if cerr := closer.Close(); cerr != nil {
			w.clientGone = true
		}
	}
}

// FetchPass implements cache.PassFetcher: a URL the cache has marked
// uncacheable goes to the origin as if there were no cache, through the
// same fetch chain as an uncached request.
// An origin that sends a coding the client did not accept is decoded,
// as on the cache path.
func (st *state) FetchPass(r *http.Request) (*http.Response, error) {
	resp, err := st.h.fetch(&st.x)
	if err != nil {
		return nil, err
	}
	return st.h.decode(resp, r)
}

// BeforeWrite implements cache.BeforeWriter: it records the origin time
// the response waited for (0 on a hit), which the handler's writer stamps
// into the timing headers at WriteHeader. A *state in the interface costs
// no allocation.
func (st *state) BeforeWrite(hd http.Header, res cache.Result) {
	st.x.OriginTime = res.OriginDuration
	st.responseWriter.cache = labelOf(res.Outcome)
	if st.x.Tenant.EarlyHints {
		st.cachedHints(hd, res)
	}
	if st.h.wrapWriter == nil {
		return
	}
	st.cw.encoded, st.cw.checked = encoded(hd), true
	if st.cw.encoded {
		return // no wrapper will see this header
	}
	// Header values of stored objects are shared by every hit. A wrapper
	// that adds Accept-Encoding to Vary in place (compress does, when the
	// value lacks it) would write into the stored object: give it a copy.
	if v := hd["Vary"]; len(v) > 0 && !varyHasAcceptEncoding(v) {
		hd["Vary"] = append([]string(nil), v...)
	}
}

// cacheWriter is the writer the cache writes to when a WrapWriter is
// configured. It calls the wrapper only when the cache writes the header,
// and not at all for a response that already has a Content-Encoding (a
// gzip hit): the wrapper must pass such a response through untouched, so
// calling it would only cost time on every hit. A wrapper error there
// cannot answer 502 any more (the cache has committed to a response): the
// response goes out unwrapped and the error is logged.
type cacheWriter struct {
	w   *responseWriter
	r   *http.Request
	h   *Handler
	dst http.ResponseWriter // nil until the header is written

	// encoded is encoded(Header()) once checked (by BeforeWrite, right
	// before the header is written), so a hit looks it up once.
	encoded, checked bool
}

func (cw *cacheWriter) Header() http.Header { return cw.w.Header() }

func (cw *cacheWriter) WriteHeader(code int) {
	if cw.dst == nil {
		cw.dst = cw.w
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			cw.dst = nil // informational: the real status decides
			cw.w.WriteHeader(code)
			return
		}
		if !cw.checked {
			cw.encoded = encoded(cw.w.Header())
		}
		if !cw.encoded {
			if d, err := cw.h.wrapWriter(cw.w, cw.r, nil); err == nil {
				cw.dst = d
			} else {
				cw.h.log.LogAttrs(cw.r.Context(), slog.LevelWarn, "response wrapper failed",
					slog.String("tenant", tenantName(cw.w.x)), slog.String("host", cw.w.x.Host),
					slog.String("error", err.Error()))
			}
		}
	}
	cw.dst.WriteHeader(code)
}

func (cw *cacheWriter) Write(b []byte) (int, error) {
	if cw.dst == nil {
		cw.WriteHeader(http.StatusOK)
	}
	return cw.dst.Write(b)
}

// Flush sends buffered data to the client (event streams through the
// cache's pass path flush after every read).
func (cw *cacheWriter) Flush() {
	if cw.dst == nil {
		cw.WriteHeader(http.StatusOK)
	}
	flushWriter(cw.dst)
}

// Unwrap lets http.ResponseController reach the writers underneath.
func (cw *cacheWriter) Unwrap() http.ResponseWriter {
	if cw.dst != nil {
		return cw.dst
	}
	return cw.w
}

// encoded reports whether a response header carries a content coding
// other than identity.
func encoded(h http.Header) bool {
	ce := h["Content-Encoding"]
	return len(ce) > 0 && ce[0] != "" && !strings.EqualFold(ce[0], "identity")
}

// acceptsEventStream reports whether a request asks for server-sent
// events: such long-lived streams bypass the cache.
func acceptsEventStream(h http.Header) bool {
	for _, v := range h["Accept"] {
		if strings.Contains(v, "text/event-stream") {
			return true
		}
	}
	return false
}

func varyHasAcceptEncoding(v []string) bool {
	for _, s := range v {
		if strings.Contains(s, "*") || containsFold(s, "accept-encoding") {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII sub.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// fetchForCache is the cache's Fetcher (one per Handler, so a request
// allocates no closure): it runs the fetch chain (Stages, then the origin)
// for the request the cache prepared. The tenant is looked up again from
// the request's Host, so a background revalidation uses the tenant's
// current origin.
//
// A fetch whose context cannot be canceled (a collapsed miss, detached
// from the client that started it) is bounded by FetchTimeout: for the
// response headers, then for each read of the body, so a stalled origin
// cannot hold the waiters or a goroutine forever while a long healthy
// download still completes.
func (h *Handler) fetchForCache(ctx context.Context, out *http.Request) (*http.Response, error) {
	host, err := NormalizeHost(out.Host)
	if err != nil {
		return nil, fmt.Errorf("cache fetch: %w", err)
	}
	t := h.lookup.Lookup(host)
	if t == nil {
		return nil, fmt.Errorf("cache fetch: no tenant serves %s any more", host)
	}
	fx := &Exchange{Tenant: t, Host: host, Request: out, Start: time.Now()}
	if st, ok := ctx.Value(stateKey{}).(*state); ok {
		fx.interim = st // a fetch for this client, not a background one: its 103s go to it
	}
	if ctx.Done() != nil {
		resp, err := h.fetch(fx)
		if err != nil {
			return nil, err
		}
		return h.decode(resp, out)
	}
	fctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(h.fetchTimeout, func() { cancel(errFetchTimeout) })
	fx.Request = out.WithContext(fctx)
	resp, err := h.fetch(fx)
	timer.Stop()
	if err != nil {
		if errors.Is(context.Cause(fctx), errFetchTimeout) {
			err = fmt.Errorf("%w after %s: %w", errFetchTimeout, h.fetchTimeout, err)
		}
		cancel(nil)
		return nil, err
	}
	resp.Body = &timedBody{rc: resp.Body, ctx: fctx, cancel: cancel, timer: timer, idle: h.fetchTimeout}
	return h.decode(resp, out)
}

// decode applies DecodeOrigin for the Accept-Encoding the cache sent.
func (h *Handler) decode(resp *http.Response, out *http.Request) (*http.Response, error) {
	if h.decodeOrigin == nil {
		return resp, nil
	}
	if err := h.decodeOrigin(resp, out.Header.Get("Accept-Encoding")); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// fetchTimeoutError is the cause of a fetch cut by FetchTimeout; it is a
// timeout for statusForError (504).
type fetchTimeoutError struct{}

func (fetchTimeoutError) Error() string { return "origin fetch timed out" }
func (fetchTimeoutError) Timeout() bool { return true }

var errFetchTimeout error = fetchTimeoutError{}

// timedBody bounds each read of a detached fetch's body and releases the
// fetch's context on Close.
type timedBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	idle   time.Duration
}

func (b *timedBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.idle)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF && errors.Is(context.Cause(b.ctx), errFetchTimeout) {
		err = fmt.Errorf("reading body: %w: %w", errFetchTimeout, err)
	}
	return n, err
}

func (b *timedBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}
