package compress

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// testHTML returns a deterministic HTML page of about n bytes: a product
// listing with varied words, like a shop's category page.
func testHTML(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " +
		"incididunt ut labore et dolore magna aliqua shoes jacket wool cotton organic blue red green small large")
	var b bytes.Buffer
	b.WriteString("<!doctype html><html lang=en><head><meta charset=utf-8><title>Shop</title>" +
		"<link rel=stylesheet href=/static/site.css></head><body><ul class=products>\n")
	for i := 0; b.Len() < n-40; i++ {
		fmt.Fprintf(&b, `<li class="product" data-id="%d"><a href="/p/%d-%s"><img src="/img/%d.jpg" alt="%s %s"></a>`+
			`<h2>%s %s</h2><p class="price">%d.%02d EUR</p><p>`, i, rng.IntN(99999), words[rng.IntN(len(words))],
			rng.IntN(99999), words[rng.IntN(len(words))], words[rng.IntN(len(words))],
			words[rng.IntN(len(words))], words[rng.IntN(len(words))], rng.IntN(300), rng.IntN(100))
		for range 8 + rng.IntN(12) {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		b.WriteString("</p></li>\n")
	}
	b.WriteString("</ul></body></html>\n")
	return b.Bytes()
}

func decode(t testing.TB, ce string, r io.Reader) []byte {
	t.Helper()
	var dr io.Reader
	switch ce {
	case "":
		dr = r
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		dr = zr
	case "zstd":
		zr, err := zstd.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		dr = zr
	case "br":
		dr = brotli.NewReader(r)
	default:
		t.Fatalf("unexpected Content-Encoding %q", ce)
	}
	b, err := io.ReadAll(dr)
	if err != nil {
		t.Fatalf("decode %s: %v", ce, err)
	}
	return b
}

func newCompressor(t testing.TB) *Compressor {
	t.Helper()
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serve runs handler behind c's wrapper on a real server and returns what a
// client sending ae receives (raw, not decoded).
func serve(t *testing.T, c *Compressor, method, ae string, handler http.HandlerFunc) (*http.Response, []byte) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := c.Wrap(w, r)
		defer cw.Close()
		handler(cw, r)
	}))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(method, srv.URL, nil)
	if ae != "" {
		req.Header.Set("Accept-Encoding", ae)
	}
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func html(body []byte, withLength bool, extra ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		if withLength {
			h.Set("Content-Length", fmt.Sprint(len(body)))
		}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Add(extra[i], extra[i+1])
		}
		w.Write(body)
	}
}

func TestCompressesPerEncoding(t *testing.T) {
	c := newCompressor(t)
	page := testHTML(40 << 10)
	for _, tc := range []struct{ ae, want string }{
		{"gzip", "gzip"}, {"br", "br"}, {"zstd", "zstd"}, {"gzip, deflate, br, zstd", "zstd"},
	} {
		for _, withLength := range []bool{true, false} {
			resp, raw := serve(t, c, "GET", tc.ae, html(page, withLength, "ETag", `"v1"`, "Accept-Ranges", "bytes"))
			h := resp.Header
			if ce := h.Get("Content-Encoding"); ce != tc.want {
				t.Fatalf("%q: Content-Encoding %q, want %q", tc.ae, ce, tc.want)
			}
			if got := decode(t, tc.want, bytes.NewReader(raw)); !bytes.Equal(got, page) {
				t.Fatalf("%q: decoded body differs (%d vs %d bytes)", tc.ae, len(got), len(page))
			}
			if len(raw) > len(page)/3 {
				t.Errorf("%q: %d → %d bytes, poor ratio", tc.ae, len(page), len(raw))
			}
			if h.Get("Vary") != "Accept-Encoding" || h.Get("Etag") != `W/"v1"` || h.Get("Accept-Ranges") != "" || resp.ContentLength != -1 {
				t.Fatalf("%q: headers Vary=%q ETag=%q Accept-Ranges=%q CL=%d", tc.ae, h.Get("Vary"), h.Get("Etag"), h.Get("Accept-Ranges"), resp.ContentLength)
			}
		}
	}
}

