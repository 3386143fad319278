package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/compress"
	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// The direct path relays an origin response's header lines as bytes,
// editing them on the way, instead of parsing them into an http.Header,
// copying that into the response's and writing it out again. It serves
// the requests the cache has marked hit-for-miss (the origin said the
// URL is not storable: no-store, private, Set-Cookie, …), the bulk of
// uncacheable traffic, when nothing would change the response's body:
//
//   - a GET on the plain-HTTP listener (proxy/h1), to a plain-HTTP origin
//     on the lean client (upstream.DirectTripper);
//   - the tenant has no transform rules (DirectConfig.Untransformed);
//   - the response has a Content-Length body whose head fits the
//     connection's buffer, and compression leaves it as it is (its type
//     is not compressible, it is small, already encoded in a coding the
//     client accepts, or the client accepts none).
//
// The cache offers each request it passes under a mark (PassDirect,
// cache.DirectPasser), after its own lookup. Everything else takes the
// full path: what the request decides, before the origin is asked; what
// the response decides, with the response (the origin is not asked
// twice). The result is the same bytes but for the
// order and case of header fields: the same fields are removed (hop-by-hop,
// those Connection names, the cache's own) and added (Cache-Status, Vary,
// the timing headers); TestDirectMatchesFullPath compares both paths.

// DirectConfig enables the direct path; see the comment above.
type DirectConfig struct {
	// Untransformed reports that the Stages pass a tenant's requests and
	// responses through untouched: the direct path does not run them,
	// for the responses it relays nor for those it hands back to the
	// cache (cache.DirectOutcome.Fallback). Required.
	Untransformed func(t *tenantcfg.Tenant) bool
	// Compressor is the one behind Config.WrapWriter and
	// Config.DecodeOrigin (CompressWriter, CompressDecoder): the direct
	// path takes only the responses it would leave as they are. nil when
	// there is no compression.
	Compressor *compress.Compressor
}

var _ cache.DirectPasser = (*state)(nil)

// headWriter is implemented by proxy/h1's ResponseWriter.
type headWriter interface {
	WriteHead(code int, fields []byte, contentLength int64, hasDate bool) bool
}

// PassDirect implements cache.DirectPasser: the cache found a
// hit-for-miss mark for the request and offers to let the direct path
// answer it. The outcome is one of three:
//
//   - declined (the zero DirectOutcome, nothing sent): the request is not
//     for the direct path, and the cache's pass-through takes it;
//   - handled: the response was relayed, or the origin failed;
//   - fallback: the origin answered but the response is not for the
//     direct path; it comes back as the outcome's Fallback, decoded as
//     FetchPass decodes, and the cache relays it as it would FetchPass's
//     (the origin is not asked twice). The fetch chain's Stages are not
//     run for it: DirectConfig.Untransformed says they would pass it
//     through untouched.
func (st *state) PassDirect(r *http.Request, m cache.PassMark) cache.DirectOutcome {
	h, x := st.h, &st.x
	if h.direct == nil || r.Method != http.MethodGet {
		return cache.DirectOutcome{}
	}
	w := &st.responseWriter
	hw, ok := w.rw.(headWriter)
	if !ok || !h.direct.Untransformed(x.Tenant) {
		return cache.DirectOutcome{}
	}
	rt, target, err := h.upstreams.RoundTripper(x.Tenant)
	if err != nil {
		return cache.DirectOutcome{} // the full path reports it
	}
	dt, ok := rt.(upstream.DirectTripper)
	if !ok {
		return cache.DirectOutcome{}
	}

	ds := st.direct
	if ds == nil {
		ds = new(directState)
		st.direct = ds
	}
	out := ds.out.init(r, target, x.Tenant.Origin.HostHeader)
	ds.dbuf.Interim = x.interim
	start := time.Now()
	d, resp, ok, err := dt.RoundTripDirect(out, &ds.dbuf)
	x.OriginTime = time.Since(start)
	switch {
	case !ok:
		return cache.DirectOutcome{}
	case err != nil:
		return st.originFailed(m, err)
	case resp != nil:
		return st.fallback(r, m, resp) // the full path relays it
	}

	ae := firstValue(r.Header, "Accept-Encoding")
	var f directFields
	// A body without a Content-Type gets a sniffed one on the full path
	// (as from net/http): rare enough to leave to it.
	if !f.scan(d.Fields) || f.ctype == nil && d.ContentLength > 0 || !f.untouched(h.direct.Compressor, ae, d) {
		return st.fallback(r, m, d.Response(out))
	}
	bp := h.pool.Get()
	defer h.pool.Put(bp)
	pf := h.passFields.Get().(*passFields)
	status := m.Passed(d.StatusCode, f.cacheHeader(pf), d.ContentLength, firstValue(r.Header, "Authorization") != "")
	pf.release()
	h.passFields.Put(pf)
	w.stampDirect(d.StatusCode)
	head := f.appendRelayed((*bp)[:0], d.Fields)
	head = appendField(head, "Cache-Status", status)
	if f.vary && !f.varyHasAE {
		head = appendField(head, "Vary", "Accept-Encoding")
	}
	head = appendTimingFields(head, x.OriginTime, w.total)
	head = appendField(head, headerRequestID, w.reqID[0])
	if !hw.WriteHead(d.StatusCode, head, d.ContentLength, f.date) {
		// Cannot happen for a GET the h1 server has not answered yet;
		// the full path copes anyway.
		w.wroteHeader, w.status = false, 0
		return st.fallback(r, m, d.Response(out))
	}
	h.m.direct.Inc()
	res := cache.Result{CacheStatus: status, StatusCode: d.StatusCode, OriginDuration: x.OriginTime}
	err = relayBody(w, d.Body, *bp)
	st.recycle = err == nil // the body is closed: nothing refers to st any more
	return cache.DirectOutcome{Handled: true, Result: res, Err: err}
}

