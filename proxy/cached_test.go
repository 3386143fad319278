package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/h1"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// These tests run the handler with a real cache and compressor in front
// of httptest origins that count their requests, wired as node wires
// them.

// testClock is a settable clock for the cache's freshness.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// countingOrigin is an httptest origin that counts the requests it gets.
type countingOrigin struct {
	url  string
	hits atomic.Int64
	srv  interface{ Close() }
}

func newCountingOrigin(t *testing.T, h http.HandlerFunc) *countingOrigin {
	t.Helper()
	o := &countingOrigin{}
	s := origin(t, func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		h(w, r)
	})
	o.url, o.srv = s.URL, s
	return o
}

type cachedProxy struct {
	*testProxy
	cache *cache.Cache
	clock *testClock
}

// startCachedProxy starts a proxy with a cache (on a settable clock), the
// real compressor, and cfg's other hooks.
func startCachedProxy(t *testing.T, routes Routes, cfg Config) *cachedProxy {
	t.Helper()
	clock := &testClock{t: time.Now()}
	c, comp := newCacheCompressor(t, cache.Config{MaxBytes: 64 << 20, Now: clock.Now})
	cfg.Cache = c
	cfg.WrapWriter = CompressWriter(comp)
	cfg.DecodeOrigin = CompressDecoder(comp)
	return &cachedProxy{testProxy: startProxy(t, routes, proxyOpts{cfg: cfg}), cache: c, clock: clock}
}

// get sends a request with an explicit Accept-Encoding (no transparent
// decoding) and returns the response with its raw body.
func (p *cachedProxy) get(t *testing.T, method, host, path, acceptEncoding string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, p.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	req.Header.Set("Accept-Encoding", acceptEncoding)
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	return resp, readAll(t, resp)
}

func wantCacheStatus(t *testing.T, resp *http.Response, code int, prefix string) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("status %d, want %d (Cache-Status %q)", resp.StatusCode, code, resp.Header.Get("Cache-Status"))
	}
	if cs := resp.Header.Get("Cache-Status"); !strings.HasPrefix(cs, prefix) {
		t.Fatalf("Cache-Status %q, want prefix %q", cs, prefix)
	}
}

var timingValue = regexp.MustCompile(`^\d+\.\d\dms$`)

// timing checks the three timing headers and returns X-Origin-Time.
func timing(t *testing.T, resp *http.Response) string {
	t.Helper()
	ot, tt, st := resp.Header.Get("X-Origin-Time"), resp.Header.Get("X-Total-Time"), resp.Header.Values("Server-Timing")
	if !timingValue.MatchString(ot) || !timingValue.MatchString(tt) {
		t.Fatalf("timing headers X-Origin-Time %q X-Total-Time %q", ot, tt)
	}
	want := "origin;dur=" + strings.TrimSuffix(ot, "ms") + ", total;dur=" + strings.TrimSuffix(tt, "ms")
	if len(st) != 1 || st[0] != want {
		t.Fatalf("Server-Timing %q, want %q", st, want)
	}
	return ot
}

func gunzip(t *testing.T, s string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return string(b)
}

func TestCacheMissThenHit(t *testing.T) {
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, "object "+r.URL.Path)
	})
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url)), Config{})

	resp, body := p.get(t, "GET", "shop.example", "/a", "")
	wantCacheStatus(t, resp, 200, "edge; fwd=miss; stored")
	timing(t, resp)
	if body != "object /a" {
		t.Fatalf("miss body %q", body)
	}
	resp, body = p.get(t, "GET", "shop.example", "/a", "")
	wantCacheStatus(t, resp, 200, "edge; hit")
	if ot := timing(t, resp); ot != "0.00ms" {
		t.Errorf("hit X-Origin-Time %q, want 0.00ms", ot)
	}
	if body != "object /a" || resp.Header.Get("Age") == "" {
		t.Fatalf("hit body %q, Age %q", body, resp.Header.Get("Age"))
	}
	if n := o.hits.Load(); n != 1 {
		t.Fatalf("origin hit %d times, want 1", n)
	}

	lines := p.accessLines("/a")
	if len(lines) != 2 || lines[0]["cache"] != "miss" || lines[1]["cache"] != "hit" || lines[1]["origin_ms"] != float64(0) {
		t.Fatalf("access log: %v", lines)
	}
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "edge_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + " "
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	if got["cache=miss code=2xx "] != 1 || got["cache=hit code=2xx "] != 1 || len(got) != 6*6 {
		t.Fatalf("edge_requests_total: %v", got)
	}
}

