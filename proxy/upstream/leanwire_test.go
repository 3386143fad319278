package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// parseBoth reads raw with readResponseFast and with http.ReadResponse
// and reports both results and what each left unread.
type parsedResp struct {
	status     string
	code       int
	header     http.Header
	length     int64
	close      bool
	body       string
	rest       string
	handled    bool
	parseError bool
}

func readWith(t testing.TB, raw string, method string, fast bool) parsedResp {
	t.Helper()
	br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
	req, _ := http.NewRequest(method, "http://origin.example/", nil)
	var resp *http.Response
	var err error
	var out parsedResp
	if fast {
		resp, err = readResponseFast(br, req)
		if resp == nil && err == nil {
			return parsedResp{} // not handled
		}
		out.handled = true
	} else {
		resp, err = http.ReadResponse(br, req)
	}
	if err != nil {
		out.parseError = true
		return out
	}
	body, _ := io.ReadAll(resp.Body)
	rest, _ := io.ReadAll(br)
	out.status, out.code, out.header = resp.Status, resp.StatusCode, resp.Header
	out.length, out.close, out.body, out.rest = resp.ContentLength, resp.Close, string(body), string(rest)
	return out
}

// dropKeptConnection removes from fast the one difference from net/http
// the fast path makes on purpose: net/http drops the Connection fields of
// a response that says close, the fast path keeps them so that the proxy
// can strip the fields they name (Connection: close, X-Hop).
func dropKeptConnection(t testing.TB, fast *parsedResp, want parsedResp) {
	t.Helper()
	if !want.close || want.header == nil || want.header["Connection"] != nil {
		return
	}
	if fast.header["Connection"] == nil {
		t.Fatal("the fast path dropped the Connection field of a response that says close")
	}
	delete(fast.header, "Connection")
}

func TestReadResponseFastAgreesWithNetHTTP(t *testing.T) {
	cases := []struct {
		name, raw, method string
		handled           bool
	}{
		{"plain", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhelloNEXT", "GET", true},
		{"empty body", "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\nNEXT", "GET", true},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", "GET", true},
		{"custom reason", "HTTP/1.1 299 Whatever You Like\r\nContent-Length: 2\r\n\r\nok", "GET", true},
		{"lower-case and repeated keys", "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nx-odd_key: v\r\n\r\nabc", "GET", true},
		{"whitespace", "HTTP/1.1 200 OK\r\nContent-Length:   3  \r\nX-A:\t v \t\r\n\r\nabc", "GET", true},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc", "GET", true},
		{"connection tokens", "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 3\r\n\r\nabc", "GET", true},
		{"connection close names a field", "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nContent-Length: 3\r\n\r\nabc", "GET", true},
		{"empty value", "HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 1\r\n\r\nx", "GET", true},
		{"post", "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", "POST", true},
		// Everything below goes to net/http.
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nNEXT", "GET", false},
		{"until close", "HTTP/1.1 200 OK\r\n\r\nall of it", "GET", false},
		{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", false},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD", false},
		{"304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\nNEXT", "GET", false},
		{"204", "HTTP/1.1 204 No Content\r\n\r\nNEXT", "GET", false},
		{"1xx", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", "GET", false},
		{"same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", "GET", false},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nab", "GET", false},
		{"folded header", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nab", "GET", false},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nab", "GET", false},
		{"bad status", "HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nab", "GET", false},
		{"trailer", "HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 2\r\n\r\nab", "GET", false},
		{"space in name", "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nab", "GET", false},
		{"big header", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 5000) + "\r\nContent-Length: 2\r\n\r\nab", "GET", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fast := readWith(t, tc.raw, tc.method, true)
			if fast.handled != tc.handled {
				t.Fatalf("fast path handled=%v, want %v", fast.handled, tc.handled)
			}
			if !fast.handled {
				return
			}
			want := readWith(t, tc.raw, tc.method, false)
			fast.handled = false
			dropKeptConnection(t, &fast, want)
			if !reflect.DeepEqual(fast, want) {
				t.Fatalf("fast path:\n %+v\nnet/http:\n %+v", fast, want)
			}
		})
	}
}

func TestClBodyTruncated(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
	req, _ := http.NewRequest("GET", "http://o/", nil)
	resp, err := readResponseFast(br, req)
	if err != nil || resp == nil {
		t.Fatalf("resp %v err %v", resp, err)
	}
	b, err := io.ReadAll(resp.Body)
	if string(b) != "abc" || err != io.ErrUnexpectedEOF {
		t.Fatalf("body %q err %v, want abc and unexpected EOF", b, err)
	}
}

func FuzzReadResponseFast(f *testing.F) {
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nA: b\r\n\r\nhello", "GET")
	f.Add("HTTP/1.1 500 x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", "POST")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 01\r\n\r\nx", "GET")
	f.Fuzz(func(t *testing.T, raw, method string) {
		if method != "GET" && method != "POST" && method != "HEAD" {
			method = "GET"
		}
		fast := readWith(t, raw, method, true)
		if !fast.handled || fast.parseError {
			return
		}
		want := readWith(t, raw, method, false)
		fast.handled = false
		dropKeptConnection(t, &fast, want)
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("raw %q\nfast path:\n %+v\nnet/http:\n %+v", raw, fast, want)
		}
	})
}

