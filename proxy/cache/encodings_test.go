package cache

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testPage(n int) string {
	var sb strings.Builder
	for i := 0; sb.Len() < n; i++ {
		fmt.Fprintf(&sb, "<li><a href=\"/p/%d\">Product %d</a> costs %d.%02d</li>\n", i, i, i%97, i%100)
	}
	return sb.String()[:n]
}

// decodeAs decodes a body in coding ce ("" for identity).
func decodeAs(t testing.TB, ce, body string) string {
	t.Helper()
	switch ce {
	case "":
		return body
	case "gzip":
		return gunzipString(t, body)
	case "br":
		b, err := io.ReadAll(brotli.NewReader(strings.NewReader(body)))
		if err != nil {
			t.Fatalf("br: %v", err)
		}
		return string(b)
	case "zstd":
		d, _ := zstd.NewReader(nil)
		defer d.Close()
		b, err := d.DecodeAll([]byte(body), nil)
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		return string(b)
	}
	t.Fatalf("unexpected Content-Encoding %q", ce)
	return ""
}

// waitForms polls (with a deadline) until a hit for path comes in br and
// in zstd from the stored forms: they are derived in the background.
func waitForms(t testing.TB, f *front, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, ce := range []string{"br", "zstd"} {
		for {
			r := f.get(t, path, "Accept-Encoding", ce)
			if r.header.Get("Content-Encoding") == ce {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no stored %s form after 10s (got %q)", ce, r.header.Get("Content-Encoding"))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestCacheEncodingsNegotiated: one fill, then every client gets the
// best stored coding its Accept-Encoding allows, q-values honoured, with
// the right length, a weak ETag, Vary and the same page inside.
func TestCacheEncodingsNegotiated(t *testing.T) {
	page := testPage(20 << 10)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("ETag", `"v1"`)
		_, _ = io.WriteString(w, page)
	})
	reg := prometheus.NewRegistry()
	c := newCache(t, Config{Registerer: reg})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t", Host: "www.example.com"})
	wantStatus(t, f.get(t, "/p", "Accept-Encoding", "gzip"), 200, "edge; fwd=miss; stored")
	waitForms(t, f, "/p")
	for _, tc := range []struct{ ae, want string }{
		{"br;q=1, gzip;q=0.5", "br"}, // the example
		{"gzip, deflate, br, zstd", "br"},
		{"gzip;q=0.5, zstd", "zstd"},
		{"zstd;q=0.1, br;q=0, gzip;q=0.2", "gzip"},
		{"gzip", "gzip"},
		{"*", "br"},
		{"*;q=0.5, br;q=0, zstd;q=0", "gzip"},
		{"gzip;q=0.5, identity", ""},
		{"", ""},
		{"deflate", ""},
	} {
		r := f.get(t, "/p", "Accept-Encoding", tc.ae)
		wantStatus(t, r, 200, "edge; hit")
		ce := r.header.Get("Content-Encoding")
		if ce != tc.want {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.ae, ce, tc.want)
			continue
		}
		if got := decodeAs(t, ce, r.body); got != page {
			t.Errorf("Accept-Encoding %q: the %q body does not decode to the page", tc.ae, ce)
		}
		if cl := r.header.Get("Content-Length"); cl != fmt.Sprint(len(r.body)) {
			t.Errorf("Accept-Encoding %q: Content-Length %q for %d bytes", tc.ae, cl, len(r.body))
		}
		wantETag := `W/"v1"`
		if ce == "" {
			wantETag = `"v1"`
		}
		if et := r.header.Get("Etag"); et != wantETag {
			t.Errorf("Accept-Encoding %q: ETag %q, want %q", tc.ae, et, wantETag)
		}
		if v := r.header.Get("Vary"); !strings.Contains(v, "Accept-Encoding") {
			t.Errorf("Accept-Encoding %q: Vary %q", tc.ae, v)
		}
		if ce != "" && len(r.body) >= len(page)/2 {
			t.Errorf("%s form is %d bytes for a %d-byte page", ce, len(r.body), len(page))
		}
	}
	// A browser revalidating its br copy gets a 304.
	r := f.get(t, "/p", "Accept-Encoding", "br", "If-None-Match", `W/"v1"`)
	wantStatus(t, r, http.StatusNotModified, "edge; hit")
	if o.hits.Load() != 1 {
		t.Fatalf("origin requests %d, want 1", o.hits.Load())
	}
	for _, e := range []string{"gzip", "br", "zstd"} {
		if v := testutil.ToFloat64(savedCounter(t, reg, e)); v <= 0 {
			t.Errorf("edge_compress_saved_bytes_total{encoding=%q} = %v after hits in it", e, v)
		}
	}
}

// savedCounter finds edge_compress_saved_bytes_total{encoding=e}.
func savedCounter(t testing.TB, reg *prometheus.Registry, e string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "edge_compress_saved_bytes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "encoding" && l.GetValue() == e {
					v := m.GetCounter().GetValue()
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return v })
				}
			}
		}
	}
	t.Fatalf("no edge_compress_saved_bytes_total{encoding=%q}", e)
	return nil
}