func TestCacheGzipHitServedAsStored(t *testing.T) {
	page := strings.Repeat("<p>hello edge, a cached page</p>\n", 1200) // ~40 KB
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/pre" { // origin sends gzip, not storable: streamed as is
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, page)
			zw.Close()
			return
		}
		io.WriteString(w, page)
	})
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url)), Config{})

	resp, miss := p.get(t, "GET", "shop.example", "/", "gzip")
	wantCacheStatus(t, resp, 200, "edge; fwd=miss; stored")
	if resp.Header.Get("Content-Encoding") != "gzip" || gunzip(t, miss) != page {
		t.Fatalf("miss: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	// Clients that prefer gzip to the br and zstd forms derived in the
	// background (TestCacheStoredBrZstdForms covers those).
	for _, ae := range []string{"gzip", "gzip, deflate", "br;q=0.1, gzip, zstd;q=0.2"} {
		resp, hit := p.get(t, "GET", "shop.example", "/", ae)
		wantCacheStatus(t, resp, 200, "edge; hit")
		timing(t, resp)
		if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
			t.Fatalf("%q: Content-Encoding %q, want the stored gzip", ae, ce)
		}
		// The stored bytes as is: identical to what the miss sent, with
		// their length, and decoding once gives the page.
		if hit != miss || resp.ContentLength != int64(len(miss)) || gunzip(t, hit) != page {
			t.Fatalf("%q: hit body is not the stored gzip (%d bytes, stored %d)", ae, len(hit), len(miss))
		}
		if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
			t.Fatalf("%q: Vary %q", ae, resp.Header.Get("Vary"))
		}
	}
	// A client without gzip gets identity; one that takes only br gets
	// br (from the compression writer until the stored form is there).
	resp, body := p.get(t, "GET", "shop.example", "/", "identity")
	wantCacheStatus(t, resp, 200, "edge; hit")
	if resp.Header.Get("Content-Encoding") != "" || body != page {
		t.Fatalf("identity hit: Content-Encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(body))
	}
	resp, body = p.get(t, "GET", "shop.example", "/", "br")
	wantCacheStatus(t, resp, 200, "edge; hit")
	if resp.Header.Get("Content-Encoding") != "br" {
		t.Fatalf("br hit: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	if b, err := io.ReadAll(brotli.NewReader(strings.NewReader(body))); err != nil || string(b) != page {
		t.Fatalf("br hit does not decode to the page: %v", err)
	}
	if n := o.hits.Load(); n != 1 {
		t.Fatalf("origin hit %d times, want 1", n)
	}

	// An uncacheable gzip response is passed through once, never
	// compressed again; a client without gzip gets it decoded.
	resp, body = p.get(t, "GET", "shop.example", "/pre", "br, gzip")
	wantCacheStatus(t, resp, 200, "edge; fwd=miss; detail=no-store")
	if resp.Header.Get("Content-Encoding") != "gzip" || gunzip(t, body) != page {
		t.Fatalf("pre-compressed miss: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	resp, body = p.get(t, "GET", "shop.example", "/pre", "identity")
	if resp.Header.Get("Content-Encoding") != "" || body != page {
		t.Fatalf("pre-compressed miss for identity client: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
}

func TestCacheHeadFromGetEntry(t *testing.T) {
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" {
			t.Errorf("origin got %s", r.Method)
		}
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "twelve bytes")
	})
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url)), Config{})
	p.get(t, "GET", "shop.example", "/h", "")
	resp, body := p.get(t, "HEAD", "shop.example", "/h", "")
	wantCacheStatus(t, resp, 200, "edge; hit")
	timing(t, resp)
	if body != "" || resp.Header.Get("Content-Length") != "12" {
		t.Fatalf("HEAD: body %q, Content-Length %q", body, resp.Header.Get("Content-Length"))
	}
	if n := o.hits.Load(); n != 1 {
		t.Fatalf("origin hit %d times, want 1", n)
	}
}

