package transform

import (
	"bytes"
	stdhtml "html"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// scannedToken is a token as the differential tests compare it.
type scannedToken struct {
	kind  tokKind
	raw   string
	name  string   // tags: lower-case name
	attrs []string // start tags: "key=value" as x/net/html reports them
}

// scanAll tokenizes a whole document with the writer's scanner, keeping
// track of raw text the way the writer does.
func scanAll(in []byte, cdata bool) []scannedToken {
	s := scanner{cdata: cdata}
	var t tag
	var toks []scannedToken
	inRaw := ""
	for len(in) > 0 {
		k, n := s.next(in, inRaw, &t)
		if n == 0 {
			n = len(in) // the end of the document cuts it off
		}
		inRaw = ""
		tok := scannedToken{kind: k, raw: string(in[:n])}
		if k == tokCDATA {
			tok.kind = tokText // x/net/html reports CDATA as text
		}
		if k == tokStartTag || k == tokSelfClosingTag || k == tokEndTag {
			tok.name = strings.ReplaceAll(string(t.name), "\x00", "\ufffd") // as TagName reports it
		}
		if k == tokStartTag || k == tokSelfClosingTag {
			inRaw = rawTextTag(t.a)
			seen := map[string]bool{} // x/net/html keeps the first of repeated names
			for i, a := range t.attrs {
				kb := bytes.Clone(t.raw[a.k0:a.k1])
				for j, c := range kb { // ASCII only, as x/net/html
					if 'A' <= c && c <= 'Z' {
						kb[j] = c + 'a' - 'A'
					}
				}
				k := string(kb)
				if seen[k] {
					continue
				}
				seen[k] = true
				tok.attrs = append(tok.attrs, k+"="+string(t.rawValue(i)))
			}
		}
		toks = append(toks, tok)
		in = in[n:]
	}
	return toks
}

// xnetAll tokenizes a whole document with x/net/html's Tokenizer.
func xnetAll(in []byte, cdata bool) []scannedToken {
	z := html.NewTokenizer(bytes.NewReader(in))
	z.AllowCDATA(cdata)
	var toks []scannedToken
	for {
		tt := z.Next()
		raw := string(z.Raw())
		if tt == html.ErrorToken && raw == "" {
			return toks
		}
		tok := scannedToken{raw: raw}
		switch tt {
		case html.TextToken:
			tok.kind = tokText
		case html.CommentToken, html.DoctypeToken:
			tok.kind = tokComment
		case html.StartTagToken:
			tok.kind = tokStartTag
		case html.SelfClosingTagToken:
			tok.kind = tokSelfClosingTag
		case html.EndTagToken:
			tok.kind = tokEndTag
		case html.ErrorToken:
			tok.kind = tokTruncated
		}
		if tt == html.StartTagToken || tt == html.SelfClosingTagToken || tt == html.EndTagToken {
			name, more := z.TagName()
			tok.name = string(name)
			for more && tt != html.EndTagToken {
				var k, v []byte
				k, v, more = z.TagAttr()
				tok.attrs = append(tok.attrs, string(k)+"="+string(v))
			}
		}
		toks = append(toks, tok)
	}
}

// diffTokens compares the scanner with x/net/html on a whole document.
func diffTokens(t *testing.T, name string, in []byte) {
	t.Helper()
	for _, cdata := range []bool{false, true} {
		got, want := scanAll(in, cdata), xnetAll(in, cdata)
		for i := range max(len(got), len(want)) {
			var g, w scannedToken
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g.raw != w.raw || g.kind != w.kind || g.name != w.name {
				t.Fatalf("%s (cdata %v) token %d:\n got %v %q (name %q)\nwant %v %q (name %q)", name, cdata, i, g.kind, g.raw, g.name, w.kind, w.raw, w.name)
			}
			// x/net/html decodes references and line ends in values.
			if !strings.ContainsAny(g.raw, "&\r\x00") && strings.Join(g.attrs, " ") != strings.Join(w.attrs, " ") {
				t.Fatalf("%s (cdata %v) token %d %q attributes:\n got %q\nwant %q", name, cdata, i, g.raw, g.attrs, w.attrs)
			}
		}
	}
}

// tokenizerCases are inputs for the corner cases of the tokenizer states.
var tokenizerCases = []string{
	"", "<", "</", "<!", "<!-", "<?", "a<", "a</", "a<!", "</>", "< a>", "<<a>", "<3 <a>", "a</ b>c",
	"<!---->", "<!-->x", "<!--->x", "<!-- a -- b -->", "<!-- --!>x", "<!----!>x", "<!-- -!>x-->",
	"<!-- --!-->", "<!-- --!x-->", "<!-- a", "<!DOCTYPE html>", "<!doctype", "<!DOC>", "<!->", "<!>",
	"<?xml version=1?>", "<![CDATA[x]]>y", "<![CDATA[x]]", "<![CDA", "<![cdata[x]]>", "<svg><![CDATA[<a>]]></svg>",
	"<a>", "<a/>", "<a />", "<a b/>", "<a b=/>", "<a b=c/>", "<a b='/'/>", "<p a=1 a=/>", "<p A=1 a=/>",
	"<a b = 'c' d=\"e\" f=g h>", "<a =b>", "<a ==b>", "<a b==c>", "<a b=>", "<a b= >", "<a 'b'=c>",
	"<a b\"c=d>", "<a b='c>'>", "<a b=\"c", "<a b=c", "<a b", "<a ", "<a", "</a b='>'>", "</a", "</a/>",
	"<A HREF=X>", "<a\tb\nc\fd\re>", "<a/b>", "<a/ b>", "<a b/c>",
	"<script>a</script>", "<script></script>", "<script>a</scriptx</script >", "<SCRIPT>a</ScRiPt>",
	"<script>a<!--b</script>", "<script>a<!--<script>b</script>c</script>d", "<script><!--<script>-->x</script>",
	"<script><!-- -- > </script>", "<script><!--<scripx></script>", "<script><!--<script/>--></script>",
	"<script><!--<script>--></script>--></script>", "<script>a</scr", "<script>a<", "<script>a</script",
	"<script/>x</script>", "<style>a</style >b", "<style>a</styl</style>", "<title>a<b>c</title>",
	"<textarea>a</textarea/>", "<xmp><a></xmp>", "<iframe><a></iframe>", "<noembed>x</noembed>",
	"<noframes>x</noframes>", "<noscript><p>x</noscript>", "<plaintext>a</plaintext>b", "<plaintext>",
	"<title></title>", "<p>a &amp; b</p>", "a\x00b<a\x00=b>",
}

func TestScannerMatchesXNetHTML(t *testing.T) {
	for _, page := range pages {
		diffTokens(t, page, readFile(t, page+".html"))
	}
	for _, c := range tokenizerCases {
		diffTokens(t, c, []byte(c))
	}
}

// FuzzScanner: the scanner finds the tokens x/net/html finds.
func FuzzScanner(f *testing.F) {
	for _, c := range tokenizerCases {
		f.Add([]byte(c))
	}
	for _, page := range []string{"blog", "malformed", "lookalike", "cdata-template"} {
		f.Add(readFile(f, page+".html"))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 16<<10 {
			return
		}
		diffTokens(t, "fuzz", in)
	})
}

