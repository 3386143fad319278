package transform

import (
	"bytes"
	"sync/atomic"
	"testing"
)

// FuzzRewrite: no panic; with rules that match nothing the output is the
// input; with rules, nothing after the fuzzed prefix is lost, whatever the
// chunking and however small the token limit.
func FuzzRewrite(f *testing.F) {
	for _, page := range []string{"blog", "malformed", "lookalike", "cdata-template"} {
		f.Add(readFile(f, page+".html"), uint16(0), uint16(7))
	}
	f.Add([]byte("<script>a<!--<script></script>"), uint16(3), uint16(1))
	f.Add([]byte(`<a href="http://origin.test/`), uint16(5), uint16(2))
	f.Add([]byte("<!--x--!><svg><![CDATA[ ]]"), uint16(9), uint16(4))
	noop, err := Compile(&Rules{RewriteLinks: true}, Config{MaxTokenBytes: 1024})
	if err != nil {
		f.Fatal(err)
	}
	var ruleErr atomic.Pointer[error]
	rules := testProgram(f, Config{MaxTokenBytes: 1024, OnError: func(err error) { ruleErr.Store(&err) }})
	const tail = "\n<!-- end --><p id=tail>the end of the page</p>"
	f.Fuzz(func(t *testing.T, in []byte, split, chunk uint16) {
		if len(in) > 64<<10 {
			return
		}
		chunks := []int{int(split) + 1, int(chunk)%4096 + 1}
		noopReq := Request{Scheme: "https", Host: "shop.example", OriginHost: "nowhere.invalid", Path: "/"}
		if got := rewrite(t, noop, noopReq, in, chunks...); !bytes.Equal(got, in) {
			t.Fatalf("no-op rules changed the input:\n%s", firstDiff(in, got))
		}
		// Make the tail reachable whatever the fuzzed prefix left open: close
		// comments, quotes, tags and raw text elements first.
		doc := append(bytes.Clone(in), "\"'--></script></style></title></textarea></noscript></iframe></xmp></noembed></noframes>]]>"...)
		doc = append(doc, tail...)
		for _, v := range variants[int(chunk)%len(variants) : int(chunk)%len(variants)+1] {
			req := request(rules, v.host, v.path)
			got := rewrite(t, rules, req, doc, chunks...)
			if !bytes.Contains(got, []byte(tail)) && !bytes.Contains(in, []byte("<plaintext")) && !bytes.Contains(bytes.ToLower(in), []byte("<plaintext")) && !bytes.Contains(bytes.ToLower(in), []byte("class=ad")) && !bytes.Contains(bytes.ToLower(in), []byte("class=\"ad")) {
				t.Fatalf("%s: the tail is missing from the output:\n%q", v.name, got)
			}
			if want := rewrite(t, rules, req, doc); !bytes.Equal(got, want) {
				t.Fatalf("%s: chunking %v changed the output:\n%s", v.name, chunks, firstDiff(want, got))
			}
			if err := ruleErr.Swap(nil); err != nil {
				t.Fatalf("%s: a rule failed: %v", v.name, *err)
			}
		}
	})
}