func TestCacheUnknownHostNeverTouchesCache(t *testing.T) {
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	suspended := tenant("old.example", o.url)
	suspended.License.Status = tenantcfg.LicenseSuspended
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url), suspended), Config{})
	for _, host := range []string{"nope.example", "old.example"} {
		resp, _ := p.get(t, "GET", host, "/", "")
		if resp.StatusCode != 403 || resp.Header.Get("Cache-Status") != "" {
			t.Fatalf("%s: %d, Cache-Status %q", host, resp.StatusCode, resp.Header.Get("Cache-Status"))
		}
		timing(t, resp)
	}
	st := p.cache.Stats()
	if st.L1.Hits+st.L1.Misses != 0 || st.OriginFetches != 0 || o.hits.Load() != 0 {
		t.Fatalf("403s reached the cache or origin: %+v, origin %d", st, o.hits.Load())
	}
	if l := p.accessLines("/"); len(l) != 2 || l[0]["cache"] != "none" {
		t.Fatalf("access log: %v", l)
	}
}

func TestCacheStaleIfErrorOriginDown(t *testing.T) {
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, stale-if-error=300")
		io.WriteString(w, "still here")
	})
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url)), Config{})
	resp, _ := p.get(t, "GET", "shop.example", "/s", "")
	wantCacheStatus(t, resp, 200, "edge; fwd=miss; stored")
	o.srv.Close() // the origin dies
	p.clock.Advance(20 * time.Second)

	resp, body := p.get(t, "GET", "shop.example", "/s", "")
	wantCacheStatus(t, resp, 200, "edge; fwd=stale; detail=stale-if-error")
	timing(t, resp)
	if body != "still here" {
		t.Fatalf("stale body %q", body)
	}
	if l := p.accessLines("/s"); l[len(l)-1]["cache"] != "stale" {
		t.Fatalf("access log: %v", l[len(l)-1])
	}
	// Past the stale-if-error window the error goes through the
	// handler's mapping: 502 with the reason in the log.
	p.clock.Advance(400 * time.Second)
	resp, body = p.get(t, "GET", "shop.example", "/s", "")
	if resp.StatusCode != 502 || body != "edge: origin unreachable\n" || resp.Header.Get("X-Total-Time") == "" {
		t.Fatalf("past stale-if-error: %d %q", resp.StatusCode, body)
	}
	if !strings.Contains(p.logs.String(), `"msg":"origin fetch failed","tenant":"shop.example","host":"shop.example","status":502`) {
		t.Fatalf("no error line:\n%s", p.logs.String())
	}
}