func TestAppendUnescaped(t *testing.T) {
	for _, s := range []string{
		"", "a", "&", "&&", "&amp", "&amp;", "a &amp; b", "&lt;&gt;&quot;&apos;&nbsp;", "&copy;&reg;&trade;&euro;",
		"&pound;&yen;&cent;&sect;&deg;&middot;&bull;&hellip;&ndash;&mdash;&lsquo;&rsquo;&ldquo;&rdquo;&laquo;&raquo;&times;",
		"&#9733;", "&#x2605;", "&#X2605;", "&#0;", "&#128;", "&#x9f;", "&#xd800;", "&#x110000;", "&#39", "&#;", "&#x;",
		"&#1234567;", "&#65;&#x41;", "&notit;", "&not", "&ampx;", "&Amp;", "&AMP;", "&eacute; &amp;", "a&b=c",
	} {
		if got, want := string(appendUnescaped(nil, []byte(s), stdhtml.UnescapeString)), stdhtml.UnescapeString(s); got != want {
			t.Errorf("html: %q: got %q, want %q", s, got, want)
		}
		if got, want := string(appendUnescaped(nil, []byte(s), html.UnescapeString)), html.UnescapeString(s); got != want {
			t.Errorf("x/net/html: %q: got %q, want %q", s, got, want)
		}
	}
}

// BenchmarkScanner: the writer's scanner alone, on the benchmark page.
func BenchmarkScanner(b *testing.B) {
	in := benchPage(b)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var s scanner
	var t tag
	for b.Loop() {
		inRaw := ""
		for rest := in; len(rest) > 0; {
			k, n := s.next(rest, inRaw, &t)
			if n == 0 {
				n = len(rest)
			}
			inRaw = ""
			if k == tokStartTag {
				inRaw = rawTextTag(t.a)
			}
			rest = rest[n:]
		}
	}
}

// TestCutTokens: tokens longer than MaxTokenBytes, ending around the cut,
// pass through unchanged in every chunking, and the scanner resumes in the
// right state: the link after them is rewritten, the one in raw text is not.
func TestCutTokens(t *testing.T) {
	p, err := Compile(&Rules{RewriteLinks: true}, Config{MaxTokenBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Scheme: "https", Host: "shop.example", OriginHost: "origin.test", Path: "/"}
	const link, rewritten = `<a href="http://origin.test/x">`, `<a href="https://shop.example/x">`
	for _, c := range []struct{ name, before, after string }{
		{"comment", "<!--", "-->"},
		{"comment-bang", "<!--", "--!>"},
		{"comment-dashes", "<!--", "------>"},
		{"quoted", `<a title="`, `">`},
		{"single-quoted", `<a title='`, `'>`},
		{"unquoted", `<a title=`, ` >`},
		{"key", `<a `, `=1>`},
		{"name", `<div`, ` a=">">`},
		{"end-tag", `</div title="`, `">`},
		{"doctype", `<!DOCTYPE `, `>`},
		{"processing", `<?`, `?>`},
		{"cdata", `<svg><![CDATA[`, `]]></svg>`},
		{"script", `<script>`, `</script>`},
		{"script-upper", `<script>`, `</SCRIPT >`},
		{"title", `<title>`, `</title>`},
		{"textarea", `<textarea>`, `</textarea>`},
		{"script-tag", `<script data-x="`, `">` + link + `</script>`},
		{"text", `<p>`, ``},
		{"text-lt", `<p>`, `<`},
	} {
		for k := 990; k <= 1060; k++ {
			pad := strings.Repeat("x", k)
			in := c.before + pad + c.after + link + "</a>"
			want := c.before + pad + c.after + rewritten + "</a>"
			for _, chunks := range [][]int{nil, {1000}, {1023, 1}, {7, 3}} {
				if got := string(rewrite(t, p, req, []byte(in), chunks...)); got != want {
					t.Fatalf("%s, %d bytes, chunks %v:\n%s", c.name, k, chunks, firstDiff([]byte(want), []byte(got)))
				}
			}
		}
	}
}
