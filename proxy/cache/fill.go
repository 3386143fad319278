package cache

// Miss: one origin fetch per key however many requests wait for it
// (request coalescing), the request the cache sends for it, and the
// decision on what comes back (store it, stream it to one client, or
// keep a stale object standing in). Storing is in store.go.

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/edgeproxy/edge/proxy/compress"
)

// flight is one origin fetch that concurrent requests for a key share.
type flight struct {
	done chan struct{}
	out  outcome
}

// outcome is the result of an origin fetch: an object to serve (stored or
// stale), a response to stream to one client only, or an error.
type outcome struct {
	obj    *object
	resp   *http.Response
	prefix []byte // body bytes already read from resp
	status string
	stored bool
	err    error
	dur    time.Duration
	// markReason says why the response was not stored, when that is a
	// property of the response and the next one is likely the same: a
	// hit-for-miss mark is worth keeping (markable).
	markReason string
	// setCookie is the origin's Set-Cookie for the client whose request
	// fetched a stored response (Policy.CacheSetCookie): the stored copy
	// has none, and land does not hand it to collapsed waiters.
	setCookie []string
}

func (c *Cache) join(key string) (*flight, bool) {
	c.flightMu.Lock()
	defer c.flightMu.Unlock()
	if f, ok := c.flights[key]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	c.flights[key] = f
	return f, true
}

func (c *Cache) land(key string, f *flight, out outcome) {
	f.out = outcome{obj: out.obj, status: out.status, stored: out.stored, err: out.err, dur: out.dur}
	c.flightMu.Lock()
	delete(c.flights, key)
	c.flightMu.Unlock()
	close(f.done)
}

// fill fetches q.key from the origin once for all concurrent requests.
// stale is the object a revalidation would refresh, or nil.
func (q *request) fill(stale *object) (Result, error) {
	c, r := q.c, q.r
	f, leader := c.join(q.key)
	if leader {
		// The fetch is detached from this client, but whether the client
		// is still there decides its status (499) afterwards: ask for Done
		// so a server that watches the connection lazily (proxy/h1) starts.
		_ = r.Context().Done()
		ctx := context.WithoutCancel(q.fetchContext(r))
		out := q.fetchOrigin(ctx, stale)
		if out.markReason != "" && stale == nil {
			q.markHitForMiss(out.markReason)
		}
		c.land(q.key, f, out)
		return q.writeOutcome(out)
	}
	c.stats.coalesced.Add(1)
	select {
	case <-f.done:
	case <-r.Context().Done():
		return Result{}, fmt.Errorf("waiting for a collapsed fetch: %w", context.Cause(r.Context()))
	}
	out := f.out
	switch {
	case out.err != nil:
		if stale != nil && c.staleIfError(stale) {
			c.stats.stale.Add(1)
			return q.serveObject(stale, Result{CacheStatus: cacheName + "; fwd=stale; collapsed; detail=stale-if-error"})
		}
		return Result{OriginDuration: out.dur}, out.err
	case out.obj != nil && (len(out.obj.vary) == 0 || out.obj.varyVals == varyValues(r, out.obj.vary)):
		return q.serveObject(out.obj, Result{CacheStatus: out.status + "; collapsed", OriginDuration: out.dur})
	}
	// The leader's response was not shareable: fetch for this client.
	out = q.fetchOrigin(context.WithoutCancel(q.fetchContext(r)), stale)
	return q.writeOutcome(out)
}

// fetched is one origin response with what its freshness and purge stamp
// are computed from.
type fetched struct {
	resp              *http.Response
	stamp             uint64    // purge index current when the fetch began
	reqTime, respTime time.Time // the cache's clock around the fetch (RFC 9111 section 4.2.3)
}

