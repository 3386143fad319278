package proxy

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/edgeproxy/edge/raftstore"
)

// fastUpstream answers every request in-process with a small response, so
// that the benchmark measures the handler, not a network.
type fastUpstream struct {
	target *url.URL
	body   string
}

func (f *fastUpstream) RoundTripper(*raftstore.Tenant) (http.RoundTripper, *url.URL, error) {
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
