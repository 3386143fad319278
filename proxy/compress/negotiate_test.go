package compress

import (
	"strings"
	"testing"
)

func TestParseQ(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"1", 1000, true}, {"1.", 1000, true}, {"1.000", 1000, true}, {"0", 0, true},
		{"0.5", 500, true}, {"0.05", 50, true}, {"0.001", 1, true}, {"0.999", 999, true},
		{"1.001", 0, false}, {"2", 0, false}, {"0.1234", 0, false}, {"", 0, false},
		{".5", 0, false}, {"0,5", 0, false}, {"-0", 0, false}, {"0.x", 0, false}, {"01", 0, false},
	} {
		got, ok := parseQ(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseQ(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		ae   string
		want Encoding
	}{
		{"", Identity},
		{"gzip", Gzip},
		{"GZip", Gzip},
		{"x-gzip", Gzip},
		{"br", Brotli},
		{"zstd", Zstd},
		{"deflate", Identity},
		{"gzip, deflate, br, zstd", Zstd}, // Chrome: tie, server preference
		{"gzip, deflate, br", Gzip},       // Safari: gzip 5 beats br 1 at a tie
		{"gzip, deflate", Gzip},
		{"br;q=1.0, gzip;q=0.8, *;q=0.1", Brotli},
		{"br;q=0.5, gzip;q=0.9", Gzip},
		{"zstd;q=0.8, br ; q=0.8", Zstd},
		{"gzip;q=0, *", Zstd},
		{"gzip;q=0, br", Brotli},
		{"*", Zstd},
		{"*;q=0", Identity},
		{"*;q=0, gzip", Gzip},
		{"zstd;q=0, br;q=0, gzip;q=0", Identity},
		{"identity", Identity},
		{"gzip;q=0.5, identity", Identity},
		{"gzip, identity;q=0.5", Gzip},
		{"gzip, identity;q=0", Gzip},
		{"gzip;q=1.5", Identity}, // invalid weight: element ignored
		{"gzip;q=abc, br", Brotli},
		{"gzip;q=0.001", Gzip},
		{"gzip, gzip;q=0", Identity}, // listed twice: lower weight wins
		{" , ,gzip,,", Gzip},
		{"br;level=5;q=0.1, gzip;q=0.05", Brotli},
		{"br\t;\tq=0.9,\tgzip;q=0.8", Brotli},
		{"gzip;Q=0.9, br;q=0.1", Gzip},
		{"compress, bzip2", Identity},
	} {
		if got := Negotiate(tc.ae); got != tc.want {
			t.Errorf("Negotiate(%q) = %q, want %q", tc.ae, got, tc.want)
		}
	}
}

func TestAccepts(t *testing.T) {
	for _, tc := range []struct {
		ae, coding string
		want       bool
	}{
		{"gzip", "gzip", true},
		{"gzip", "GZIP", true},
		{"x-gzip", "gzip", true},
		{"gzip", "x-gzip", true},
		{"gzip", "br", false},
		{"gzip;q=0", "gzip", false},
		{"*", "br", true},
		{"*, br;q=0", "br", false},
		{"*;q=0", "zstd", false},
		{"", "gzip", false},
		{"", "identity", true},
		{"deflate", "deflate", true},
		{"br;q=0.001", "br", true},
	} {
		if got := Accepts(tc.ae, tc.coding); got != tc.want {
			t.Errorf("Accepts(%q, %q) = %v, want %v", tc.ae, tc.coding, got, tc.want)
		}
	}
}

func TestCompressible(t *testing.T) {
	yes := []string{"text/html", "text/html; charset=utf-8", "TEXT/CSS", "text/plain;charset=x",
		"application/json", "application/ld+json", "application/problem+json", "application/javascript",
		"image/svg+xml", "application/rss+xml", "application/atom+xml", "application/xml",
		"application/wasm", "font/ttf", " application/json ; charset=utf-8", "application/manifest+json"}
	no := []string{"", "image/png", "image/jpeg", "video/mp4", "application/octet-stream",
		"application/zip", "font/woff2", "text/event-stream", "text/", "application/gzip", "+json", "json"}
	for _, ct := range yes {
		if !Compressible(ct) {
			t.Errorf("Compressible(%q) = false", ct)
		}
	}
	for _, ct := range no {
		if Compressible(ct) {
			t.Errorf("Compressible(%q) = true", ct)
		}
	}
}

func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{"", "gzip", "gzip, deflate, br, zstd", "br;q=0.5, *;q=0", "identity;q=0",
		"gzip;q=0.5;foo=bar", ";;,,;q=", "x-gzip;q=1.000", "*;q=0.001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ae string) {
		e := Negotiate(ae)
		if e > Brotli {
			t.Fatalf("Negotiate(%q) = %d", ae, e)
		}
		if e != Identity && !Accepts(ae, e.String()) {
			t.Fatalf("Negotiate(%q) = %s, which Accepts rejects", ae, e)
		}
		if e == Identity && !strings.Contains(strings.ToLower(ae), "identity") {
			for _, c := range []string{"gzip", "br", "zstd"} {
				if Accepts(ae, c) {
					t.Fatalf("Negotiate(%q) = identity but %s is acceptable", ae, c)
				}
			}
		}
		Compressible(ae)
	})
}

var sinkEncoding Encoding

func BenchmarkNegotiate(b *testing.B) {
	for _, ae := range []string{
		"gzip, deflate, br, zstd",
		"gzip, deflate, br",
		"br;q=1.0, gzip;q=0.8, *;q=0.1",
		"",
	} {
		b.Run(strings.NewReplacer(" ", "", ";", "_", ",", "+").Replace(ae), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkEncoding = Negotiate(ae)
			}
		})
	}
}

var sinkBool bool

func BenchmarkCompressible(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkBool = Compressible("application/javascript; charset=utf-8")
	}
}
