package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// fastUpstream answers every request in-process with a small response, so
// that the benchmark measures the handler, not a network.
type fastUpstream struct {
	target *url.URL
	body   string
}

func (f *fastUpstream) RoundTripper(*tenantcfg.Tenant) (http.RoundTripper, *url.URL, error) {
	return f, f.target, nil
}

type fastResponse struct {
	resp http.Response
	body strings.Reader
}

func (f *fastUpstream) RoundTrip(*http.Request) (*http.Response, error) {
	r := &fastResponse{}
	r.body.Reset(f.body)
	r.resp = http.Response{
		StatusCode:    200,
		Header:        http.Header{"Content-Type": {"text/html"}, "Content-Length": {"13"}},
		Body:          io.NopCloser(&r.body),
		ContentLength: int64(len(f.body)),
	}
	return &r.resp, nil
}

// discardWriter is a ResponseWriter whose header map is reused.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Flush()                      {}

func benchHandler(b *testing.B, host string) {
	target, _ := url.Parse("http://origin.internal")
	h, err := New(Config{
		Routes:    routesOf(tenant("shop.example", target.String())),
		Upstreams: &fastUpstream{target: target, body: "<html></html>"},
	})
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+host+"/products/42?color=red", nil)
	req.RemoteAddr = "203.0.113.7:51234"
	req.RequestURI = req.URL.RequestURI()
	req.Header = http.Header{
		"User-Agent":      {"bench"},
		"Accept":          {"text/html"},
		"Accept-Encoding": {"gzip, br"},
		"Connection":      {"keep-alive"},
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		delete(req.Header, "X-Forwarded-For")
		delete(req.Header, "X-Forwarded-Proto")
		delete(req.Header, "X-Forwarded-Host")
		delete(req.Header, "Via")
		delete(req.Header, "X-Request-Id")
		h.ServeHTTP(w, req)
	}
	if w.code == 0 {
		b.Fatal("no response")
	}
}

// BenchmarkHandlerPassThrough is the proxy's hot path against an
// in-process origin: route, license, header rewrite, fetch, copy, timing
// headers, metrics (access log off: discard logger). The fake origin
// allocates its response (1 alloc/op of the total).
func BenchmarkHandlerPassThrough(b *testing.B) { benchHandler(b, "shop.example") }

// BenchmarkHandlerUnknownHost is the 403 path.
func BenchmarkHandlerUnknownHost(b *testing.B) { benchHandler(b, "nope.example") }

// cacheableUpstream answers with a fixed cacheable body; a hit benchmark
// calls it once (the fill).
type cacheableUpstream struct {
	target      *url.URL
	body        string
	contentType string
	calls       int
}

func (u *cacheableUpstream) RoundTripper(*tenantcfg.Tenant) (http.RoundTripper, *url.URL, error) {
	return u, u.target, nil
}

func (u *cacheableUpstream) RoundTrip(*http.Request) (*http.Response, error) {
	u.calls++
	return &http.Response{
		StatusCode: 200,
		Header: http.Header{
			"Content-Type":   {u.contentType},
			"Cache-Control":  {"max-age=3600"},
			"Content-Length": {strconv.Itoa(len(u.body))},
		},
		Body:          io.NopCloser(strings.NewReader(u.body)),
		ContentLength: int64(len(u.body)),
	}, nil
}

