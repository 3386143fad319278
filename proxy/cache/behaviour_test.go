package cache

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

func TestCoalescing(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = io.WriteString(w, "shared")
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	const clients = 100
	var wg sync.WaitGroup
	results := make(chan response, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- f.get(t, "/hot")
		}()
	}
	// Release the origin once every client is either the leader or waiting.
	testkit.Eventually(t, 10*time.Second, "clients to queue", func() bool {
		return o.hits.Load() == 1 && c.Stats().Coalesced == clients-1
	})
	close(release)
	wg.Wait()
	close(results)
	statuses := map[string]int{}
	for r := range results {
		if r.code != 200 || r.body != "shared" {
			t.Fatalf("got %d %q", r.code, r.body)
		}
		statuses[r.header.Get("Cache-Status")]++
	}
	if n := o.hits.Load(); n != 1 {
		t.Fatalf("origin requests %d, want 1", n)
	}
	if statuses["edge; fwd=miss; stored"] != 1 || statuses["edge; fwd=miss; stored; collapsed"] != clients-1 {
		t.Fatalf("Cache-Status counts %v", statuses)
	}
}

func TestCoalescingUncacheableFallsBackToOwnFetch(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			<-release
		}
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "n=%d", n)
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	var wg sync.WaitGroup
	bodies := make(chan string, 10)
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); bodies <- f.get(t, "/private").body }()
	}
	testkit.Eventually(t, 10*time.Second, "clients to queue", func() bool { return c.Stats().Coalesced == 9 })
	close(release)
	wg.Wait()
	close(bodies)
	seen := map[string]bool{}
	for b := range bodies {
		if seen[b] {
			t.Fatalf("two clients shared the uncacheable response %q", b)
		}
		seen[b] = true
	}
}

func TestStaleIfErrorOriginDown(t *testing.T) {
	clk := newFakeClock()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=10, stale-if-error=300")
		_, _ = io.WriteString(w, "still here")
	})
	c := newCache(t, Config{Now: clk.Now})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	wantStatus(t, f.get(t, "/a"), 200, "edge; fwd=miss; stored")
	wantStatus(t, f.get(t, "/b"), 200, "edge; fwd=miss; stored")
	o.srv.Close() // the origin is gone: connections are refused
	clk.Advance(60 * time.Second)
	r := f.get(t, "/a")
	wantStatus(t, r, 200, "edge; fwd=stale; detail=stale-if-error")
	if r.body != "still here" {
		t.Fatalf("body %q", r.body)
	}
	// Never cached: the error reaches the caller, who maps it to 502.
	if r := f.get(t, "/never"); r.code != http.StatusBadGateway {
		t.Fatalf("uncached URL with the origin down: %d", r.code)
	}
	// Past the stale-if-error window there is nothing to stand in.
	clk.Advance(300 * time.Second)
	if r := f.get(t, "/b"); r.code != http.StatusBadGateway {
		t.Fatalf("after the window: %d %q", r.code, r.header.Get("Cache-Status"))
	}
}

func TestRange(t *testing.T) {
	body := strings.Repeat("0123456789", 100) // compressible text, stored gzipped
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Header.Get("Range") != "" {
			t.Errorf("Range forwarded to the origin")
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("ETag", `"r1"`)
		_, _ = io.WriteString(w, body)
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	r := f.get(t, "/r", "Range", "bytes=10-19", "Accept-Encoding", "gzip")
	wantStatus(t, r, http.StatusPartialContent, "edge; fwd=miss; stored")
	if r.body != "0123456789" || r.header.Get("Content-Range") != "bytes 10-19/1000" {
		t.Fatalf("range on miss: %q %q", r.body, r.header.Get("Content-Range"))
	}
	r = f.get(t, "/r", "Range", "bytes=-5")
	wantStatus(t, r, http.StatusPartialContent, "edge; hit")
	if r.body != "56789" || r.header.Get("Content-Encoding") != "" {
		t.Fatalf("suffix range: %q CE %q", r.body, r.header.Get("Content-Encoding"))
	}
	r = f.get(t, "/r", "Range", "bytes=5000-")
	if r.code != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("unsatisfiable range: %d", r.code)
	}
	r = f.get(t, "/r", "Range", "bytes=0-3", "If-Range", `"other"`)
	if r.code != 200 || len(r.body) != 1000 {
		t.Fatalf("If-Range mismatch: %d, %d bytes", r.code, len(r.body))
	}
	if o.hits.Load() != 1 {
		t.Fatalf("origin requests %d, want 1", o.hits.Load())
	}
}