func TestCacheErrorMapping(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	p := startCachedProxy(t, routesOf(tenant("slow.example", slow.url), tenant("dead.example", dead)),
		Config{FetchTimeout: 300 * time.Millisecond})

	start := time.Now()
	resp, body := p.get(t, "GET", "slow.example", "/", "")
	if resp.StatusCode != 504 || body != "edge: origin timed out\n" {
		t.Fatalf("slow origin: %d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("FetchTimeout did not bound the detached fetch: %v", d)
	}
	if resp, _ := p.get(t, "GET", "dead.example", "/", ""); resp.StatusCode != 502 {
		t.Fatalf("dead origin: %d", resp.StatusCode)
	}
	if resp, _ := p.get(t, "POST", "dead.example", "/form", ""); resp.StatusCode != 502 {
		t.Fatalf("dead origin, POST: %d", resp.StatusCode)
	}

	// A client that leaves while its (detached) miss is in flight is a 499.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/gone", nil)
	req.Host = "slow.example"
	if _, err := http.DefaultTransport.RoundTrip(req); err == nil {
		t.Fatal("request with a 100 ms deadline to a stuck origin succeeded")
	}
	testkit.Eventually(t, 5*time.Second, "the 499 in the access log", func() bool {
		l := p.accessLines("/gone")
		return len(l) == 1 && l[0]["status"] == float64(StatusClientClosedRequest)
	})
}

func TestCacheCoalescingThroughHandler(t *testing.T) {
	release := make(chan struct{})
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "shared")
	})
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url)), Config{})
	tr := &http.Transport{MaxIdleConnsPerHost: 100, MaxConnsPerHost: 100}
	t.Cleanup(tr.CloseIdleConnections)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", p.url+"/hot", nil)
			req.Host = "shop.example"
			resp, err := tr.RoundTrip(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "shared" || resp.Header.Get("X-Total-Time") == "" {
				errs <- resp.Status + " " + string(b)
			}
		})
	}
	testkit.Eventually(t, 10*time.Second, "99 requests waiting on one fetch", func() bool {
		return p.cache.Stats().Coalesced == n-1
	})
	close(release)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := o.hits.Load(); got != 1 {
		t.Fatalf("origin hit %d times for %d concurrent misses, want 1", got, n)
	}
}

func TestCacheTenantPolicy(t *testing.T) {
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/short" {
			w.Header().Set("Cache-Control", "max-age=1")
		}
		io.WriteString(w, "body") // no freshness, no validator: not storable by default
	})
	plain := tenant("plain.example", o.url)
	ttl := tenant("ttl.example", o.url)
	ttl.Cache = tenantcfg.CachePolicy{DefaultTTL: 30 * time.Second}
	override := tenant("override.example", o.url)
	override.Cache = tenantcfg.CachePolicy{DefaultTTL: 60 * time.Second, OverrideTTL: true}
	p := startCachedProxy(t, routesOf(plain, ttl, override), Config{})

	for _, step := range []struct {
		host, path string
		advance    time.Duration
		want       string
	}{
		{"plain.example", "/", 0, "edge; fwd=miss; detail=no-freshness"},
		{"plain.example", "/", 0, "edge; fwd=miss"},
		{"ttl.example", "/", 0, "edge; fwd=miss; stored"},
		{"override.example", "/short", 0, "edge; fwd=miss; stored"},
		{"ttl.example", "/", 20 * time.Second, "edge; hit"},              // t = 20 s
		{"override.example", "/short", 10 * time.Second, "edge; hit"},    // t = 30 s: OverrideTTL beats max-age=1
		{"ttl.example", "/", 10 * time.Second, "edge; fwd=miss; stored"}, // t = 40 s: DefaultTTL 30 s passed
	} {
		p.clock.Advance(step.advance)
		resp, _ := p.get(t, "GET", step.host, step.path, "")
		wantCacheStatus(t, resp, 200, step.want)
	}
}