// fetchOrigin does one origin fetch for a cacheable request and decides
// what to do with the response. stale, when set, is revalidated (its
// validators are sent, a 304 refreshes it, an error may serve it).
func (q *request) fetchOrigin(ctx context.Context, stale *object) outcome {
	c := q.c
	c.stats.originFetch.Add(1)
	f := fetched{stamp: c.purges.latest.Load(), reqTime: c.now()}
	start := time.Now()
	resp, err := q.fetch(ctx, originRequest(ctx, q.r, stale))
	dur := time.Since(start)
	f.resp, f.respTime = resp, c.now()
	fwd := "; fwd=miss"
	switch {
	case q.fwdRequest:
		fwd = "; fwd=request"
	case stale != nil:
		fwd = "; fwd=stale"
	}
	if err != nil {
		if stale != nil && c.staleIfError(stale) {
			c.stats.stale.Add(1)
			return outcome{obj: stale, status: cacheName + fwd + "; detail=stale-if-error", dur: dur}
		}
		return outcome{err: fmt.Errorf("%w: %w", ErrOrigin, err), dur: dur}
	}
	code := resp.StatusCode
	if stale != nil && code == http.StatusNotModified {
		resp.Body.Close()
		status := cacheName + fwd + "; fwd-status=304"
		cookies := resp.Header["Set-Cookie"]
		if o := q.refresh(stale, &f); o != nil {
			q.store(o)
			return outcome{obj: o, status: status + "; stored", stored: true, dur: dur, setCookie: cookies}
		}
		return outcome{obj: stale, status: status, dur: dur, setCookie: cookies}
	}
	if stale != nil && code >= 500 && c.staleIfError(stale) {
		resp.Body.Close()
		c.stats.stale.Add(1)
		return outcome{obj: stale, status: cacheName + fwd + "; fwd-status=" + strconv.Itoa(code) + "; detail=stale-if-error", dur: dur}
	}
	status := cacheName + fwd
	if code != http.StatusOK {
		status += "; fwd-status=" + strconv.Itoa(code)
	}
	fr := decide(code, resp.Header, q.Policy, q.authorized(), f.respTime)
	c.checkStorable(resp.Header, resp.ContentLength, &fr)
	if !fr.storable {
		out := outcome{resp: resp, status: status + "; detail=" + fr.reason, dur: dur}
		if markable(fr.reason) {
			out.markReason = fr.reason
		}
		return out
	}
	body, err := readUpTo(resp.Body, c.cfg.MaxObjectBytes, resp.ContentLength)
	if err != nil {
		resp.Body.Close()
		return outcome{err: fmt.Errorf("%w: read body: %w", ErrOrigin, err), dur: dur}
	}
	if int64(len(body)) > c.cfg.MaxObjectBytes {
		return outcome{resp: resp, prefix: body, status: status + "; detail=too-large", dur: dur, markReason: "too-large"}
	}
	resp.Body.Close()
	o, err := q.build(&f, body, fr)
	if err != nil {
		c.log.Warn("cache: not storing an undecodable response", "host", q.Host, "path", q.pq, "err", err)
		resp.Body = http.NoBody
		return outcome{resp: resp, prefix: body, status: status + "; detail=encoding", dur: dur}
	}
	q.store(o)
	return outcome{obj: o, status: status + "; stored", stored: true, dur: dur, setCookie: resp.Header["Set-Cookie"]}
}

// originRequest prepares the request the Fetcher sends for a cacheable
// request: always GET, no client conditionals or ranges (the cache answers
// those itself), gzip, br and zstd asked for as far as the client takes
// them (originAcceptEncoding), and the stored
// validators when revalidating.
func originRequest(ctx context.Context, r *http.Request, stale *object) *http.Request {
	// A shallow copy with its own header map and URL: a GET without a
	// body has nothing else to deep-copy.
	o := r.WithContext(ctx)
	o.Header = r.Header.Clone()
	u := *r.URL
	o.URL = &u
	o.Trailer = nil
	o.Method = http.MethodGet
	o.RequestURI = ""
	o.Body = http.NoBody
	o.ContentLength = 0
	for _, h := range []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		o.Header.Del(h)
	}
	if ae := originAcceptEncoding(r.Header["Accept-Encoding"]); ae != "" {
		o.Header.Set("Accept-Encoding", ae)
	} else {
		o.Header.Del("Accept-Encoding")
	}
	if stale != nil {
		if stale.etag != "" {
			o.Header.Set("If-None-Match", stale.etag)
		}
		if lm := stale.header.Get("Last-Modified"); lm != "" {
			o.Header.Set("If-Modified-Since", lm)
		}
	}
	return o
}

// originAccepts are the Accept-Encoding values a fill sends, by the set
// of codings (gzip, br, zstd) the client accepts.
var originAccepts = func() (a [1 << 4]string) {
	for s := range compress.Set(len(a)) {
		var parts []string
		for _, e := range [...]compress.Encoding{compress.Brotli, compress.Zstd, compress.Gzip} {
			if s.Has(e) {
				parts = append(parts, e.String())
			}
		}
		a[s] = strings.Join(parts, ", ")
	}
	return a
}()

// originAcceptEncoding is what a fill asks the origin for: the codings
// among gzip, br and zstd the client accepts, so that whatever the
// origin sends, stored or streamed unstored, the client can read; the
// cache decodes what it stores for the other clients.
func originAcceptEncoding(lines []string) string {
	var s compress.Set
	for _, e := range [...]compress.Encoding{compress.Gzip, compress.Brotli, compress.Zstd} {
		if compress.Best(lines, compress.Set(0).Add(e)) == e {
			s = s.Add(e)
		}
	}
	return originAccepts[s]
}

// checkStorable adds what the cache itself cannot store to a storable
// freshness decision: a content coding it cannot serve, or a body over
// MaxObjectBytes.
func (c *Cache) checkStorable(h http.Header, contentLength int64, fr *freshness) {
	if !fr.storable {
		return
	}
	switch ce := strings.ToLower(h.Get("Content-Encoding")); {
	case ce != "" && ce != "gzip" && ce != "br" && ce != "zstd" && ce != "identity":
		fr.storable, fr.reason = false, "encoding"
	case contentLength > c.cfg.MaxObjectBytes:
		fr.storable, fr.reason = false, "too-large"
	}
}
