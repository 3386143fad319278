package cache

// Writing responses: a stored object (the hit path: shared header values,
// 304s for client conditionals, ranges, gzip or identity) and an origin
// response streamed through unstored (pass, bypass, an unstorable miss).

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgeproxy/edge/proxy/compress"
)

// hitStatus and friends are shared, never-modified header values, so a hit
// does not allocate them.
var (
	hitStatusValue      = []string{statusHit}
	hitStaleStatusValue = []string{statusHitStale}
)

func statusValue(s string) []string {
	switch s {
	case statusHit:
		return hitStatusValue
	case statusHitStale:
		return hitStaleStatusValue
	}
	return []string{s}
}

// smallAges holds Age values up to an hour without allocating.
var smallAges = func() [3600][]string {
	var a [3600][]string
	for i := range a {
		a[i] = []string{strconv.Itoa(i)}
	}
	return a
}()

func ageValue(d time.Duration) []string {
	s := int64(d / time.Second)
	if s >= 0 && s < int64(len(smallAges)) {
		return smallAges[s]
	}
	return []string{strconv.FormatInt(max(s, 0), 10)}
}

// headerValue is h.Get(key) for a key already in canonical form: it
// skips the canonicalization Get does on every call, which shows on the
// hit path. Server requests always have canonical keys.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// etagMatch is the weak comparison of RFC 9110 section 8.8.3.2 against an
// If-None-Match list.
func etagMatch(list, etag string) bool {
	if etag == "" {
		return false
	}
	if strings.TrimSpace(list) == "*" {
		return true
	}
	want := strings.TrimPrefix(etag, "W/")
	for part := range strings.SplitSeq(list, ",") {
		if strings.TrimPrefix(strings.TrimSpace(part), "W/") == want {
			return true
		}
	}
	return false
}

// notModified answers a client's conditional GET/HEAD (RFC 9110 section
// 13.2.2: If-None-Match takes precedence over If-Modified-Since).
// An If-Modified-Since that is not exactly one valid HTTP-date is ignored
// (section 13.1.3).
func notModified(r *http.Request, o *object, etag string, now time.Time) bool {
	if o.status != http.StatusOK {
		return false
	}
	if inm := headerValue(r.Header, "If-None-Match"); inm != "" {
		return etagMatch(inm, etag)
	}
	if ims := r.Header["If-Modified-Since"]; len(ims) == 1 && !o.lastModified.IsZero() {
		t, ok := parseHTTPDate(ims[0], now)
		return ok && !o.lastModified.After(t)
	}
	return false
}

// serveObject writes a stored object: 304 for a matching conditional
// request, a byte range for a Range request, otherwise the whole body in
// the best stored coding the client accepts (compress.Best: q-values,
// then br, zstd, gzip), or identity.
func (q *request) serveObject(o *object, res Result) (Result, error) {
	return q.serveObjectAt(o, res, q.c.now())
}

// serveObjectAt is serveObject with the clock already read: the hit path
// reads it once per request (q.now).
func (q *request) serveObjectAt(o *object, res Result, now time.Time) (Result, error) {
	c, w, r := q.c, q.w, q.r
	h := w.Header()
	enc := compress.Identity
	if o.have != 0 {
		enc = compress.Best(r.Header["Accept-Encoding"], o.have)
	}
	src, etag, coded := o.coded(enc)
	if headerValue(r.Header, "Range") != "" && o.status == http.StatusOK {
		return q.serveRange(o, res)
	}
	for k, v := range src {
		h[k] = v
	}
	if q.Policy.KeepCDNCacheControl {
		keepCDN(h, o.header)
	}
	h["Age"] = ageValue(o.age(now))
	h["Cache-Status"] = statusValue(res.CacheStatus)
	code := o.status
	if notModified(r, o, etag, now) {
		code = http.StatusNotModified
		delete(h, "Content-Length")
	}
	res.StatusCode = code
	if q.BeforeWrite != nil {
		res.Outcome = outcomeOf(res.CacheStatus)
		q.BeforeWrite.BeforeWrite(h, res)
	}
	w.WriteHeader(code)
	if r.Method == http.MethodHead || !bodyAllowed(code) {
		return res, nil
	}
	switch {
	case enc != compress.Identity:
		_, _ = w.Write(coded)
		c.stats.saved[enc].Add(o.identLen - int64(len(coded)))
		return res, nil
	case !o.gzipped:
		_, _ = w.Write(o.body)
		return res, nil
	case o.ident != nil:
		_, _ = w.Write(o.ident)
		return res, nil
	}
	zr, err := c.gz.reader(o.body)
	if err != nil {
		return res, nil // the header is out; nothing better to do
	}
	buf := copyBufs.Get().(*[]byte)
	_, _ = io.CopyBuffer(w, zr, *buf)
	copyBufs.Put(buf)
	c.gz.putReader(zr)
	return res, nil
}