func TestCachePurgeMakesNextRequestMiss(t *testing.T) {
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, "v")
	})
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url, "www.shop.example")), Config{})
	p.get(t, "GET", "shop.example", "/p", "")
	p.get(t, "GET", "www.shop.example", "/p", "")
	resp, _ := p.get(t, "GET", "shop.example", "/p", "")
	wantCacheStatus(t, resp, 200, "edge; hit")

	if err := p.cache.ApplyPurge(cache.Purge{ID: "t1", Index: 7, Tenant: "shop.example", URLs: []string{"/p"}}); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"shop.example", "www.shop.example"} {
		resp, _ := p.get(t, "GET", host, "/p", "")
		wantCacheStatus(t, resp, 200, "edge; fwd=miss; stored")
		resp, _ = p.get(t, "GET", host, "/p", "")
		wantCacheStatus(t, resp, 200, "edge; hit")
	}
	if n := o.hits.Load(); n != 4 {
		t.Fatalf("origin hit %d times, want 4 (2 fills, 2 after the purge)", n)
	}
	if p.cache.PurgeIndex() != 7 {
		t.Fatalf("PurgeIndex %d", p.cache.PurgeIndex())
	}
}

func TestCacheOriginBreaksOffMidBody(t *testing.T) {
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Write(bytes.Repeat([]byte("x"), 64<<10))
		w.(http.Flusher).Flush()
		c, _, _ := http.NewResponseController(w).Hijack()
		c.Close()
	})
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url)), Config{})
	req, _ := http.NewRequest("GET", p.url+"/", nil)
	req.Host = "shop.example"
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		n, rerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Fatalf("truncated origin body read as complete (%d bytes)", n)
		}
	}
	testkit.Eventually(t, 5*time.Second, "the origin failure in the log", func() bool {
		return strings.Contains(p.logs.String(), `"msg":"origin body failed","tenant":"shop.example"`)
	})
}

func TestCacheVariant(t *testing.T) {
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "lang="+r.Header.Get("Accept-Language"))
	})
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url)), Config{
		Variant: func(x *Exchange) string { return x.Request.Header.Get("Accept-Language") },
	})
	get := func(lang string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", p.url+"/v", nil)
		req.Host = "shop.example"
		req.Header.Set("Accept-Language", lang)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, readAll(t, resp)
	}
	for _, step := range []struct{ lang, status, body string }{
		{"fr", "edge; fwd=miss", "lang=fr"},
		{"de", "edge; fwd=miss", "lang=de"},
		{"fr", "edge; hit", "lang=fr"},
		{"de", "edge; hit", "lang=de"},
	} {
		resp, body := get(step.lang)
		wantCacheStatus(t, resp, 200, step.status)
		if body != step.body {
			t.Fatalf("%s: body %q", step.lang, body)
		}
	}
}

// Header values of a stored object are shared by all its hits; the
// compression writer must not modify them (run with -race).
func TestCacheSharedHeadersNotModified(t *testing.T) {
	random := make([]byte, 8<<10) // incompressible: stored as identity
	rand.Read(random)
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Vary", "Cookie")
		w.Write(random)
	})
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url)), Config{})
	p.get(t, "GET", "shop.example", "/r", "br")
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", p.url+"/r", nil)
			req.Host = "shop.example"
			req.Header.Set("Accept-Encoding", []string{"br", "identity"}[i%2])
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if v := resp.Header.Values("Vary"); len(v) != 1 || v[0] != "Cookie, Accept-Encoding" {
				t.Errorf("Vary %q", v)
			}
		})
	}
	wg.Wait()
	// A range answer is never compressed: it shows the stored Vary.
	req, _ := http.NewRequest("GET", p.url+"/r", nil)
	req.Host = "shop.example"
	req.Header.Set("Range", "bytes=0-9")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 206 || resp.Header.Get("Vary") != "Cookie" {
		t.Fatalf("range: %d, stored Vary became %q", resp.StatusCode, resp.Header.Get("Vary"))
	}
	if n := o.hits.Load(); n != 1 {
		t.Fatalf("origin hit %d times", n)
	}
}

// writeCountingListener counts the writes made to its connections: one
// Write on a net.Conn is one write(2).
type writeCountingListener struct {
	net.Listener
	writes, closed atomic.Int64
}

func (l *writeCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &writeCountingConn{Conn: c, l: l}, nil
}

type writeCountingConn struct {
	net.Conn
	l *writeCountingListener
}