// TestWriteRequestAgreesWithNetHTTP: what writeRequest sends parses to the
// same request as req.Write's bytes, apart from the User-Agent net/http
// adds when there is none (a proxy forwards the client's, or nothing).
func TestWriteRequestAgreesWithNetHTTP(t *testing.T) {
	mk := func(method, url, host string, h map[string][]string) *http.Request {
		r, _ := http.NewRequest(method, url, nil)
		r.Host = host
		for k, v := range h {
			r.Header[k] = v
		}
		return r
	}
	cases := []struct {
		name    string
		req     *http.Request
		handled bool
	}{
		{"get", mk("GET", "http://10.0.0.1:8080/a/b?x=1&y=2", "shop.example", map[string][]string{
			"Accept": {"*/*"}, "User-Agent": {"curl/8"}, "X-Forwarded-For": {"1.2.3.4"}, "Via": {"1.1 edge"}}), true},
		{"escaped path", mk("GET", "http://o/a%2Fb/c%20d", "", nil), true},
		{"force query", mk("GET", "http://o/p?", "", nil), true},
		{"post no body", mk("POST", "http://o/form", "", nil), true},
		{"multi values", mk("GET", "http://o/", "", map[string][]string{"Cookie": {"a=1", "b=2"}, "X-Pad": {"  spaced  "}}), true},
		{"bad header name", mk("GET", "http://o/", "", map[string][]string{"Bad Name": {"x"}}), false},
		{"newline in value", mk("GET", "http://o/", "", map[string][]string{"X-A": {"a\r\nX-Injected: 1"}}), false},
		{"bad host", mk("GET", "http://o/", "bad host", nil), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var fast bytes.Buffer
			bw := bufio.NewWriter(&fast)
			if got := writeRequest(bw, tc.req); got != tc.handled {
				t.Fatalf("handled=%v, want %v", got, tc.handled)
			}
			bw.Flush()
			if !tc.handled {
				if fast.Len() != 0 {
					t.Fatalf("wrote %q before giving up", fast.String())
				}
				return
			}
			var slow bytes.Buffer
			if err := tc.req.Write(&slow); err != nil {
				t.Fatal(err)
			}
			a, err := http.ReadRequest(bufio.NewReader(&fast))
			if err != nil {
				t.Fatalf("fast bytes do not parse: %v\n%s", err, fast.String())
			}
			b, err := http.ReadRequest(bufio.NewReader(&slow))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := tc.req.Header["User-Agent"]; !ok {
				b.Header.Del("User-Agent")
			}
			if a.Method != b.Method || a.RequestURI != b.RequestURI || a.Host != b.Host ||
				a.ContentLength != b.ContentLength || !reflect.DeepEqual(a.Header, b.Header) {
				t.Fatalf("fast:\n%s\nnet/http:\n%s", fast.String(), slow.String())
			}
		})
	}
}

func BenchmarkReadResponseFast(b *testing.B) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 1024\r\n" +
		"Cache-Control: no-store\r\nDate: Wed, 25 Nov 2026 10:00:00 GMT\r\nEtag: \"abc\"\r\n\r\n" + strings.Repeat("x", 1024)
	req, _ := http.NewRequest("GET", "http://o/", nil)
	for _, mode := range []string{"fast", "net-http"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			sr := strings.NewReader(raw)
			br := bufio.NewReader(sr)
			for b.Loop() {
				sr.Reset(raw)
				br.Reset(sr)
				var resp *http.Response
				if mode == "fast" {
					resp, _ = readResponseFast(br, req)
				} else {
					resp, _ = http.ReadResponse(br, req)
				}
				io.Copy(io.Discard, resp.Body)
			}
		})
	}
}

// TestConnectionFields: the values of a buffered head's Connection
// fields, which the lean client puts back after http.ReadResponse drops
// them; only the first head counts, and a head not all buffered gives nil.
func TestConnectionFields(t *testing.T) {
	cases := []struct {
		name, raw string
		want      []string
	}{
		{"none", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", nil},
		{"close and a name", "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\n", []string{"close, X-Hop"}},
		{"two fields, any case", "HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nCONNECTION:  close \r\n\r\n", []string{"keep-alive", "close"}},
		{"bare LF", "HTTP/1.1 200 OK\nConnection: close, X-Hop\n\n", []string{"close, X-Hop"}},
		{"first head only", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", nil},
		{"not in the body", "HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\nConnection: close\n", nil},
		{"head not all buffered", "HTTP/1.1 200 OK\r\nConnection: close\r\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tc.raw), 4096)
			br.Peek(len(tc.raw)) // buffer it, as a response that came in one read
			if got := connectionFields(br); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("connectionFields = %q, want %q", got, tc.want)
			}
			if br.Buffered() != len(tc.raw) {
				t.Fatalf("consumed %d bytes", len(tc.raw)-br.Buffered())
			}
		})
	}
}