// fallback hands the origin's response back to the cache's pass-through,
// which relays it in place of FetchPass's: decoded as FetchPass decodes
// (an encoding the client did not accept), with the origin time the
// direct path measured. A failed decoding is an origin failure, as it is
// from FetchPass.
func (st *state) fallback(r *http.Request, m cache.PassMark, resp *http.Response) cache.DirectOutcome {
	resp, err := st.h.decode(resp, r)
	if err != nil {
		return st.originFailed(m, err)
	}
	return cache.DirectOutcome{Fallback: resp, FallbackDuration: st.x.OriginTime}
}

// originFailed is the outcome of a direct round trip that got no
// response: nothing written, an error wrapping cache.ErrOrigin.
func (st *state) originFailed(m cache.PassMark, err error) cache.DirectOutcome {
	return cache.DirectOutcome{
		Handled: true,
		Result:  cache.Result{CacheStatus: m.Status(), OriginDuration: st.x.OriginTime},
		Err:     fmt.Errorf("%w: %w", cache.ErrOrigin, err),
	}
}

// directState is the direct path's origin request and the buffer its
// response lives in, in one allocation that recycled states keep.
type directState struct {
	out  outgoing
	dbuf upstream.DirectBuf
}

// relayBody copies a Content-Length body to the client. A client that
// left is recorded on w; an origin that breaks off is an error wrapping
// cache.ErrTruncated, on which the handler aborts the response (the
// client must not take a truncated body for a complete one).
func relayBody(w *responseWriter, body io.ReadCloser, buf []byte) error {
	defer body.Close()
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				w.clientGone = true
				return nil
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("%w: %w", cache.ErrTruncated, rerr)
		}
	}
}

// directFields is what the direct path learns from an origin response's
// header lines in one pass.
type directFields struct {
	ctype, cenc []byte
	crange      bool
	noTransform bool
	date        bool
	vary        bool // compression wants Accept-Encoding in Vary
	varyHasAE   bool // Vary already lists Accept-Encoding or *
	conn        [4][]byte
	nconn       int
	cacheVals   [8]string
	cacheKeys   [8]string
	ncache      int
}

// dropped names the response fields the full path does not relay: the
// hop-by-hop ones (cache.droppedHeaders), the cache's own, Content-Length
// (the server writes it) and the timing and request ID headers Edge sets.
var dropped = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Cache-Status", "Surrogate-Key", "Surrogate-Control", "Cache-Tag",
	"Content-Length", headerOriginTime, headerTotalTime, headerRequestID,
}

// cacheFields are the fields the cache's decision reads.
var cacheFields = []string{
	"Cache-Control", "Expires", "Date", "Last-Modified", "Etag", "Set-Cookie", "Vary", "Content-Encoding",
}