func (c *writeCountingConn) Write(p []byte) (int, error) {
	c.l.writes.Add(1)
	return c.Conn.Write(p)
}

func (c *writeCountingConn) Close() error {
	c.l.closed.Add(1)
	return c.Conn.Close()
}

// A small cache hit leaves in one write, header and body together, for a
// client with and without gzip: nothing on the hit path flushes the
// header on its own.
func TestCacheSmallHitOneWrite(t *testing.T) {
	for _, server := range []string{"net/http", "h1"} {
		t.Run(strings.ReplaceAll(server, "/", "-"), func(t *testing.T) { testSmallHitOneWrite(t, server) })
	}
}

// testSmallHitOneWrite checks a small hit leaves in one write(2) from
// either client-facing server: net/http (HTTPS, handed-over connections)
// or proxy/h1 (plain HTTP/1.1).
func testSmallHitOneWrite(t *testing.T, server string) {
	small := strings.Repeat("0123456789abcdef", 64)
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, small)
	})
	c, comp := newCacheCompressor(t, cache.Config{})
	h, err := New(Config{
		Routes: routesOf(tenant("shop.example", o.url)), Upstreams: newTransportUpstreams(t, nil),
		Cache: c, WrapWriter: CompressWriter(comp), DecodeOrigin: CompressDecoder(comp),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &writeCountingListener{Listener: ln}
	if server == "h1" {
		srv := &h1.Server{Handler: h}
		go srv.Serve(cl)
		t.Cleanup(func() { srv.Close() })
	} else {
		srv := &http.Server{Handler: h}
		go srv.Serve(cl)
		t.Cleanup(func() { srv.Close() })
	}

	// get sends one request on its own connection and returns the
	// response and the number of writes the server made for it.
	get := func(acceptEncoding string) (*http.Response, string, int64) {
		t.Helper()
		conn, err := net.Dial("tcp", cl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		before, closed := cl.writes.Load(), cl.closed.Load()
		req := "GET /small HTTP/1.1\r\nHost: shop.example\r\nAccept-Encoding: " + acceptEncoding + "\r\n\r\n"
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		testkit.Eventually(t, 5*time.Second, "server closing the connection", func() bool { return cl.closed.Load() > closed })
		return resp, string(body), cl.writes.Load() - before
	}

	resp, _, _ := get("gzip")
	wantCacheStatus(t, resp, 200, "edge; fwd=miss; stored")
	for _, ae := range []string{"gzip", "identity", "br"} {
		resp, body, writes := get(ae)
		wantCacheStatus(t, resp, 200, "edge; hit")
		timing(t, resp)
		if ae == "gzip" {
			if resp.Header.Get("Content-Encoding") != "gzip" || gunzip(t, body) != small {
				t.Fatalf("gzip hit: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
			}
		}
		if ae == "identity" && body != small {
			t.Fatalf("identity hit: %d bytes", len(body))
		}
		if ae != "br" && writes != 1 {
			// br is compressed per hit: the encoder may write more than once.
			t.Fatalf("%s hit: %d writes, want header and body in one", ae, writes)
		}
	}
	if n := o.hits.Load(); n != 1 {
		t.Fatalf("origin hit %d times, want 1", n)
	}
}

// TestCacheCookiesFetcherGetsSetCookie: with --cache-cookies the client
// whose request fetched the response gets its Set-Cookie; the stored copy
// has none, so a later hit does not replay it (issue 17 item 8).
func TestCacheCookiesFetcherGetsSetCookie(t *testing.T) {
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Add("Set-Cookie", "session=abc; Path=/")
		io.WriteString(w, "body")
	})
	tn := tenant("cookie.example", o.url)
	tn.Cache = tenantcfg.CachePolicy{CacheCookies: true}
	p := startCachedProxy(t, routesOf(tn), Config{})
	resp, _ := p.get(t, "GET", "cookie.example", "/", "")
	wantCacheStatus(t, resp, 200, "edge; fwd=miss; stored")
	if got := resp.Header.Get("Set-Cookie"); got != "session=abc; Path=/" {
		t.Fatalf("fetching client: Set-Cookie %q", got)
	}
	resp, _ = p.get(t, "GET", "cookie.example", "/", "")
	wantCacheStatus(t, resp, 200, "edge; hit")
	if got := resp.Header.Get("Set-Cookie"); got != "" {
		t.Fatalf("hit replayed Set-Cookie %q", got)
	}
}

// TestCacheTenantStaleWindows: --cache-stale-if-error lets a tenant ride
// out an origin outage (connection refused or a 5xx) within the window
// although its origin sends no stale-if-error, and
// --cache-stale-while-revalidate serves stale while refreshing (issue 17
// item 6).
func TestCacheTenantStaleWindows(t *testing.T) {
	var failing atomic.Bool
	var clock atomic.Pointer[testClock]
	body := func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		// The origin's Date follows the proxy's clock, or a refresh after
		// Advance would arrive already stale.
		w.Header().Set("Date", clock.Load().Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "body")
	}
	down := newCountingOrigin(t, body)  // closed after the first fill
	five := newCountingOrigin(t, body)  // answers 500 after the first fill
	plain := newCountingOrigin(t, body) // closed too, without the policy
	swr := newCountingOrigin(t, body)
	tDown := tenant("down.example", down.url)
	tDown.Cache = tenantcfg.CachePolicy{StaleIfError: time.Hour}
	tFive := tenant("five.example", five.url)
	tFive.Cache = tenantcfg.CachePolicy{StaleIfError: time.Hour}
	tPlain := tenant("plain.example", plain.url)
	tSWR := tenant("swr.example", swr.url)
	tSWR.Cache = tenantcfg.CachePolicy{StaleWhileRevalidate: 10 * time.Minute}
	p := startCachedProxy(t, routesOf(tDown, tFive, tPlain, tSWR), Config{})
	clock.Store(p.clock)

	for _, host := range []string{"down.example", "five.example", "plain.example", "swr.example"} {
		resp, _ := p.get(t, "GET", host, "/", "")
		wantCacheStatus(t, resp, 200, "edge; fwd=miss; stored")
	}
	down.srv.Close()
	plain.srv.Close()
	failing.Store(true)
	p.clock.Advance(2 * time.Minute) // stale by a minute

	resp, b := p.get(t, "GET", "down.example", "/", "")
	wantCacheStatus(t, resp, 200, "edge; fwd=stale; detail=stale-if-error")
	if b != "body" {
		t.Fatalf("stale body %q", b)
	}
	resp, _ = p.get(t, "GET", "five.example", "/", "")
	wantCacheStatus(t, resp, 200, "edge; fwd=stale; fwd-status=500; detail=stale-if-error")
	resp, _ = p.get(t, "GET", "plain.example", "/", "")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("no policy, origin down: status %d (Cache-Status %q), want 502", resp.StatusCode, resp.Header.Get("Cache-Status"))
	}

	failing.Store(false)
	resp, _ = p.get(t, "GET", "swr.example", "/", "")
	wantCacheStatus(t, resp, 200, "edge; hit; detail=stale")
	testkit.Eventually(t, 5*time.Second, "background refresh", func() bool {
		resp, _ := p.get(t, "GET", "swr.example", "/", "")
		return resp.Header.Get("Cache-Status") == "edge; hit"
	})

	p.clock.Advance(2 * time.Hour) // past the stale-if-error window
	failing.Store(true)
	resp, _ = p.get(t, "GET", "down.example", "/", "")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("past the window: status %d (Cache-Status %q), want 502", resp.StatusCode, resp.Header.Get("Cache-Status"))
	}
	resp, _ = p.get(t, "GET", "five.example", "/", "")
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("past the window: status %d, want the origin's 500", resp.StatusCode)
	}
}

