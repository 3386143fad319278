package cache

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fillL1 stores n distinct objects of size bytes through Serve (the
// cache's real store path: origin request, freshness decision, build,
// L1 store) with an in-process Fetcher, and returns the heap the cache
// holds afterwards (HeapAlloc after GC, minus before) and its entries.
func fillL1(t testing.TB, maxBytes int64, n, size int, contentType string) (heap uint64, entries int) {
	rng := rand.New(rand.NewPCG(1, 2))
	body := make([]byte, size)
	for i := range body {
		body[i] = byte('a' + rng.IntN(26)) // text: gzip saves ~40%, like a page
	}
	if contentType == "application/octet-stream" {
		for i := range body {
			body[i] = byte(rng.Uint32())
		}
	}
	lastMod := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	fetch := func(_ context.Context, r *http.Request) (*http.Response, error) {
		h := http.Header{
			"Content-Type":   {contentType},
			"Cache-Control":  {"public, max-age=3600"},
			"Date":           {time.Now().UTC().Format(http.TimeFormat)},
			"Last-Modified":  {lastMod},
			"Etag":           {`"` + strconv.Itoa(len(r.URL.Path)) + `-` + r.URL.Path[3:] + `"`},
			"Server":         {"origin"},
			"Content-Length": {strconv.Itoa(size)},
		}
		return &http.Response{StatusCode: 200, Header: h, ContentLength: int64(size),
			Body: io.NopCloser(strings.NewReader(string(body)))}, nil
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := New(Config{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := Request{Tenant: "shop.example", Generation: 1234567, Host: "www.shop.example", Scheme: "https"}
	w := &discardWriter{h: http.Header{}}
	r, _ := http.NewRequest(http.MethodGet, "https://www.shop.example/", nil)
	for i := range n {
		r.RequestURI = "/o/" + strconv.Itoa(i) + "?v=1"
		r.URL.Path = "/o/" + strconv.Itoa(i)
		clear(w.h)
		if res, err := c.Serve(w, r, req, fetch); err != nil || !res.Stored {
			t.Fatalf("object %d: %q, %v", i, res.CacheStatus, err)
		}
	}
	c.l1.CleanUp() // apply pending evictions
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	entries = c.l1.EstimatedSize()
	runtime.KeepAlive(c)
	return after.HeapAlloc - before.HeapAlloc, entries
}

// TestL1MemoryBound: --cache-size bounds the memory the L1 takes, not just
// the bytes of the bodies. 100k distinct 1 KB objects into a 64 MiB cache
// must leave at most 1.25 × 64 MiB on the heap (issue 14: 156 MB).
func TestL1MemoryBound(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("measures the heap: not under -race or -short")
	}
	const maxBytes = 64 << 20
	for _, ct := range []string{"application/octet-stream", "text/html"} {
		heap, entries := fillL1(t, maxBytes, 100_000, 1024, ct)
		t.Logf("%s: %d entries, heap %.1f MiB (%.2f × --cache-size), %d B per entry",
			ct, entries, float64(heap)/(1<<20), float64(heap)/maxBytes, heap/uint64(max(entries, 1)))
		if float64(heap) > 1.25*maxBytes {
			t.Errorf("%s: the cache holds %.1f MiB with --cache-size 64 MiB, want ≤ %.0f MiB", ct, float64(heap)/(1<<20), 1.25*64)
		}
	}
}