// TestCacheSavedBytesAtZero: the series exist on a fresh cache.
func TestCacheSavedBytesAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	newCache(t, Config{Registerer: reg})
	for _, e := range []string{"gzip", "br", "zstd"} {
		if v := testutil.ToFloat64(savedCounter(t, reg, e)); v != 0 {
			t.Errorf("%s: %v on a fresh cache", e, v)
		}
	}
}

// TestCacheOriginBrZstd: an origin's br or zstd body is stored as
// received, sent byte for byte to clients that accept it, and decoded
// for those that do not (gzip and identity forms).
func TestCacheOriginBrZstd(t *testing.T) {
	page := testPage(12 << 10)
	var brBody, zstdBody bytes.Buffer
	bw := brotli.NewWriterLevel(&brBody, 5)
	_, _ = io.WriteString(bw, page)
	_ = bw.Close()
	zw, _ := zstd.NewWriter(&zstdBody)
	_, _ = io.WriteString(zw, page)
	_ = zw.Close()
	for _, coding := range []string{"br", "zstd"} {
		t.Run(coding, func(t *testing.T) {
			encoded := map[string][]byte{"br": brBody.Bytes(), "zstd": zstdBody.Bytes()}[coding]
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Content-Type", "text/html")
				w.Header().Set("Cache-Control", "max-age=3600")
				w.Header().Set("ETag", `"o"`)
				if !strings.Contains(r.Header.Get("Accept-Encoding"), coding) {
					_, _ = io.WriteString(w, page)
					return
				}
				w.Header().Set("Content-Encoding", coding)
				_, _ = w.Write(encoded)
			})
			c := newCache(t, Config{DisableVariants: true}) // only what the origin sent, and gzip
			f := newFront(t, c, o.srv.URL, Request{Tenant: "t", Host: "www.example.com"})
			r := f.get(t, "/o", "Accept-Encoding", "gzip, deflate, br, zstd")
			wantStatus(t, r, 200, "edge; fwd=miss; stored")
			if ae := o.lastRequest().Header.Get("Accept-Encoding"); ae != "br, zstd, gzip" {
				t.Fatalf("the fill asked the origin for %q", ae)
			}
			if r.header.Get("Content-Encoding") != coding || r.body != string(encoded) {
				t.Fatalf("miss: Content-Encoding %q, %d bytes; want the origin's %d %s bytes", r.header.Get("Content-Encoding"), len(r.body), len(encoded), coding)
			}
			for _, tc := range []struct{ ae, want string }{
				{coding, coding}, {"gzip, " + coding, coding}, {"gzip", "gzip"}, {"", ""},
			} {
				r := f.get(t, "/o", "Accept-Encoding", tc.ae)
				wantStatus(t, r, 200, "edge; hit")
				if ce := r.header.Get("Content-Encoding"); ce != tc.want {
					t.Fatalf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.ae, ce, tc.want)
				}
				if tc.want == coding && r.body != string(encoded) {
					t.Fatalf("Accept-Encoding %q: not the origin's bytes", tc.ae)
				}
				if got := decodeAs(t, tc.want, r.body); got != page {
					t.Fatalf("Accept-Encoding %q: body does not decode to the page", tc.ae)
				}
			}
			if o.hits.Load() != 1 {
				t.Fatalf("origin requests %d, want 1", o.hits.Load())
			}
		})
	}
}