func TestLargeResponseStreamsUnstored(t *testing.T) {
	big := strings.Repeat("x", 256<<10)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.URL.Path == "/chunked" {
			// No Content-Length: the cache finds out while reading.
			for i := 0; i < len(big); i += 32 << 10 {
				_, _ = io.WriteString(w, big[i:i+32<<10])
				w.(http.Flusher).Flush()
			}
			return
		}
		_, _ = io.WriteString(w, big)
	})
	c := newCache(t, Config{MaxBytes: 4 << 20, MaxObjectBytes: 64 << 10})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	for _, p := range []string{"/sized", "/chunked"} {
		for range 2 {
			r := f.get(t, p)
			wantStatus(t, r, 200, "edge; fwd=miss; detail=too-large")
			if r.body != big {
				t.Fatalf("%s: body %d bytes, want %d", p, len(r.body), len(big))
			}
		}
	}
}

func TestL1BoundedInBytes(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(make([]byte, 8<<10))
	})
	const limit = 256 << 10
	c := newCache(t, Config{MaxBytes: limit})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	for i := range 200 {
		f.get(t, fmt.Sprintf("/o%d", i))
	}
	testkit.Eventually(t, 5*time.Second, "evictions", func() bool {
		st := c.Stats()
		return st.Bytes <= limit && st.Evictions > 0
	})
}

// TestHitForMiss checks that once a key answered with an unstorable
// response, concurrent requests for it go to the origin together instead
// of queueing behind one collapsed fetch, and that the key is cached again
// as soon as the origin sends a storable response.
func TestHitForMiss(t *testing.T) {
	const clients = 5
	var inflight atomic.Int64
	var cacheable atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if cacheable.Load() {
			w.Header().Set("Cache-Control", "max-age=60")
			_, _ = io.WriteString(w, "stored")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if n == 1 {
			_, _ = io.WriteString(w, "first")
			return
		}
		// Hold every request until all clients are at the origin at
		// once: with collapsing, only one would ever get here.
		inflight.Add(1)
		deadline := time.Now().Add(5 * time.Second)
		for inflight.Load() < clients && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		_, _ = fmt.Fprintf(w, "together=%d", inflight.Load())
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	wantStatus(t, f.get(t, "/p"), 200, "edge; fwd=miss; detail=no-store")
	if st := c.Stats(); st.HitForMiss != 1 {
		t.Fatalf("HitForMiss = %d after a no-store response, want 1", st.HitForMiss)
	}

	var wg sync.WaitGroup
	results := make(chan response, clients)
	for range clients {
		wg.Add(1)
		go func() { defer wg.Done(); results <- f.get(t, "/p") }()
	}
	wg.Wait()
	close(results)
	for r := range results {
		wantStatus(t, r, 200, "edge; fwd=miss; detail=no-store")
		if r.body != fmt.Sprintf("together=%d", clients) {
			t.Fatalf("body %q: the requests did not reach the origin concurrently", r.body)
		}
	}
	if st := c.Stats(); st.Coalesced != 0 {
		t.Fatalf("Coalesced = %d, want 0 for a hit-for-miss key", st.Coalesced)
	}

	cacheable.Store(true)
	wantStatus(t, f.get(t, "/p"), 200, "edge; fwd=miss; stored")
	r := f.get(t, "/p")
	wantStatus(t, r, 200, "edge; hit")
	if r.body != "stored" {
		t.Fatalf("hit body %q", r.body)
	}
	if n := o.hits.Load(); n != 1+clients+1 {
		t.Fatalf("origin requests %d, want %d", n, 1+clients+1)
	}
}

// TestHitForMissNotForErrors checks that an origin error status does not
// turn collapsing off: a transient failure must not let a herd through.
func TestHitForMissNotForErrors(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	wantStatus(t, f.get(t, "/down"), 503, "edge; fwd=miss")
	if st := c.Stats(); st.HitForMiss != 0 {
		t.Fatalf("HitForMiss = %d after a 503, want 0", st.HitForMiss)
	}
}

// TestSmallGzipObjectKeepsIdentity checks that a small compressible
// object is stored gzipped with its identity bytes beside it, a large one
// without, and that every client gets the right bytes either way.
func TestSmallGzipObjectKeepsIdentity(t *testing.T) {
	small := strings.Repeat("small text ", 100)  // 1.1 KB
	large := strings.Repeat("large text ", 2000) // 22 KB, over keepIdentity
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		if r.URL.Path == "/small" {
			_, _ = io.WriteString(w, small)
		} else {
			_, _ = io.WriteString(w, large)
		}
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	for _, tc := range []struct {
		path, body string
		ident      bool
	}{{"/small", small, true}, {"/large", large, false}} {
		wantStatus(t, f.get(t, tc.path), 200, "edge; fwd=miss; stored")
		obj, ok := c.l1.GetIfPresent(cacheKey("t1", 0, "http", "www.example.com", tc.path, ""))
		if !ok || !obj.gzipped {
			t.Fatalf("%s: not stored gzipped (%v)", tc.path, ok)
		}
		if got := obj.ident != nil; got != tc.ident {
			t.Fatalf("%s: identity copy kept = %v, want %v", tc.path, got, tc.ident)
		}
		r := f.get(t, tc.path)
		wantStatus(t, r, 200, "edge; hit")
		if r.body != tc.body || r.header.Get("Content-Encoding") != "" {
			t.Fatalf("%s: identity hit: %d bytes, Content-Encoding %q", tc.path, len(r.body), r.header.Get("Content-Encoding"))
		}
		r = f.get(t, tc.path, "Accept-Encoding", "gzip")
		if r.header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s: gzip hit has Content-Encoding %q", tc.path, r.header.Get("Content-Encoding"))
		}
		if got := gunzipString(t, r.body); got != tc.body {
			t.Fatalf("%s: gzip hit decodes to %d bytes, want %d", tc.path, len(got), len(tc.body))
		}
		r = f.get(t, tc.path, "Range", "bytes=0-4")
		if r.code != http.StatusPartialContent || r.body != tc.body[:5] {
			t.Fatalf("%s: range: %d %q", tc.path, r.code, r.body)
		}
	}
}

