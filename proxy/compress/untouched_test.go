package compress

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// encodeAs returns data in the content coding ce ("" and identity as is).
func encodeAs(t *testing.T, ce string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	switch ce {
	case "", "identity":
		return data
	case "gzip", "x-gzip", "gzip, br":
		w = gzip.NewWriter(&b)
	case "br":
		w = brotli.NewWriter(&b)
	case "zstd":
		zw, err := zstd.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	case "deflate":
		w = zlib.NewWriter(&b)
	default:
		t.Fatalf("no encoder for %q", ce)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// realPath sends an origin response through Decode and the writer Wrap
// returns, as the proxy's full path does, and returns what the client
// gets. A Decode error is what the full path would answer with a 502.
func realPath(c *Compressor, ae string, code int, h http.Header, body []byte) (out http.Header, got []byte, err error) {
	resp := &http.Response{
		StatusCode: code, Header: h.Clone(), ContentLength: -1,
		Body: io.NopCloser(bytes.NewReader(body)),
	}
	if cl := h.Get("Content-Length"); cl != "" {
		resp.ContentLength, _ = strconv.ParseInt(cl, 10, 64)
	}
	if _, err := c.Decode(resp, ae); err != nil {
		return resp.Header, nil, err
	}
	defer resp.Body.Close()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if ae != "" {
		req.Header.Set("Accept-Encoding", ae)
	}
	cw := c.Wrap(rec, req)
	for k, v := range resp.Header {
		cw.Header()[k] = v
	}
	cw.WriteHeader(code)
	_, err = io.Copy(cw, resp.Body)
	if cerr := cw.Close(); err == nil {
		err = cerr
	}
	return rec.Result().Header, rec.Body.Bytes(), err
}

func hasVaryAE(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "Accept-Encoding") {
				return true
			}
		}
	}
	return false
}

// TestUntouchedMatchesRealPath: for every combination of the response
// properties compression looks at and the client's Accept-Encoding,
// Untouched says the response goes out as it is exactly when Decode and
// Wrap leave its body, Content-Encoding, Content-Length and ETag alone,
// and asks for Vary: Accept-Encoding exactly when they add it.
func TestUntouchedMatchesRealPath(t *testing.T) {
	c := newCompressor(t)
	minSize := c.cfg.MinSize
	page := testHTML(4 * minSize)
	sizes := []int{-1, 0, minSize - 1, minSize, minSize + 1, 3 * minSize} // -1: no Content-Length (100 bytes)
	types := []string{"text/html; charset=utf-8", "application/json", "image/png", "", "text/event-stream"}
	encodings := []string{"", "identity", "gzip", "x-gzip", "br", "zstd", "deflate", "gzip, br"}
	codes := []int{200, 204, 206, 304, 404}
	accepts := []string{"", "gzip", "br;q=0", "*", "identity", "gzip, deflate, br, zstd"}

	bodies := map[string][]byte{}
	for _, ce := range encodings {
		for _, n := range sizes {
			raw := page[:max(n, 0)]
			if n < 0 {
				raw = page[:100]
			}
			bodies[fmt.Sprint(ce, n)] = encodeAs(t, ce, raw)
		}
	}
	cases, failures := 0, 0
	for _, ct := range types {
		for _, ce := range encodings {
			for _, crange := range []bool{false, true} {
				for _, noTransform := range []bool{false, true} {
					for _, n := range sizes {
						for _, code := range codes {
							for _, ae := range accepts {
								body := bodies[fmt.Sprint(ce, n)]
								if code == 204 || code == 304 {
									body = nil
								}
								h := http.Header{"Etag": {`"abc"`}}
								if ct != "" {
									h.Set("Content-Type", ct)
								}
								if ce != "" {
									h.Set("Content-Encoding", ce)
								}
								if crange {
									h.Set("Content-Range", "bytes 0-99/5000")
								}
								if noTransform {
									h.Set("Cache-Control", "public, no-transform")
								}
								head := Head{
									Code: code, ContentType: ct, ContentEncoding: ce, ContentRange: crange,
									NoTransform: noTransform, ContentLength: -1,
								}
								if n >= 0 {
									h.Set("Content-Length", strconv.Itoa(len(body)))
									head.ContentLength = int64(len(body))
								}

								untouched, vary := c.Untouched(ae, &head)
								out, got, err := realPath(c, ae, code, h, body)
								same := err == nil && bytes.Equal(got, body)
								for _, k := range []string{"Content-Encoding", "Content-Length", "Etag"} {
									same = same && out.Get(k) == h.Get(k)
								}
								cases++
								if untouched != same || vary != hasVaryAE(out) {
									failures++
									t.Errorf("%d %q ce=%q range=%v no-transform=%v length=%d, Accept-Encoding %q: "+
										"Untouched = %v, vary %v; real path: unchanged %v, Vary %q (err %v, Content-Encoding %q, Content-Length %q, ETag %q)",
										code, ct, ce, crange, noTransform, head.ContentLength, ae, untouched, vary,
										same, out.Values("Vary"), err, out.Get("Content-Encoding"), out.Get("Content-Length"), out.Get("Etag"))
									if failures > 20 {
										t.FailNow()
									}
								}
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d combinations", cases)
}

// TestUntouchedExamples pins a few outcomes of the table by name, so that
// a change in both Untouched and the real path still shows.
func TestUntouchedExamples(t *testing.T) {
	c := newCompressor(t)
	big := int64(c.cfg.MinSize)
	for _, tc := range []struct {
		name            string
		ae              string
		head            Head
		untouched, vary bool
	}{
		{"html for a gzip client", "gzip", Head{Code: 200, ContentType: "text/html", ContentLength: big}, false, true},
		{"html for an identity client", "", Head{Code: 200, ContentType: "text/html", ContentLength: big}, true, true},
		{"small html", "gzip", Head{Code: 200, ContentType: "text/html", ContentLength: big - 1}, true, false},
		{"image", "gzip", Head{Code: 200, ContentType: "image/png", ContentLength: big}, true, false},
		{"gzip to a gzip client", "gzip", Head{Code: 200, ContentType: "text/html", ContentEncoding: "gzip", ContentLength: big}, true, true},
		{"gzip to an identity client", "", Head{Code: 200, ContentType: "text/html", ContentEncoding: "gzip", ContentLength: big}, false, true},
		{"br refused", "br;q=0", Head{Code: 200, ContentType: "image/png", ContentEncoding: "br", ContentLength: 10}, false, true},
		{"deflate passes", "", Head{Code: 200, ContentEncoding: "deflate", ContentLength: 10}, true, true},
		{"partial", "gzip", Head{Code: 206, ContentType: "text/html", ContentRange: true, ContentLength: big}, true, false},
		{"no-transform", "gzip", Head{Code: 200, ContentType: "text/html", NoTransform: true, ContentLength: big}, true, false},
		{"404 page", "*", Head{Code: 404, ContentType: "text/html", ContentLength: big}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if u, v := c.Untouched(tc.ae, &tc.head); u != tc.untouched || v != tc.vary {
				t.Fatalf("Untouched = %v, %v; want %v, %v", u, v, tc.untouched, tc.vary)
			}
		})
	}
}
