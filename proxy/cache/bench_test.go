package cache

import (
	"container/list"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// discardWriter is a minimal ResponseWriter: the benchmark measures the
// cache, not a recorder.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

func benchServeHit(b *testing.B, body string, contentType string, hdr ...string) {
	o := newOrigin(b, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("ETag", `"bench"`)
		_, _ = io.WriteString(w, body)
	})
	c := newCache(b, Config{})
	fetch := fetcherTo(o.srv.URL)
	req := Request{Tenant: "t", Generation: 123456, Host: "www.example.com", Scheme: "https"}
	r, _ := http.NewRequest(http.MethodGet, "https://www.example.com/page?id=1", nil)
	r.RequestURI = "/page?id=1"
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := &discardWriter{h: http.Header{}}
	if _, err := c.Serve(w, r, req, fetch); err != nil {
		b.Fatal(err)
	}
	if compressible(http.Header{"Content-Type": {contentType}}, len(body)) {
		waitVariants(b, c, r, req, fetch)
	}
	clear(w.h)
	if res, _ := c.Serve(w, r, req, fetch); res.CacheStatus != statusHit {
		b.Fatalf("not a hit: %q", res.CacheStatus)
	}
	b.SetBytes(int64(w.n))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		w.n = 0
		_, _ = c.Serve(w, r, req, fetch)
	}
	b.StopTimer()
	if o.hits.Load() != 1 {
		b.Fatalf("origin requests %d, want 1", o.hits.Load())
	}
}

// BenchmarkServeHitL1 is the cache-hit path through Serve.
func BenchmarkServeHitL1(b *testing.B) {
	small := strings.Repeat("a", 1024)
	html := strings.Repeat("<div class=\"item\"><a href=\"/p/123\">Product name</a> <span>19.99</span></div>\n", 600)[:40<<10]
	b.Run("1KB", func(b *testing.B) { benchServeHit(b, small, "application/octet-stream") })
	// Stored gzipped, asked for without Accept-Encoding (wrk, curl, API
	// clients): served from the kept identity copy.
	b.Run("1KB-text-identity", func(b *testing.B) { benchServeHit(b, small, "text/plain; charset=utf-8") })
	b.Run("40KB-html-gzip", func(b *testing.B) {
		benchServeHit(b, html, "text/html; charset=utf-8", "Accept-Encoding", "gzip, deflate")
	})
	// A browser's field: the stored br form (ties go to br).
	b.Run("40KB-html-br", func(b *testing.B) {
		benchServeHit(b, html, "text/html; charset=utf-8", "Accept-Encoding", "gzip, deflate, br, zstd")
	})
	b.Run("40KB-html-zstd", func(b *testing.B) {
		benchServeHit(b, html, "text/html; charset=utf-8", "Accept-Encoding", "gzip;q=0.5, zstd")
	})
	b.Run("40KB-html-identity", func(b *testing.B) { benchServeHit(b, html, "text/html; charset=utf-8") })
}

// BenchmarkPurgeCheck is the purge-record check on a hit with records
// newer than the object (the slow path; the fast path is one atomic load).
func BenchmarkPurgeCheck(b *testing.B) {
	var ps purges
	ps.limit = 1024
	o := &object{tenant: "t", host: "h", pathQuery: "/a/b", tags: []string{"h", "t"}}
	for i := range 100 {
		ps.apply(Purge{Tenant: "t", URLs: []string{"/x" + strings.Repeat("y", i%7)}, Tags: []string{"k"}})
	}
	b.ReportAllocs()
	for b.Loop() {
		if ps.effect(o) != purgeNone {
			b.Fatal("unexpected purge")
		}
	}
}

// zipfWorkload draws n requests over objects with sizes 1–16 KB.
type zipfWorkload struct {
	sizes []uint32
	reqs  []uint64
	total uint64
}

func newZipfWorkload(objects, n int) *zipfWorkload {
	rng := rand.New(rand.NewPCG(1, 2))
	w := &zipfWorkload{sizes: make([]uint32, objects), reqs: make([]uint64, n)}
	for i := range w.sizes {
		w.sizes[i] = 1024 + uint32(rng.IntN(15*1024))
		w.total += uint64(w.sizes[i])
	}
	z := rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.1, 1, uint64(objects-1))
	for i := range w.reqs {
		w.reqs[i] = z.Uint64()
	}
	return w
}