// TestCacheStoredBrZstdForms: the br and zstd forms the cache derives
// once are sent as stored (same bytes, Content-Length, no compression per
// hit) through the real compression writer, q-values honoured; an
// origin's own br is stored as received and decoded for the others.
func TestCacheStoredBrZstdForms(t *testing.T) {
	page := strings.Repeat("<p>hello edge, a cached page in br and zstd</p>\n", 800)
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/origin-br" && strings.Contains(r.Header.Get("Accept-Encoding"), "br") {
			w.Header().Set("Content-Encoding", "br")
			bw := brotli.NewWriterLevel(w, 4)
			io.WriteString(bw, page)
			bw.Close()
			return
		}
		io.WriteString(w, page)
	})
	p := startCachedProxy(t, routesOf(tenant("shop.example", o.url)), Config{})
	resp, _ := p.get(t, "GET", "shop.example", "/", "gzip")
	wantCacheStatus(t, resp, 200, "edge; fwd=miss; stored")
	// Until a form is there the stored gzip answers (the client takes
	// gzip too, so the writer compresses nothing).
	stored := map[string]string{}
	for _, ce := range []string{"br", "zstd"} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, body := p.get(t, "GET", "shop.example", "/", ce+", gzip;q=0.5")
			if resp.Header.Get("Content-Encoding") == ce {
				stored[ce] = body
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no stored %s form after 10s", ce)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, tc := range []struct{ ae, want string }{
		{"gzip, deflate, br, zstd", "br"},
		{"br;q=1, gzip;q=0.5", "br"},
		{"zstd, br;q=0.9, gzip;q=0.8", "zstd"},
	} {
		resp, body := p.get(t, "GET", "shop.example", "/", tc.ae)
		wantCacheStatus(t, resp, 200, "edge; hit")
		if ce := resp.Header.Get("Content-Encoding"); ce != tc.want || body != stored[tc.want] || resp.ContentLength != int64(len(body)) {
			t.Fatalf("%q: Content-Encoding %q, %d bytes (length %d); want the stored %s form (%d bytes)",
				tc.ae, ce, len(body), resp.ContentLength, tc.want, len(stored[tc.want]))
		}
		if et := resp.Header.Get("Vary"); !strings.Contains(et, "Accept-Encoding") {
			t.Fatalf("%q: Vary %q", tc.ae, et)
		}
	}
	if b, err := io.ReadAll(brotli.NewReader(strings.NewReader(stored["br"]))); err != nil || string(b) != page {
		t.Fatalf("the stored br form does not decode to the page: %v", err)
	}
	if n := o.hits.Load(); n != 1 {
		t.Fatalf("origin hit %d times, want 1", n)
	}

	// The origin's own br: the browser gets the origin's bytes, the
	// others the page decoded (gzip or identity), from one fill.
	resp, brBody := p.get(t, "GET", "shop.example", "/origin-br", "gzip, deflate, br, zstd")
	wantCacheStatus(t, resp, 200, "edge; fwd=miss; stored")
	if resp.Header.Get("Content-Encoding") != "br" {
		t.Fatalf("origin br miss: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	resp, body := p.get(t, "GET", "shop.example", "/origin-br", "br")
	wantCacheStatus(t, resp, 200, "edge; hit")
	if body != brBody {
		t.Fatal("the origin's br bytes were not sent as stored")
	}
	resp, body = p.get(t, "GET", "shop.example", "/origin-br", "gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" || gunzip(t, body) != page {
		t.Fatalf("origin br for a gzip client: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	resp, body = p.get(t, "GET", "shop.example", "/origin-br", "identity")
	if resp.Header.Get("Content-Encoding") != "" || body != page {
		t.Fatalf("origin br for an identity client: Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	if n := o.hits.Load(); n != 2 {
		t.Fatalf("origin hit %d times, want 2", n)
	}
}