func TestNotCompressed(t *testing.T) {
	c := newCompressor(t)
	page := testHTML(4096)
	for _, tc := range []struct {
		name     string
		handler  http.HandlerFunc
		wantVary string
	}{
		{"small with length", html(page[:1000], true), ""},
		{"small unknown length", html(page[:1000], false), "Accept-Encoding"},
		{"image", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			w.Write(page)
		}, ""},
		{"no content type", func(w http.ResponseWriter, r *http.Request) { w.Write(page) }, ""},
		{"already encoded", html(page, false, "Content-Encoding", "br"), ""},
		{"no-transform", html(page, false, "Cache-Control", "public, no-transform"), ""},
		{"partial content", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Range", "bytes 0-4095/9999")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(page)
		}, ""},
	} {
		resp, raw := serve(t, c, "GET", "gzip, br, zstd", tc.handler)
		if ce := resp.Header.Get("Content-Encoding"); ce != "" && tc.name != "already encoded" {
			t.Errorf("%s: compressed with %q", tc.name, ce)
		}
		want := page
		if strings.HasPrefix(tc.name, "small") {
			want = page[:1000]
		}
		if !bytes.Equal(raw, want) {
			t.Errorf("%s: body changed (%d bytes, want %d)", tc.name, len(raw), len(want))
		}
		if v := resp.Header.Get("Vary"); v != tc.wantVary {
			t.Errorf("%s: Vary %q, want %q", tc.name, v, tc.wantVary)
		}
		if tc.name == "small unknown length" && resp.ContentLength != 1000 {
			t.Errorf("%s: Content-Length %d, want 1000", tc.name, resp.ContentLength)
		}
	}
	for _, code := range []int{http.StatusNoContent, http.StatusNotModified} {
		resp, raw := serve(t, c, "GET", "gzip", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(code)
		})
		if resp.StatusCode != code || resp.Header.Get("Content-Encoding") != "" || len(raw) != 0 {
			t.Errorf("%d: status %d CE %q body %d bytes", code, resp.StatusCode, resp.Header.Get("Content-Encoding"), len(raw))
		}
	}
}

func TestIdentityClientGetsVary(t *testing.T) {
	c := newCompressor(t)
	page := testHTML(4096)
	for _, ae := range []string{"", "identity", "gzip;q=0"} {
		resp, raw := serve(t, c, "GET", ae, html(page, true, "Vary", "Origin"))
		if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(raw, page) {
			t.Fatalf("%q: compressed for an identity client", ae)
		}
		if v := resp.Header.Get("Vary"); v != "Origin, Accept-Encoding" {
			t.Fatalf("%q: Vary %q", ae, v)
		}
	}
}

func TestHead(t *testing.T) {
	c := newCompressor(t)
	resp, raw := serve(t, c, "HEAD", "gzip", html(testHTML(4096), true))
	if resp.Header.Get("Content-Encoding") != "gzip" || len(raw) != 0 {
		t.Fatalf("HEAD: CE %q, %d body bytes", resp.Header.Get("Content-Encoding"), len(raw))
	}
}

func TestAddVary(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{nil, []string{"Accept-Encoding"}},
		{[]string{"Origin"}, []string{"Origin, Accept-Encoding"}},
		{[]string{"Origin, accept-encoding"}, []string{"Origin, accept-encoding"}},
		{[]string{"*"}, []string{"*"}},
		{[]string{"Origin", "Cookie"}, []string{"Origin", "Cookie", "Accept-Encoding"}},
		{[]string{"Cookie", "Accept-Encoding"}, []string{"Cookie", "Accept-Encoding"}},
		{[]string{""}, []string{"Accept-Encoding"}},
	} {
		h := http.Header{}
		if tc.in != nil {
			h["Vary"] = append([]string(nil), tc.in...)
		}
		addVary(h)
		if fmt.Sprint(h["Vary"]) != fmt.Sprint(tc.want) {
			t.Errorf("addVary(%q) = %q, want %q", tc.in, h["Vary"], tc.want)
		}
	}
}

// A flushed chunk reaches the client, decodable, before the rest is written.
func TestStreamingFlush(t *testing.T) {
	c := newCompressor(t)
	for _, ae := range []string{"gzip", "br", "zstd"} {
		t.Run(ae, func(t *testing.T) {
			first := []byte("<html><body><p>first chunk</p>\n")
			proceed := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				cw := c.Wrap(w, r)
				defer cw.Close()
				cw.Header().Set("Content-Type", "text/html")
				cw.Write(first)
				cw.Flush()
				select {
				case <-proceed:
				case <-time.After(5 * time.Second):
				}
				cw.Write([]byte("<p>second</p></body></html>"))
			}))
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL, nil)
			req.Header.Set("Accept-Encoding", ae)
			resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Header.Get("Content-Encoding") != ae {
				t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
			}
			var dr io.Reader
			switch ae {
			case "gzip":
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				dr = zr
			case "br":
				dr = brotli.NewReader(resp.Body)
			case "zstd":
				zr, err := zstd.NewReader(resp.Body, zstd.WithDecoderConcurrency(1))
				if err != nil {
					t.Fatal(err)
				}
				defer zr.Close()
				dr = zr
			}
			got := make([]byte, len(first))
			if _, err := io.ReadFull(dr, got); err != nil || !bytes.Equal(got, first) {
				t.Fatalf("first chunk before the rest: %q, %v", got, err)
			}
			close(proceed)
			rest, err := io.ReadAll(dr)
			if err != nil || string(rest) != "<p>second</p></body></html>" {
				t.Fatalf("rest %q, %v", rest, err)
			}
		})
	}
}