// serveRange answers a Range request from the identity body with
// http.ServeContent, which handles If-Range, multiple ranges and 416.
func (q *request) serveRange(o *object, res Result) (Result, error) {
	c, w, r := q.c, q.w, q.r
	body, err := c.gz.identity(o)
	if err != nil {
		return res, err
	}
	h := w.Header()
	for k, v := range o.hdrIdent {
		if k != "Content-Length" {
			h[k] = v
		}
	}
	if q.Policy.KeepCDNCacheControl {
		keepCDN(h, o.header)
	}
	h["Age"] = ageValue(o.age(c.now()))
	h["Cache-Status"] = statusValue(res.CacheStatus)
	if h.Get("Content-Type") == "" {
		h["Content-Type"] = nil // keep ServeContent from sniffing
	}
	sw := &hookWriter{ResponseWriter: w, before: q.BeforeWrite, res: res}
	http.ServeContent(sw, r, "", o.lastModified, bytes.NewReader(body))
	return sw.res, nil
}

// hookWriter calls BeforeWrite when ServeContent writes the header.
type hookWriter struct {
	http.ResponseWriter
	before BeforeWriter
	res    Result
	wrote  bool
}

func (w *hookWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		w.res.StatusCode = code
		w.res.Outcome = outcomeOf(w.res.CacheStatus)
		if w.before != nil {
			w.before.BeforeWrite(w.Header(), w.res)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *hookWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// keepCDN relays a stored CDN-Cache-Control (Policy.KeepCDNCacheControl):
// the stored slice, so a hit does not allocate it.
func keepCDN(h, stored http.Header) {
	if v := stored[cdnCacheControl]; len(v) > 0 {
		h[cdnCacheControl] = v
	}
}

// droppedHeaders are not relayed from an origin response: hop-by-hop
// fields and the cache's own. Surrogate-Control is not honoured
// (docs/cache.md, "Conformance") but still never leaves, as Varnish and
// Fastly strip it. CDN-Cache-Control is dropped separately unless
// Policy.KeepCDNCacheControl.
var droppedHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Cache-Status", "Surrogate-Key", "Surrogate-Control", "Cache-Tag",
	edgeCacheControl,
}

// writeOutcome writes what an origin fetch produced: a stored (or stale)
// object, or the origin's response streamed through, unstored.
func (q *request) writeOutcome(out outcome) (Result, error) {
	w, r := q.w, q.r
	res := Result{CacheStatus: out.status, OriginDuration: out.dur, Stored: out.stored}
	switch {
	case out.err != nil:
		return res, out.err
	case out.obj != nil:
		if len(out.setCookie) > 0 {
			// Only this client's fetch produced the cookie; the object
			// (and every hit on it) has none.
			w.Header()["Set-Cookie"] = out.setCookie
		}
		return q.serveObject(out.obj, res)
	}
	resp := out.resp
	defer resp.Body.Close()
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = v
	}
	for _, c := range resp.Header.Values("Connection") {
		for name := range strings.SplitSeq(c, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, k := range droppedHeaders {
		delete(h, k)
	}
	if !q.Policy.KeepCDNCacheControl {
		delete(h, cdnCacheControl)
	}
	h["Cache-Status"] = []string{out.status}
	res.StatusCode = resp.StatusCode
	if q.BeforeWrite != nil {
		res.Outcome = outcomeOf(res.CacheStatus)
		q.BeforeWrite.BeforeWrite(h, res)
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return res, nil
	}
	if len(out.prefix) > 0 {
		if _, err := w.Write(out.prefix); err != nil {
			return res, nil
		}
	}
	// Unknown length may be a stream (server-sent events): flush as it
	// comes. A read error other than EOF means the origin broke off.
	var rc *http.ResponseController
	if resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		rc = http.NewResponseController(w)
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	for {
		n, err := resp.Body.Read(*buf)
		if n > 0 {
			if _, werr := w.Write((*buf)[:n]); werr != nil {
				return res, nil // the client left
			}
			if rc != nil {
				_ = rc.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, fmt.Errorf("%w: %w", ErrTruncated, err)
		}
	}
	for k, v := range resp.Trailer {
		h[http.TrailerPrefix+k] = v
	}
	return res, nil
}