// scan reads the header lines (validated by the upstream package). It
// reports false for what the direct path leaves to the full one: more
// than a few Connection tokens or caching fields, or targeted cache
// control (RFC 9213), which the cache decides on and strips.
func (f *directFields) scan(fields []byte) bool {
	for rest := fields; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		ln := rest[:i-1]
		rest = rest[i+1:]
		colon := bytes.IndexByte(ln, ':')
		k, v := ln[:colon], trimOWSBytes(ln[colon+1:])
		switch {
		case fold(k, "Content-Type"):
			if f.ctype == nil {
				f.ctype = v
			}
		case fold(k, "Content-Encoding"):
			if f.cenc == nil {
				f.cenc = v
			}
		case fold(k, "Content-Range"):
			f.crange = f.crange || len(v) > 0
		case fold(k, "Connection"):
			for _, tok := range bytes.Split(v, []byte(",")) {
				if tok = trimOWSBytes(tok); len(tok) == 0 || fold(tok, "close") || fold(tok, "keep-alive") {
					continue
				}
				if f.nconn == len(f.conn) {
					return false
				}
				f.conn[f.nconn] = tok
				f.nconn++
			}
		}
		if fold(k, "Cdn-Cache-Control") || fold(k, "Edge-Cache-Control") {
			return false // targeted cache control: decided and stripped on the full path
		}
		if fold(k, "Cache-Control") && hasToken(v, "no-transform") {
			f.noTransform = true
		}
		for _, c := range cacheFields {
			if fold(k, c) {
				if f.ncache == len(f.cacheVals) {
					return false
				}
				f.cacheKeys[f.ncache], f.cacheVals[f.ncache] = c, string(v)
				f.ncache++
				break
			}
		}
	}
	return true
}

// untouched asks the compression whether the response goes out as it is.
func (f *directFields) untouched(c *compress.Compressor, ae string, d *upstream.Direct) bool {
	if c == nil {
		return true
	}
	hd := compress.Head{
		Code:            d.StatusCode,
		ContentType:     string(f.ctype),
		ContentEncoding: string(f.cenc),
		ContentRange:    f.crange,
		NoTransform:     f.noTransform,
		ContentLength:   d.ContentLength,
	}
	ok, vary := c.Untouched(ae, &hd)
	f.vary = vary
	return ok
}

// passFields is the header the cache decides a direct response on,
// reused through Handler.passFields: PassMark.Passed reads it and keeps
// nothing of it.
type passFields struct {
	h    http.Header
	vals [len(directFields{}.cacheVals)]string
}

// cacheHeader fills pf with the caching fields and returns its header
// (nil when there are none). release empties pf for the next use.
func (f *directFields) cacheHeader(pf *passFields) http.Header {
	if f.ncache == 0 {
		return nil
	}
	h := pf.h
	copy(pf.vals[:], f.cacheVals[:f.ncache])
	for i := range f.ncache {
		k := f.cacheKeys[i]
		if old, ok := h[k]; ok {
			h[k] = append(old, pf.vals[i])
			continue
		}
		h[k] = pf.vals[i : i+1 : i+1]
	}
	return h
}

// release empties pf: no key, no value kept alive.
func (pf *passFields) release() {
	clear(pf.h)
	pf.vals = [len(pf.vals)]string{}
}

// appendRelayed appends the lines of fields the full path would relay.
func (f *directFields) appendRelayed(b, fields []byte) []byte {
next:
	for rest := fields; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i+1]
		rest = rest[i+1:]
		k := line[:bytes.IndexByte(line, ':')]
		for _, name := range dropped {
			if fold(k, name) {
				continue next
			}
		}
		for _, c := range f.conn[:f.nconn] {
			if bytes.EqualFold(k, c) {
				continue next
			}
		}
		switch v := trimOWSBytes(line[len(k)+1 : len(line)-2]); {
		case fold(k, "Date"):
			f.date = true
		case fold(k, "Vary") && (hasToken(v, "Accept-Encoding") || hasToken(v, "*")):
			f.varyHasAE = true
		}
		b = append(b, line...)
	}
	return b
}

// firstValue is the first value of the canonical key k.
func firstValue(h http.Header, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// appendTimingFields appends the X-Origin-Time, X-Total-Time and
// Server-Timing lines setTimingHeaders would set.
func appendTimingFields(b []byte, origin, total time.Duration) []byte {
	b = append(b, headerOriginTime+": "...)
	b = append(appendMillis(b, origin), "ms\r\n"+headerTotalTime+": "...)
	b = append(appendMillis(b, total), "ms\r\n"+headerServerTiming+": origin;dur="...)
	b = append(appendMillis(b, origin), ", total;dur="...)
	return append(appendMillis(b, total), "\r\n"...)
}

func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}

// fold reports whether k equals name ignoring ASCII case. name holds
// letters, '-' and '*' only; setting bit 0x20 maps no other byte a valid
// field name or token can hold onto those.
func fold(k []byte, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := 0; i < len(k); i++ {
		a, b := k[i]|0x20, name[i]|0x20
		if a != b {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds tok (ASCII
// case-insensitive).
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if fold(trimOWSBytes(item), tok) {
			return true
		}
	}
	return false
}

// trimOWSBytes drops leading and trailing spaces and tabs (bytes.Trim
// with a cutset is several times slower).
func trimOWSBytes(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