// passTo is a PassFetcher that sends the client's request to the origin
// as it is.
type passTo struct {
	base *url.URL
	tr   *http.Transport
}

func (p passTo) FetchPass(r *http.Request) (*http.Response, error) {
	o := r.Clone(r.Context())
	o.RequestURI = ""
	o.URL.Scheme, o.URL.Host = p.base.Scheme, p.base.Host
	return p.tr.RoundTrip(o)
}

// TestHitForMissPassThrough checks Request.Pass: a key marked
// uncacheable goes to the origin with the client's own headers (its
// Accept-Encoding and Range, which a cache fill rewrites), concurrently,
// and once the origin allows storing again the mark goes, so that the
// next request fills the cache and the one after is a hit.
func TestHitForMissPassThrough(t *testing.T) {
	var cacheable atomic.Bool
	var seen atomic.Pointer[http.Header]
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		h := r.Header.Clone()
		seen.Store(&h)
		if cacheable.Load() {
			w.Header().Set("Cache-Control", "max-age=60")
			_, _ = io.WriteString(w, "stored")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.Header.Get("Range") != "" {
			w.Header().Set("Content-Range", "bytes 0-1/5")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = io.WriteString(w, "pa")
			return
		}
		_, _ = io.WriteString(w, "pass!")
	})
	base, _ := url.Parse(o.srv.URL)
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1", Pass: passTo{base: base, tr: &http.Transport{DisableCompression: true}}})

	wantStatus(t, f.get(t, "/p"), 200, "edge; fwd=miss; detail=no-store") // fill: marks the key
	if h := *seen.Load(); h.Get("Accept-Encoding") != "" {
		t.Fatalf("the fill sent Accept-Encoding %q for a client without one", h.Get("Accept-Encoding"))
	}
	r := f.do(t, "GET", "/p", "Accept-Encoding", "br", "Range", "bytes=0-1")
	wantStatus(t, r, 206, "edge; fwd=miss; fwd-status=206")
	if r.body != "pa" {
		t.Fatalf("pass body %q, want the origin's partial content", r.body)
	}
	if h := *seen.Load(); h.Get("Accept-Encoding") != "br" || h.Get("Range") != "bytes=0-1" {
		t.Fatalf("the pass rewrote the request: origin saw %v", h)
	}
	r = f.get(t, "/p")
	wantStatus(t, r, 200, "edge; fwd=miss; detail=no-store")
	if r.body != "pass!" {
		t.Fatalf("pass body %q", r.body)
	}

	cacheable.Store(true)
	wantStatus(t, f.get(t, "/p"), 200, "edge; fwd=miss")         // storable: the mark goes
	wantStatus(t, f.get(t, "/p"), 200, "edge; fwd=miss; stored") // a fill stores it
	r = f.get(t, "/p")
	wantStatus(t, r, 200, "edge; hit")
	if r.body != "stored" {
		t.Fatalf("hit body %q", r.body)
	}
	if n := o.hits.Load(); n != 5 {
		t.Fatalf("origin requests %d, want 5", n)
	}
}
