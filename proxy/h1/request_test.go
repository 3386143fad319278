package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// browserGET is a typical browser request for a static asset.
const browserGET = "GET /assets/app.js?v=123 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\n" +
	"Accept: */*\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Referer: https://www.example.com/\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=abc123; theme=dark\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"If-None-Match: \"abc123\"\r\n" +
	"\r\n"

var parseSeeds = []string{
	browserGET,
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"HEAD /h?x HTTP/1.1\r\nhost: a\r\n\r\n",
	"GET /p? HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /q??x HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET //double//slash HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /a!b*(c)'d HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /caf\xc3\xa9?q=\xc3\xa9#f HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Dup: a\r\nx-dup: b\r\nCONTENT-TYPE: t\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: x\r\nPragma: no-cache\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-A:  v \t\r\nX-Empty:\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: [::1]:80\r\nX_U: \xe9\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
	"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\r\n",
}

// FuzzParseRequest: parseRequest never panics, and a request it accepts
// is one net/http's server accepts too, with the same handler-visible
// fields.
func FuzzParseRequest(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		i := bytes.Index(data, crlf2)
		if i < 0 {
			data = append(data, crlf2...)
			i = bytes.Index(data, crlf2)
		}
		block := data[:i+4] // as readHeader hands it over
		p, closeAfter, ok := parseRequest(block, "192.0.2.1:1234")
		if !ok {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(block)))
		if err != nil {
			t.Fatalf("h1 accepted %q; net/http: %v", block, err)
		}
		// The checks net/http's server adds to ReadRequest's (which drops
		// the Host field, so read the fields again).
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(block)))
		tp.ReadLine()
		fields, err := tp.ReadMIMEHeader()
		if err != nil {
			t.Fatalf("h1 accepted %q; textproto: %v", block, err)
		}
		if hosts := fields["Host"]; len(hosts) != 1 || !httpguts.ValidHostHeader(hosts[0]) {
			t.Fatalf("h1 accepted %q with Host %q", block, hosts)
		}
		for k, vv := range want.Header {
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
					t.Fatalf("h1 accepted %q with field %q: %q", block, k, v)
				}
			}
		}

		got := &p.req
		for _, c := range []struct {
			name      string
			got, want any
		}{
			{"Method", got.Method, want.Method},
			{"RequestURI", got.RequestURI, want.RequestURI},
			{"Proto", got.Proto, want.Proto},
			{"ProtoMajor", got.ProtoMajor, want.ProtoMajor},
			{"ProtoMinor", got.ProtoMinor, want.ProtoMinor},
			{"URL", *got.URL, *want.URL},
			{"Host", got.Host, want.Host},
			{"Header", got.Header, want.Header},
			{"Close", got.Close, want.Close},
			{"closeAfter", closeAfter, want.Close},
			{"ContentLength", got.ContentLength, want.ContentLength},
			{"TransferEncoding", got.TransferEncoding, want.TransferEncoding},
			{"Body", got.Body, want.Body},
		} {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("%q: %s\nh1:       %#v\nnet/http: %#v", block, c.name, c.got, c.want)
			}
		}
		if got.RemoteAddr != "192.0.2.1:1234" {
			t.Errorf("RemoteAddr %q", got.RemoteAddr)
		}
	})
}

// TestFastURL: every target the fast path takes gives what
// url.ParseRequestURI gives, and the usual ones take it.
func TestFastURL(t *testing.T) {
	check := func(target string) bool {
		t.Helper()
		var u url.URL
		if !fastURL(target, &u) {
			return false
		}
		want, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatalf("fastURL took %q; ParseRequestURI: %v", target, err)
		}
		if u != *want {
			t.Fatalf("%q:\nfast: %#v\nwant: %#v", target, u, *want)
		}
		return true
	}
	for c := range 256 {
		b := string(rune(c))
		if c >= 0x80 {
			b = string([]byte{byte(c)})
		}
		for _, target := range []string{"/a" + b + "b", "/" + b, "/p?" + b + "x", "/p?x" + b, "/p" + b + "?q"} {
			check(target)
		}
	}
	for _, target := range []string{
		"/", "/index.html", "/static/app_v2.min.js", "/a-b/c.d/~e", "/p?", "/p?a=1&b=2",
		"/search?q=a+b&x=%20", "//x", "/a:b@c;d=e,f$g&h+i", "/q??x",
	} {
		if !check(target) {
			t.Errorf("%q not on the fast path", target)
		}
	}
	for _, target := range []string{"/a%2Fb", "/a!b", "/a(b)", "/a*", "/a'b", "/caf\xc3\xa9", "/a#b", "/p?a#b"} {
		if check(target) {
			t.Errorf("%q on the fast path", target)
		}
	}
}

func TestParseRequest(t *testing.T) {
	p, closeAfter, ok := parseRequest([]byte(browserGET), "192.0.2.1:1234")
	if !ok || closeAfter {
		t.Fatalf("ok %v closeAfter %v", ok, closeAfter)
	}
	r := &p.req
	if r.Method != "GET" || r.URL.Path != "/assets/app.js" || r.URL.RawQuery != "v=123" || r.Host != "www.example.com" {
		t.Fatalf("%+v", r)
	}
	if len(r.Header) != 11 || r.Header.Get("If-None-Match") != `"abc123"` || r.Header.Get("Host") != "" {
		t.Fatalf("header %v", r.Header)
	}
	for _, bad := range []string{
		"GET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nupgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
	} {
		if _, _, ok := parseRequest([]byte(bad), "x"); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

func BenchmarkParseRequest(b *testing.B) {
	block := []byte(browserGET)
	b.Run("h1", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(block)))
		for b.Loop() {
			if _, _, ok := parseRequest(block, "192.0.2.1:1234"); !ok {
				b.Fatal("not parsed")
			}
		}
	})
	b.Run("net-http-ReadRequest", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(block)))
		rd := bytes.NewReader(block)
		br := bufio.NewReader(rd)
		for b.Loop() {
			rd.Reset(block)
			br.Reset(rd)
			if _, err := http.ReadRequest(br); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestCanonicalKey(t *testing.T) {
	for _, k := range []string{"host", "Host", "HOST", "x-forwarded-for", "X-Forwarded-For", "content-TYPE", "x_under", "X-1a", "a-", "-a", "sec-fetch-dest"} {
		if got, want := canonicalKey(k), http.CanonicalHeaderKey(k); got != want {
			t.Errorf("canonicalKey(%q) = %q, want %q", k, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { canonicalKey(strings.Clone("user-agent")) }); n > 1 {
		t.Errorf("common lower-case key: %v allocs", n)
	}
}