// lru is a plain byte-bounded LRU for comparison.
type lru struct {
	max, used uint64
	ll        *list.List
	m         map[uint64]*list.Element
}

type lruEntry struct {
	key  uint64
	size uint64
}

func (c *lru) access(key, size uint64) bool {
	if e, ok := c.m[key]; ok {
		c.ll.MoveToFront(e)
		return true
	}
	c.m[key] = c.ll.PushFront(&lruEntry{key, size})
	c.used += size
	for c.used > c.max {
		e := c.ll.Back()
		en := e.Value.(*lruEntry)
		c.ll.Remove(e)
		delete(c.m, en.key)
		c.used -= en.size
	}
	return false
}

// hitRatios replays the workload against L1 (otter W-TinyLFU, the cache's
// own configuration and weigher) and a plain LRU of the same byte size.
func hitRatios(t testing.TB, w *zipfWorkload, capacity uint64) (l1Ratio, lruRatio float64) {
	c := newCache(t, Config{MaxBytes: int64(capacity)})
	objs := make([]*object, len(w.sizes))
	for i, s := range w.sizes {
		objs[i] = &object{weight: s}
	}
	keys := make([]string, len(w.sizes))
	for i := range keys {
		keys[i] = cacheKey("t", 0, "https", "h", "/o/"+strconv.Itoa(i), "")
	}
	l := &lru{max: capacity, ll: list.New(), m: map[uint64]*list.Element{}}
	warm := len(w.reqs) / 10
	var hits, lruHits, n int
	for i, k := range w.reqs {
		_, hit := c.l1.GetIfPresent(keys[k])
		if !hit {
			c.l1.Set(keys[k], objs[k])
		}
		lhit := l.access(k, uint64(w.sizes[k]))
		if i >= warm {
			n++
			if hit {
				hits++
			}
			if lhit {
				lruHits++
			}
		}
	}
	return float64(hits) / float64(n), float64(lruHits) / float64(n)
}

// TestZipfHitRatio: Zipf s=1.1 over 100k objects, L1 holding 10% of the
// bytes. W-TinyLFU must not do worse than LRU.
func TestZipfHitRatio(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("replays 2M requests in one goroutine; nothing for -race to find")
	}
	w := newZipfWorkload(100_000, 2_000_000)
	l1Ratio, lruRatio := hitRatios(t, w, w.total/10)
	t.Logf("zipf s=1.1, 100k objects, %d MiB total, L1 = 10%%: W-TinyLFU (L1) hit ratio %.4f, LRU %.4f",
		w.total>>20, l1Ratio, lruRatio)
	if l1Ratio < lruRatio {
		t.Fatalf("L1 hit ratio %.4f below LRU %.4f", l1Ratio, lruRatio)
	}
}

// BenchmarkZipfHitRatio reports the same study as metrics.
func BenchmarkZipfHitRatio(b *testing.B) {
	w := newZipfWorkload(100_000, 2_000_000)
	var l1Ratio, lruRatio float64
	for b.Loop() {
		l1Ratio, lruRatio = hitRatios(b, w, w.total/10)
	}
	b.ReportMetric(l1Ratio, "l1-hit-ratio")
	b.ReportMetric(lruRatio, "lru-hit-ratio")
}

// waitVariants polls (with a deadline) until the object r fills has its
// br and zstd forms, derived in the background after the fill.
func waitVariants(tb testing.TB, c *Cache, r *http.Request, req Request, fetch Fetcher) {
	tb.Helper()
	rr := r.Clone(r.Context())
	deadline := time.Now().Add(10 * time.Second)
	for _, ce := range []string{"br", "zstd"} {
		rr.Header = http.Header{"Accept-Encoding": {ce}}
		for {
			w := &discardWriter{h: http.Header{}}
			if _, err := c.Serve(w, rr, req, fetch); err != nil {
				tb.Fatal(err)
			}
			if w.h.Get("Content-Encoding") == ce {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("no %s form after 10s (Content-Encoding %q)", ce, w.h.Get("Content-Encoding"))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