// TestCacheOriginBrUndecodable: a br body that does not decode is not
// stored (and still reaches the client as it came).
func TestCacheOriginBrUndecodable(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Encoding", "br")
		_, _ = io.WriteString(w, strings.Repeat("not brotli ", 100))
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t", Host: "www.example.com"})
	for range 2 {
		r := f.get(t, "/bad", "Accept-Encoding", "br")
		wantStatus(t, r, 200, "edge; fwd=miss; detail=encoding")
	}
}

// TestCacheVariantsPurgedAndWeighed: the forms count in the object's
// weight, a purge removes them with the object, and a variant pass that
// finishes after the purge does not bring the object back.
func TestCacheVariantsPurgedAndWeighed(t *testing.T) {
	page := testPage(30 << 10)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "text/css")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = io.WriteString(w, page)
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t", Host: "www.example.com"})
	f.get(t, "/s.css", "Accept-Encoding", "gzip")
	var before *object
	var key string
	for k, v := range c.l1.All() {
		key, before = k, v
	}
	waitForms(t, f, "/s.css")
	after, _ := c.l1.GetIfPresent(key)
	if after == before || after.br == nil || after.zst == nil {
		t.Fatalf("no variants in L1")
	}
	if grown := int(after.weight) - int(before.weight); grown < len(after.br)+len(after.zst) {
		t.Fatalf("weight grew by %d for %d bytes of br and zstd", grown, len(after.br)+len(after.zst))
	}
	if err := c.ApplyPurge(Purge{Tenant: "t", URLs: []string{"https://www.example.com/s.css"}}); err != nil {
		t.Fatal(err)
	}
	for _, ae := range []string{"br", "zstd", "gzip", ""} {
		r := f.get(t, "/s.css", "Accept-Encoding", ae)
		if !strings.HasPrefix(r.header.Get("Cache-Status"), "edge; fwd=miss") {
			t.Fatalf("after the purge, Accept-Encoding %q: %q", ae, r.header.Get("Cache-Status"))
		}
		_ = c.ApplyPurge(Purge{Tenant: "t", URLs: []string{"https://www.example.com/s.css"}})
	}
	// A pass queued for an object that was purged meanwhile.
	c.l1.Invalidate(key)
	c.addVariants(key, before)
	if _, ok := c.l1.GetIfPresent(key); ok {
		t.Fatal("a variant pass brought a purged object back")
	}
}

// TestCacheOriginZstdBounded: a zstd body that decodes to more than
// MaxObjectBytes is not stored (a small body must not become a huge
// object), and concurrent fills of zstd bodies share the decoder safely.
func TestCacheOriginZstdBounded(t *testing.T) {
	zw, _ := zstd.NewWriter(nil)
	bomb := zw.EncodeAll(make([]byte, 4<<20), nil)
	small := zw.EncodeAll([]byte(testPage(8<<10)), nil)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Encoding", "zstd")
		if r.URL.Path == "/bomb" {
			_, _ = w.Write(bomb)
			return
		}
		_, _ = w.Write(small)
	})
	c := newCache(t, Config{MaxBytes: 16 << 20, MaxObjectBytes: 1 << 20})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t", Host: "www.example.com"})
	r := f.get(t, "/bomb", "Accept-Encoding", "zstd")
	wantStatus(t, r, 200, "edge; fwd=miss; detail=encoding")
	if r.body != string(bomb) {
		t.Fatal("the unstored zstd body did not reach the client as it came")
	}
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			r := f.get(t, fmt.Sprintf("/z/%d", i), "Accept-Encoding", "zstd")
			if !strings.HasSuffix(r.header.Get("Cache-Status"), "stored") {
				t.Errorf("/z/%d: %q", i, r.header.Get("Cache-Status"))
			}
		}()
	}
	for range 8 {
		<-done
	}
	if got := decodeAs(t, "gzip", f.get(t, "/z/3", "Accept-Encoding", "gzip").body); got != testPage(8<<10) {
		t.Fatal("the gzip form of an origin zstd body is not the page")
	}
}