// An origin serving gzip, behind a proxy handler that uses Decode and Wrap.
func TestDecodeAndPassThrough(t *testing.T) {
	c := newCompressor(t)
	page := testHTML(8192)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(page)
	zw.Close()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("ETag", `"abc"`)
		w.Write(gz.Bytes())
	}))
	defer origin.Close()
	tr := &http.Transport{DisableCompression: true}
	proxy := func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest("GET", origin.URL, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := c.Decode(resp, r.Header.Get("Accept-Encoding")); err != nil {
			t.Error(err)
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		io.Copy(w, resp.Body)
	}
	for _, tc := range []struct{ ae, wantCE string }{
		{"gzip, br", "gzip"}, // accepted: passes through
		{"", ""},             // identity client: decoded
		{"br", "br"},         // decoded, then re-encoded for this client
	} {
		resp, raw := serve(t, c, "GET", tc.ae, proxy)
		if ce := resp.Header.Get("Content-Encoding"); ce != tc.wantCE {
			t.Fatalf("%q: Content-Encoding %q, want %q", tc.ae, ce, tc.wantCE)
		}
		if tc.wantCE == "gzip" && !bytes.Equal(raw, gz.Bytes()) {
			t.Fatalf("%q: pass-through changed the bytes", tc.ae)
		}
		if got := decode(t, tc.wantCE, bytes.NewReader(raw)); !bytes.Equal(got, page) {
			t.Fatalf("%q: body differs", tc.ae)
		}
		if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
			t.Fatalf("%q: Vary %q", tc.ae, resp.Header.Get("Vary"))
		}
		wantETag := `W/"abc"`
		if tc.wantCE == "gzip" {
			wantETag = `"abc"`
		}
		if et := resp.Header.Get("Etag"); et != wantETag {
			t.Fatalf("%q: ETag %q, want %q", tc.ae, et, wantETag)
		}
	}
}

func TestDecodeBadBody(t *testing.T) {
	c := newCompressor(t)
	resp := &http.Response{Header: http.Header{"Content-Encoding": {"gzip"}}, Body: io.NopCloser(strings.NewReader("not gzip"))}
	if _, err := c.Decode(resp, ""); err == nil {
		t.Fatal("Decode of a corrupt gzip body succeeded")
	}
	resp = &http.Response{Header: http.Header{"Content-Encoding": {"deflate"}}, Body: io.NopCloser(strings.NewReader("x"))}
	if ok, err := c.Decode(resp, ""); ok || err != nil {
		t.Fatalf("unsupported coding: %v, %v; want pass-through", ok, err)
	}
}

// discardWriter is a minimal http.ResponseWriter for benchmarks.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkCompress compresses a 40 KB HTML page through the wrapper, per
// encoding; MB/s is of input, ratio is output/input.
func BenchmarkCompress(b *testing.B) {
	c := newCompressor(b)
	page := testHTML(40 << 10)
	for _, ae := range []string{"gzip", "zstd", "br"} {
		b.Run(ae, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Accept-Encoding", ae)
			var out countingWriter
			dw := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(page)))
			b.ReportAllocs()
			for b.Loop() {
				clear(dw.h)
				dw.h["Content-Type"] = []string{"text/html"}
				out.n = 0
				cw := c.Wrap(&countWrap{dw, &out}, req)
				cw.Write(page)
				cw.Close()
			}
			b.ReportMetric(float64(out.n)/float64(len(page)), "ratio")
		})
	}
}

type countingWriter struct{ n int }

type countWrap struct {
	*discardWriter
	c *countingWriter
}

func (w *countWrap) Write(p []byte) (int, error) { w.c.n += len(p); return len(p), nil }
