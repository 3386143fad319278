package transform

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/transform")

const testdata = "../../testdata/transform"

var pages = []string{"shop", "blog", "malformed", "lookalike", "cdata-template", "huge-script"}

// variants are the requests every page is rewritten for.
var variants = []struct {
	name       string
	host, path string
}{
	{"orig", "shop.example", "/blog/2024/hello"},
	{"fr", "shop.example", "/fr/blog/2024/hello"},
	{"de", "de.shop.example", "/blog/2024/hello"},
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testProgram(t testing.TB, cfg Config) *Program {
	t.Helper()
	r, err := ParseRules(readFile(t, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func request(p *Program, host, path string) Request {
	return Request{Scheme: "https", Host: host, SiteHost: "shop.example", OriginHost: "origin.test", Path: path, Variant: p.Variant(host, path)}
}

// rewrite feeds in to a writer in the given chunk sizes (cycled).
func rewrite(t testing.TB, p *Program, req Request, in []byte, chunks ...int) []byte {
	t.Helper()
	var out bytes.Buffer
	w := p.NewWriter(&out, req)
	for i := 0; len(in) > 0; i++ {
		n := len(in)
		if len(chunks) > 0 {
			n = min(n, chunks[i%len(chunks)])
		}
		if _, err := w.Write(in[:n]); err != nil {
			t.Fatal(err)
		}
		in = in[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(testdata, name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (-update rewrites it):\n%s", name, firstDiff(want, got))
	}
}

func firstDiff(want, got []byte) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	lo := max(0, i-80)
	return "at byte " + strconv.Itoa(i) + "\nwant: " + string(want[lo:min(len(want), i+80)]) + "\ngot:  " + string(got[lo:min(len(got), i+80)])
}

func TestGolden(t *testing.T) {
	p := testProgram(t, Config{OnError: func(err error) { t.Errorf("OnError: %v", err) }})
	for _, page := range pages {
		in := readFile(t, page+".html")
		for _, v := range variants {
			t.Run(page+"/"+v.name, func(t *testing.T) {
				got := rewrite(t, p, request(p, v.host, v.path), in, 32<<10)
				golden(t, page+"."+v.name+".golden", got)
			})
		}
	}
}

// TestNoRulesIsIdentity: with no rules that match, every byte passes
// through, whatever the chunking and however small the token limit.
func TestNoRulesIsIdentity(t *testing.T) {
	noop, err := Compile(&Rules{RewriteLinks: true, Elements: []ElementRule{{Selector: "blink", Remove: true}}}, Config{MaxTokenBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, page := range pages {
		in := readFile(t, page+".html")
		for _, chunks := range [][]int{nil, {1}, {7, 3000, 1}, {rng.IntN(5000) + 1, rng.IntN(100) + 1}} {
			if len(chunks) == 1 && chunks[0] == 1 && len(in) > 60000 {
				continue
			}
			got := rewrite(t, noop, Request{Scheme: "https", Host: "shop.example", OriginHost: "nowhere.test", Path: "/"}, in, chunks...)
			if !bytes.Equal(got, in) {
				t.Errorf("%s chunks %v: output differs from input:\n%s", page, chunks, firstDiff(in, got))
			}
		}
	}
}

// TestChunkBoundaries: every split point gives the output of one write.
func TestChunkBoundaries(t *testing.T) {
	p := testProgram(t, Config{})
	for _, page := range pages {
		in := readFile(t, page+".html")
		for _, v := range variants[:2] {
			req := request(p, v.host, v.path)
			want := rewrite(t, p, req, in)
			step := 1
			if len(in) > 8000 {
				step = len(in)/1500 + 1 // large pages: ~1500 split points, all bytes of a stride
			}
			for i := 0; i <= len(in); i += step {
				if got := rewrite(t, p, req, in, i, len(in)); !bytes.Equal(got, want) {
					t.Fatalf("%s/%s split at %d:\n%s", page, v.name, i, firstDiff(want, got))
				}
			}
			// Tiny writes exercise the carry-over and restart paths.
			if len(in) < 60000 {
				if got := rewrite(t, p, req, in, 1, 2, 3, 5, 8, 13); !bytes.Equal(got, want) {
					t.Fatalf("%s/%s tiny writes:\n%s", page, v.name, firstDiff(want, got))
				}
			}
		}
	}
}

// TestTokenLimit: with a small MaxTokenBytes, tokens are cut and passed
// through; the huge script page (whose long tokens no rule touches) comes out
// as with the default limit.
func TestTokenLimit(t *testing.T) {
	def := testProgram(t, Config{})
	small := testProgram(t, Config{MaxTokenBytes: 1024})
	in := readFile(t, "huge-script.html")
	for _, v := range variants {
		req := request(def, v.host, v.path)
		want := rewrite(t, def, req, in, 32<<10)
		for _, chunks := range [][]int{{32 << 10}, {1000}, {333, 4096}} {
			if got := rewrite(t, small, req, in, chunks...); !bytes.Equal(got, want) {
				t.Fatalf("%s chunks %v:\n%s", v.name, chunks, firstDiff(want, got))
			}
		}
	}
}

// TestBoundedMemory: the writer's buffers stay small on a large page with
// huge tokens, fed in big writes.
func TestBoundedMemory(t *testing.T) {
	p := testProgram(t, Config{MaxTokenBytes: 16 << 10})
	in := bytes.Repeat(readFile(t, "huge-script.html"), 8) // ~2 MB, several 70 KB tokens
	w := p.NewWriter(io.Discard, request(p, "shop.example", "/fr/"))
	maxCarry, maxOut := 0, 0
	for len(in) > 0 {
		n := min(len(in), 64<<10)
		if _, err := w.Write(in[:n]); err != nil {
			t.Fatal(err)
		}
		in = in[n:]
		maxCarry, maxOut = max(maxCarry, cap(w.carry)), max(maxOut, cap(w.out))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if maxCarry > 256<<10 || maxOut > 256<<10 {
		t.Errorf("buffers grew to carry=%d out=%d bytes; want bounded", maxCarry, maxOut)
	}
}

// TestFirstByteBeforeEnd: output starts while the origin is still sending.
func TestFirstByteBeforeEnd(t *testing.T) {
	p := testProgram(t, Config{})
	in := readFile(t, "shop.html")
	req := request(p, "shop.example", "/fr/")
	pr, pw := io.Pipe()
	var out testkit.SyncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := p.Rewrite(&out, pr, req)
		done <- err
	}()
	half := len(in) / 2
	if _, err := pw.Write(in[:half]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(out.Bytes()) < half/2 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d output bytes after half the page (%d bytes) was sent", len(out.Bytes()), half)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := pw.Write(in[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if want := rewrite(t, p, req, in); !bytes.Equal(out.Bytes(), want) {
		t.Errorf("piped output differs:\n%s", firstDiff(want, out.Bytes()))
	}
}

// TestFailOpen: a rule that panics mid-stream is reported once and the
// rest of the page passes through unmodified, never truncated.
func TestFailOpen(t *testing.T) {
	var mu sync.Mutex
	var errs []error
	p := testProgram(t, Config{OnError: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}})
	p.testHook = func(k tokKind, raw []byte) {
		if k == tokStartTag && bytes.HasPrefix(raw, []byte("<main")) {
			panic("rule bug")
		}
	}
	in := readFile(t, "shop.html")
	at := bytes.Index(in, []byte("<main"))
	for _, chunks := range [][]int{nil, {4096}, {100, 7}} {
		errs = nil
		got := rewrite(t, p, request(p, "shop.example", "/fr/"), in, chunks...)
		if len(errs) != 1 {
			t.Fatalf("OnError called %d times, want 1", len(errs))
		}
		var se *StreamError
		if !errors.As(errs[0], &se) || se.Lang != "fr" || se.Path != "/" || !strings.Contains(se.Error(), "rule bug") {
			t.Errorf("error = %v", errs[0])
		}
		if !bytes.HasSuffix(got, in[at:]) {
			t.Errorf("chunks %v: the rest of the page after the failure is not passed through unmodified", chunks)
		}
		if !bytes.Contains(got[:len(got)-len(in)+at], []byte(`<html lang="fr">`)) {
			t.Errorf("chunks %v: the part before the failure was not rewritten", chunks)
		}
		if bytes.Contains(got, []byte("edge-toolbar")) {
			t.Errorf("chunks %v: body-end injection after the failure", chunks)
		}
	}
}

func TestDecoder(t *testing.T) {
	p := testProgram(t, Config{})
	in := readFile(t, "blog.html")
	req := request(p, "shop.example", "/fr/x")
	want := rewrite(t, p, req, in)
	encoders := map[string]func(io.Writer) io.WriteCloser{
		"gzip": func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) },
		"br":   func(w io.Writer) io.WriteCloser { return brotli.NewWriter(w) },
		"zstd": func(w io.Writer) io.WriteCloser { zw, _ := zstd.NewWriter(w); return zw },
		"":     nil,
	}
	for enc, newEnc := range encoders {
		body := in
		if newEnc != nil {
			var buf bytes.Buffer
			zw := newEnc(&buf)
			zw.Write(in)
			zw.Close()
			body = buf.Bytes()
		}
		r, err := Decoder(bytes.NewReader(body), strings.ToUpper(enc))
		if err != nil {
			t.Fatalf("%q: %v", enc, err)
		}
		var out bytes.Buffer
		if _, err := p.Rewrite(&out, r, req); err != nil {
			t.Fatalf("%q: %v", enc, err)
		}
		r.Close()
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%q: output differs:\n%s", enc, firstDiff(want, out.Bytes()))
		}
	}
	if _, err := Decoder(bytes.NewReader(nil), "compress"); !errors.Is(err, ErrUnsupportedEncoding) {
		t.Errorf("compress: err = %v, want ErrUnsupportedEncoding", err)
	}
	if _, err := Decoder(bytes.NewReader([]byte("not gzip")), "gzip"); err == nil {
		t.Error("bad gzip: no error")
	}
}

func TestApplies(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/html":                              true,
		"TEXT/HTML; charset=UTF-8":               true,
		"text/html;charset=\"utf-8\"":            true,
		"application/xhtml+xml; charset=utf-8":   true,
		"text/html; charset=iso-8859-1":          true,
		"text/html; charset=us-ascii":            true,
		"text/html; charset=utf-16":              false,
		"text/html; charset=shift_jis":           false,
		"text/plain":                             false,
		"application/json":                       false,
		"":                                       false,
		"text/htmlx":                             false,
		"text/html; boundary=x; charset=utf-8":   true,
		"application/xhtml+xml;charset=UTF-16LE": false,
	} {
		if got := Applies(ct); got != want {
			t.Errorf("Applies(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestVariant(t *testing.T) {
	r, err := ParseRules(readFile(t, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(r, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, path string
		want       Variant
	}{
		{"shop.example", "/fr/x", Variant{"fr", "/x"}},
		{"shop.example", "/fr/", Variant{"fr", "/"}},
		{"shop.example", "/fr", Variant{"fr", "/"}},
		{"shop.example", "/fr/a/b?c", Variant{"fr", "/a/b?c"}},
		{"shop.example", "/fra", Variant{"", "/fra"}},
		{"shop.example", "/x", Variant{"", "/x"}},
		{"de.shop.example", "/x", Variant{"de", "/x"}},
		{"DE.Shop.Example:443", "/fr/x", Variant{"de", "/fr/x"}},
	} {
		if got := p.Variant(c.host, c.path); got != c.want {
			t.Errorf("Program.Variant(%q, %q) = %+v, want %+v", c.host, c.path, got, c.want)
		}
		if got := r.Variant(c.host, c.path); got != c.want {
			t.Errorf("Rules.Variant(%q, %q) = %+v, want %+v", c.host, c.path, got, c.want)
		}
	}
}

// TestLongTagNameCut: a tag with a long name cut by the token limit.
func TestLongTagNameCut(t *testing.T) {
	noop, err := Compile(&Rules{RewriteLinks: true}, Config{MaxTokenBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1000, 1020, 1030, 5000} {
		in := []byte("<p>a</p><" + strings.Repeat("x", n) + ` a="` + strings.Repeat("y", 3000) + `">text</p>`)
		if got := rewrite(t, noop, Request{Path: "/"}, in, 100); !bytes.Equal(got, in) {
			t.Errorf("name length %d:\n%s", n, firstDiff(in, got))
		}
	}
}

// TestConcurrentUse: one program serves many responses at once.
func TestConcurrentUse(t *testing.T) {
	p := testProgram(t, Config{})
	in := readFile(t, "blog.html")
	want := map[string][]byte{}
	for _, v := range variants {
		want[v.name] = rewrite(t, p, request(p, v.host, v.path), in)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				v := variants[(g+i)%len(variants)]
				var out bytes.Buffer
				if _, err := p.Rewrite(&out, bytes.NewReader(in), request(p, v.host, v.path)); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(out.Bytes(), want[v.name]) {
					t.Errorf("%s: concurrent output differs", v.name)
					return
				}
			}
		}()
	}
	wg.Wait()
}