// benchCacheHit measures the whole handler on a cache hit: route,
// license, header cleaning, L1 lookup, headers and body from the stored
// object through the compression writer, timing headers, metrics (access
// log off: discard logger).
func benchCacheHit(b *testing.B, body, contentType, acceptEncoding, wantCE string) {
	c, comp := newCacheCompressor(b, cache.Config{})
	target, _ := url.Parse("http://origin.internal")
	up := &cacheableUpstream{target: target, body: body, contentType: contentType}
	tn := tenant("shop.example", target.String())
	tn.OriginIndex = 123456 // every tenant added since generations has one: the key then carries it
	h, err := New(Config{
		Routes:       routesOf(tn),
		Upstreams:    up,
		Cache:        c,
		WrapWriter:   CompressWriter(comp),
		DecodeOrigin: CompressDecoder(comp),
	})
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://shop.example/assets/app?v=42", nil)
	req.RemoteAddr = "203.0.113.7:51234"
	req.RequestURI = req.URL.RequestURI()
	req.Header = http.Header{
		"User-Agent":      {"bench"},
		"Accept":          {"*/*"},
		"Accept-Encoding": {acceptEncoding},
		"Connection":      {"keep-alive"},
	}
	w := &countingWriter{discardWriter: discardWriter{h: http.Header{}}}
	serve := func() {
		clear(w.h)
		w.n = 0
		delete(req.Header, "X-Forwarded-For")
		delete(req.Header, "X-Forwarded-Proto")
		delete(req.Header, "X-Forwarded-Host")
		delete(req.Header, "Via")
		delete(req.Header, "X-Request-Id")
		h.ServeHTTP(w, req)
	}
	serve() // fill
	serve()
	// br and zstd forms are derived in the background after the fill:
	// wait for them, so the work is not measured as the hit's (a br
	// compressed per response by the writer has no Content-Length).
	if strings.HasPrefix(contentType, "text/") {
		req.Header["Accept-Encoding"] = []string{"br"}
		serve()
		for deadline := time.Now().Add(10 * time.Second); (w.h.Get("Content-Encoding") != "br" || w.h.Get("Content-Length") == "") && time.Now().Before(deadline); serve() {
			time.Sleep(5 * time.Millisecond)
		}
		req.Header["Accept-Encoding"] = []string{acceptEncoding}
		serve()
	}
	if w.code != 200 || w.h.Get("Cache-Status") != "edge; hit" || w.h.Get("Content-Encoding") != wantCE || up.calls != 1 {
		b.Fatalf("not a hit: %d %q %q, origin calls %d", w.code, w.h.Get("Cache-Status"), w.h.Get("Content-Encoding"), up.calls)
	}
	b.SetBytes(int64(w.n))
	b.ReportAllocs()
	for b.Loop() {
		serve()
	}
	if up.calls != 1 {
		b.Fatalf("origin called %d times", up.calls)
	}
}

type countingWriter struct {
	discardWriter
	n int
}

func (w *countingWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// BenchmarkHandlerCacheHit1KB is a 1 KB object (not compressible type).
func BenchmarkHandlerCacheHit1KB(b *testing.B) {
	benchCacheHit(b, strings.Repeat("0123456789abcdef", 64), "application/octet-stream", "gzip, br", "")
}

// BenchmarkHandlerCacheHit40KBGzip is a 40 KB HTML page for a client that
// accepts gzip: the stored gzip bytes are sent as they are.
func BenchmarkHandlerCacheHit40KBGzip(b *testing.B) {
	benchCacheHit(b, benchPage(40<<10), "text/html; charset=utf-8", "gzip, deflate", "gzip")
}

// BenchmarkHandlerCacheHit40KBBr is the same page for a browser (gzip,
// deflate, br, zstd): the stored br form, derived once after the fill.
func BenchmarkHandlerCacheHit40KBBr(b *testing.B) {
	benchCacheHit(b, benchPage(40<<10), "text/html; charset=utf-8", "gzip, deflate, br, zstd", "br")
}

// BenchmarkHandlerCacheHit40KBZstd is the same page for a client that
// prefers zstd.
func BenchmarkHandlerCacheHit40KBZstd(b *testing.B) {
	benchCacheHit(b, benchPage(40<<10), "text/html; charset=utf-8", "zstd, gzip;q=0.8", "zstd")
}

func benchPage(n int) string {
	var sb strings.Builder
	for i := 0; sb.Len() < n; i++ {
		fmt.Fprintf(&sb, "<div class=\"item\"><a href=\"/products/%d\">Product %d</a><p>A fine product, number %d.</p></div>\n", i, i, i*7)
	}
	return sb.String()[:n]
}
