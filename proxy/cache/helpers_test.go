package cache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// fakeClock is a settable clock for freshness tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// origin is an httptest origin that counts requests and remembers the
// last one it saw.
type origin struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	last *http.Request
}

func newOrigin(t testing.TB, h func(w http.ResponseWriter, r *http.Request, n int64)) *origin {
	t.Helper()
	o := &origin{}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := o.hits.Add(1)
		o.mu.Lock()
		o.last = r
		o.mu.Unlock()
		h(w, r, n)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) lastRequest() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// fetcherTo returns a Fetcher that sends requests to base.
func fetcherTo(base string) Fetcher {
	u, _ := url.Parse(base)
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	return func(ctx context.Context, r *http.Request) (*http.Response, error) {
		r = r.WithContext(ctx)
		r.URL.Scheme = u.Scheme
		r.URL.Host = u.Host
		return tr.RoundTrip(r)
	}
}

// front is a proxy front-end that serves through the cache.
type front struct {
	srv    *httptest.Server
	c      *Cache
	client *http.Client
	last   atomic.Pointer[Result]
}

func newFront(t testing.TB, c *Cache, originURL string, req Request) *front {
	t.Helper()
	f := &front{c: c}
	fetch := fetcherTo(originURL)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res, err := c.Serve(w, r, req, fetch)
		if errors.Is(err, ErrTruncated) {
			panic(http.ErrAbortHandler)
		}
		if err != nil {
			http.Error(w, "bad gateway: "+err.Error(), http.StatusBadGateway)
		}
		f.last.Store(&res)
	}))
	t.Cleanup(f.srv.Close)
	f.client = &http.Client{
		Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 256},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return f
}

type response struct {
	code   int
	header http.Header
	body   string
}

// frontRequest is a request for www.example.com to the test server at
// base, with hdr as name, value pairs.
func frontRequest(t testing.TB, base, method, path string, hdr ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "www.example.com"
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

func (f *front) do(t testing.TB, method, path string, hdr ...string) response {
	t.Helper()
	resp, err := f.client.Do(frontRequest(t, f.srv.URL, method, path, hdr...))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (f *front) get(t testing.TB, path string, hdr ...string) response {
	t.Helper()
	return f.do(t, http.MethodGet, path, hdr...)
}

func newCache(t testing.TB, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func wantStatus(t testing.TB, r response, code int, cacheStatus string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status = %d, want %d (Cache-Status %q, body %q)", r.code, code, r.header.Get("Cache-Status"), r.body)
	}
	if cs := r.header.Get("Cache-Status"); !strings.HasPrefix(cs, cacheStatus) {
		t.Fatalf("Cache-Status = %q, want prefix %q", cs, cacheStatus)
	}
}

// gunzipString decodes a gzip body.
func gunzipString(t testing.TB, s string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return string(b)
}
