package transform

import (
	"bytes"
	"io"
	"testing"

	"golang.org/x/net/html"
)

// benchPage is the shop page grown to ~100 KB by repeating its product grid.
func benchPage(b *testing.B) []byte {
	b.Helper()
	page := readFile(b, "shop.html")
	start := bytes.Index(page, []byte(`<ul class="product-grid">`))
	end := bytes.Index(page, []byte("    </ul>\n  </main>"))
	grid := page[start+len(`<ul class="product-grid">`) : end]
	out := bytes.Clone(page[:end])
	for len(out)+len(page)-end < 100<<10 {
		out = append(out, grid...)
	}
	return append(out, page[end:]...)
}

func benchRewrite(b *testing.B, p *Program, req Request) {
	in := benchPage(b)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := p.NewWriter(io.Discard, req)
		for rest := in; len(rest) > 0; {
			n := min(len(rest), 32<<10)
			if _, err := w.Write(rest[:n]); err != nil {
				b.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInjectLinks: injection at all three points and rewrite_links.
func BenchmarkInjectLinks(b *testing.B) {
	r, err := ParseRules([]byte(`
inject:
  - {at: head-end, html: '<link rel="stylesheet" href="/__edge/toolbar.css">'}
  - {at: body-start, html: '<div id="edge-banner"></div>'}
  - {at: body-end, html: '<div id="edge-toolbar"></div><script src="/__edge/toolbar.js" async></script>'}
rewrite_links: true
`))
	if err != nil {
		b.Fatal(err)
	}
	p, err := Compile(r, Config{})
	if err != nil {
		b.Fatal(err)
	}
	benchRewrite(b, p, Request{Scheme: "https", Host: "shop.example", OriginHost: "origin.test", Path: "/"})
}

// BenchmarkTranslate: the golden rules (injection, links, element rules,
// hreflang) with the French translation on.
func BenchmarkTranslate(b *testing.B) {
	p := testProgram(b, Config{})
	benchRewrite(b, p, request(p, "shop.example", "/fr/"))
}

// BenchmarkPassThrough: rules that touch nothing; the cost of tokenizing.
func BenchmarkPassThrough(b *testing.B) {
	p, err := Compile(&Rules{}, Config{})
	if err != nil {
		b.Fatal(err)
	}
	benchRewrite(b, p, Request{Path: "/"})
}

// BenchmarkXNetTokenizer: x/net/html's Tokenizer alone (Next and Raw), for comparison with BenchmarkScanner.
func BenchmarkXNetTokenizer(b *testing.B) {
	in := benchPage(b)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		z := html.NewTokenizer(bytes.NewReader(in))
		for z.Next() != html.ErrorToken {
			io.Discard.Write(z.Raw())
		}
	}
}
