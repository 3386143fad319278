package upstream

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"golang.org/x/net/http/httpguts"
)

// directCase is an origin response as bytes, and whether RoundTripDirect
// must hand it back as a Direct.
type directCase struct {
	name, raw string
	direct    bool
}

var directCases = []directCase{
	{"plain", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", true},
	{"length 0", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: b\r\n\r\n", true},
	{"no reason", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", true},
	{"lower-case names", "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncache-control: no-store\r\nx-odd_key:  v \t\r\n\r\nabc", true},
	{"duplicates", "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nVary: A\r\nVary: B\r\nContent-Length: 1\r\n\r\nx", true},
	{"empty value", "HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 1\r\n\r\nx", true},
	{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye", true},
	{"connection tokens", "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 3\r\n\r\nbye", true},
	{"connection keep-alive", "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nContent-Length: 2\r\n\r\nok", true},
	{"404", "HTTP/1.1 404 Not Found\r\nCache-Control: no-store\r\nContent-Length: 9\r\n\r\nnot found", true},
	{"status 599", "HTTP/1.1 599 Custom\r\nContent-Length: 2\r\n\r\nok", true},
	{"custom reason", "HTTP/1.1 299 Whatever You Like\r\nContent-Length: 2\r\n\r\nok", true},
	{"obs-text value", "HTTP/1.1 200 OK\r\nX-Latin: caf\xe9\r\nContent-Length: 2\r\n\r\nok", true},
	{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true},
	{"head near the buffer size", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 4000) + "\r\nContent-Length: 2\r\n\r\nok", true},
	// Everything below is for http.ReadResponse (or readResponseFast,
	// which the Direct must then match).
	{"obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nab", false},
	{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nab", false},
	{"bare LF in one line", "HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 2\r\n\r\nab", false},
	{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
	{"chunked with length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
	{"trailer", "HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 2\r\n\r\nab", false},
	{"no length", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", false},
	{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", false},
	{"same length twice", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", false},
	{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nab", false},
	{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nab", false},
	{"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
	{"1xx then 200", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine", false},
	{"204", "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", false},
	{"304", "HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\nContent-Length: 10\r\n\r\n", false},
	{"head over the buffer", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 5000) + "\r\nContent-Length: 2\r\n\r\nok", false},
	{"space in name", "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nab", false},
	{"space before colon", "HTTP/1.1 200 OK\r\nX-A : x\r\nContent-Length: 2\r\n\r\nab", false},
	{"no colon", "HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 2\r\n\r\nab", false},
	{"empty name", "HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 2\r\n\r\nab", false},
	{"control byte in value", "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nab", false},
	{"DEL in value", "HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\nContent-Length: 2\r\n\r\nab", false},
	{"CR in value", "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nab", false},
	{"control byte in reason", "HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok", false},
	{"bad status", "HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nab", false},
	{"status 600", "HTTP/1.1 600 Beyond\r\nContent-Length: 2\r\n\r\nab", false},
	{"truncated head", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", false},
}

// directOrigin answers every request on a connection with raw; with
// closeAfter it closes the connection after the first response (the end
// of a body without a length).
func directOrigin(t *testing.T, raw string, closeAfter bool) (addr string, conns *atomic.Int64) {
	return rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, raw); err != nil || closeAfter {
				return
			}
		}
	})
}

// seen is a response as a caller sees it: what it reports and its body.
type seen struct {
	Status        string
	StatusCode    int
	Proto         string
	Header        http.Header
	ContentLength int64
	Close         bool
	TE            []string
	Body          string
	BodyErr       bool
}

func readSeen(t *testing.T, resp *http.Response) seen {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return seen{
		Status: resp.Status, StatusCode: resp.StatusCode, Proto: resp.Proto, Header: resp.Header,
		ContentLength: resp.ContentLength, Close: resp.Close, TE: resp.TransferEncoding,
		Body: string(b), BodyErr: err != nil,
	}
}

// fieldsHeader parses Direct.Fields as a caller relaying them would:
// canonical names, trimmed values, and a Connection field naming close
// reported as closeConn (and kept, as readResponseFast keeps it).
func fieldsHeader(t testing.TB, fields []byte) (h http.Header, closeConn bool) {
	t.Helper()
	h = http.Header{}
	s := string(fields)
	for s != "" {
		ln, rest, ok := strings.Cut(s, "\r\n")
		if !ok {
			t.Fatalf("field line without CRLF in %q", fields)
		}
		s = rest
		k, v, ok := strings.Cut(ln, ":")
		if !ok {
			t.Fatalf("field line without colon: %q", ln)
		}
		k, v = textproto.CanonicalMIMEHeaderKey(k), textproto.TrimString(v)
		if k == "Connection" && httpguts.HeaderValuesContainsToken([]string{v}, "close") {
			closeConn = true
		}
		h[k] = append(h[k], v)
	}
	return h, closeConn
}

func directTripper(t *testing.T, p *Pools, addr string) DirectTripper {
	t.Helper()
	rt, err := p.Get("t", Target{URL: mustURL(t, "http://"+addr)})
	if err != nil {
		t.Fatal(err)
	}
	dt, ok := rt.(DirectTripper)
	if !ok {
		t.Fatalf("%T is not a DirectTripper", rt)
	}
	return dt
}

func getReq(t *testing.T, addr string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/p?q=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestRoundTripDirectMatchesRoundTrip sends a GET through RoundTrip and
// through RoundTripDirect to origins answering with the same bytes: a
// response a Direct can carry comes back as one, and its fields, status,
// length and body are what RoundTrip reports (also through
// Direct.Response); any other comes back as RoundTrip's response.
func TestRoundTripDirectMatchesRoundTrip(t *testing.T) {
	// One buffer for every case, left as the previous case left it: a
	// round trip must start from a clean one.
	var buf DirectBuf
	for _, tc := range directCases {
		t.Run(tc.name, func(t *testing.T) {
			// Closed after the response: bodies without a length (and
			// truncated ones) end there.
			wantAddr, _ := directOrigin(t, tc.raw, true)
			var want seen
			wantResp, wantErr := poolOf(t, newPools(t, nil), wantAddr).RoundTrip(getReq(t, wantAddr))
			if wantErr == nil {
				want = readSeen(t, wantResp)
			}

			addr, _ := directOrigin(t, tc.raw, true)
			dt := directTripper(t, newPools(t, nil), addr)
			d, resp, ok, err := dt.RoundTripDirect(getReq(t, addr), &buf)
			if !ok {
				t.Fatal("ok = false for a GET on a plain-http pool")
			}
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("RoundTripDirect err %v, RoundTrip err %v", err, wantErr)
			}
			if err != nil {
				if d != nil || resp != nil {
					t.Fatalf("error %v with a result (%v, %v)", err, d, resp)
				}
				return
			}
			if got := d != nil; got != tc.direct {
				t.Fatalf("Direct = %v, want %v (resp %v)", got, tc.direct, resp)
			}
			if !tc.direct {
				if resp == nil {
					t.Fatal("neither a Direct nor a response")
				}
				if got := readSeen(t, resp); !reflect.DeepEqual(got, want) {
					t.Fatalf("RoundTripDirect:\n %+v\nRoundTrip:\n %+v", got, want)
				}
				return
			}
			if resp != nil {
				t.Fatalf("a Direct and a response")
			}
			if !bytes.HasPrefix([]byte(tc.raw[strings.Index(tc.raw, "\r\n")+2:]), append(bytes.Clone(d.Fields), "\r\n"...)) {
				t.Fatalf("Fields %q are not the origin's header lines", d.Fields)
			}
			h, closeConn := fieldsHeader(t, d.Fields)
			body, berr := io.ReadAll(d.Body)
			d.Body.Close()
			got := seen{
				Status: want.Status, StatusCode: d.StatusCode, Proto: "HTTP/1.1", Header: h,
				ContentLength: d.ContentLength, Close: closeConn, Body: string(body), BodyErr: berr != nil,
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Direct:\n %+v\nRoundTrip:\n %+v", got, want)
			}
		})
	}
}

// poolOf is the *pool behind p for the origin at addr.
func poolOf(t *testing.T, p *Pools, addr string) *pool {
	t.Helper()
	rt, err := p.Get("t", Target{URL: mustURL(t, "http://"+addr)})
	if err != nil {
		t.Fatal(err)
	}
	return rt.(*pool)
}

// TestDirectResponseMatchesRoundTrip: a Direct turned back into an
// *http.Response (for a caller that cannot relay it as it is) is the
// response RoundTrip returns, body included.
func TestDirectResponseMatchesRoundTrip(t *testing.T) {
	for _, tc := range directCases {
		if !tc.direct {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			wantAddr, _ := directOrigin(t, tc.raw, true)
			wantResp, err := poolOf(t, newPools(t, nil), wantAddr).RoundTrip(getReq(t, wantAddr))
			if err != nil {
				t.Fatal(err)
			}
			want := readSeen(t, wantResp)

			addr, _ := directOrigin(t, tc.raw, true)
			req := getReq(t, addr)
			d, _, _, err := directTripper(t, newPools(t, nil), addr).RoundTripDirect(req, nil)
			if err != nil || d == nil {
				t.Fatalf("RoundTripDirect: %v, %v", d, err)
			}
			resp := d.Response(req)
			if resp.Request != req || resp.ProtoMajor != 1 || resp.ProtoMinor != 1 {
				t.Fatalf("Request %p (want %p), proto %d.%d", resp.Request, req, resp.ProtoMajor, resp.ProtoMinor)
			}
			got := readSeen(t, resp)
			// The reason phrase is not kept: the proxy writes its own
			// status line from the code.
			got.Status, want.Status = "", ""
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Direct.Response:\n %+v\nRoundTrip:\n %+v", got, want)
			}
		})
	}
}

// TestRoundTripDirectDeclines: only a bodiless GET on the lean client is
// for RoundTripDirect; for anything else it reports ok false without
// sending anything. (https origins: TestLeanTLS.)
func TestRoundTripDirectDeclines(t *testing.T) {
	addr, conns := directOrigin(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)
	mk := func(method string, body io.Reader) *http.Request {
		req, err := http.NewRequest(method, "http://"+addr+"/", body)
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	upgrade := mk(http.MethodGet, nil)
	upgrade.Header.Set("Connection", "Upgrade")
	upgrade.Header.Set("Upgrade", "websocket")
	withBody := mk(http.MethodGet, strings.NewReader("x"))
	lean := directTripper(t, newPools(t, nil), addr)
	for name, req := range map[string]*http.Request{
		"HEAD": mk(http.MethodHead, nil), "POST": mk(http.MethodPost, strings.NewReader("a=1")),
		"OPTIONS": mk(http.MethodOptions, nil), "upgrade": upgrade, "GET with a body": withBody,
	} {
		if d, resp, ok, err := lean.RoundTripDirect(req, nil); ok || d != nil || resp != nil || err != nil {
			t.Errorf("%s: RoundTripDirect = %v, %v, %v, %v; want nothing", name, d, resp, ok, err)
		}
	}
	noLean := directTripper(t, newPools(t, func(c *Config) { c.DisableLeanHTTP1 = true }), addr)
	if _, _, ok, _ := noLean.RoundTripDirect(mk(http.MethodGet, nil), nil); ok {
		t.Error("ok = true on a pool without the lean client")
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("origin saw %d connections, want none", n)
	}
	// The pool is still good for a GET.
	d, _, ok, err := lean.RoundTripDirect(mk(http.MethodGet, nil), nil)
	if !ok || err != nil || d == nil {
		t.Fatalf("GET: %v, %v, %v", d, ok, err)
	}
	d.Body.Close()
}

// directGet sends a GET through RoundTripDirect and expects a Direct.
func directGet(t *testing.T, dt DirectTripper, addr string) *Direct {
	t.Helper()
	d, resp, ok, err := dt.RoundTripDirect(getReq(t, addr), nil)
	if !ok || err != nil || d == nil {
		t.Fatalf("RoundTripDirect: direct %v, resp %v, ok %v, err %v", d, resp, ok, err)
	}
	return d
}

// TestDirectConnectionReuse: a Direct body read to EOF gives the
// connection back; one closed early, one after Connection: close and one
// with bytes beyond the body do not.
func TestDirectConnectionReuse(t *testing.T) {
	body := strings.Repeat("x", 20000) // more than the buffer: read from the socket
	for _, tc := range []struct {
		name, raw string
		read      bool // read the body to EOF before Close
		reused    bool
	}{
		{"read to EOF", "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + body, true, true},
		{"empty body read", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, true},
		{"small body read", "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", true, true},
		{"closed before EOF", "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + body, false, false},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true, false},
		{"bytes after the body", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := directOrigin(t, tc.raw, false)
			p := newPools(t, nil)
			dt := directTripper(t, p, addr)
			lp := leanOf(t, p, Target{URL: mustURL(t, "http://"+addr)})
			for i := range 2 {
				d := directGet(t, dt, addr)
				if tc.read {
					b, err := io.ReadAll(d.Body)
					if err != nil || int64(len(b)) != d.ContentLength {
						t.Fatalf("request %d: read %d of %d bytes: %v", i, len(b), d.ContentLength, err)
					}
				} else if _, err := io.ReadFull(d.Body, make([]byte, 10)); err != nil {
					t.Fatal(err)
				}
				d.Body.Close()
				if _, err := d.Body.Read(make([]byte, 1)); err == nil {
					t.Fatal("Read after Close succeeded")
				}
				want := 0
				if tc.reused {
					want = 1
				}
				if n := idleCount(lp); n != want {
					t.Fatalf("request %d: idle connections %d, want %d", i, n, want)
				}
			}
			want := int64(2)
			if tc.reused {
				want = 1
			}
			if n := conns.Load(); n != want {
				t.Fatalf("origin saw %d connections for 2 requests, want %d", n, want)
			}
		})
	}
}

// TestDirectStaleConnRetried: a GET on a kept-alive connection the origin
// has closed meanwhile is sent again on a fresh one, as RoundTrip does.
func TestDirectStaleConnRetried(t *testing.T) {
	var served atomic.Int64
	addr, conns := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		served.Add(1) // then close, without saying so
	})
	p := newPools(t, nil)
	dt := directTripper(t, p, addr)
	lp := leanOf(t, p, Target{URL: mustURL(t, "http://"+addr)})
	for i := range 3 {
		d := directGet(t, dt, addr)
		if b, err := io.ReadAll(d.Body); err != nil || string(b) != "ok" {
			t.Fatalf("request %d: %q, %v", i, b, err)
		}
		d.Body.Close()
		if idleCount(lp) != 1 {
			t.Fatalf("request %d: connection not kept", i)
		}
		testkit.Eventually(t, 5*time.Second, "the origin to close", func() bool { return served.Load() == int64(i+1) })
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("connections %d, want 3", n)
	}
}

// TestDirectHeadInPieces: a head that arrives in several segments is
// still carried as a Direct, its fields whole.
func TestDirectHeadInPieces(t *testing.T) {
	pieces := []string{"HTTP/1.1 200 OK\r\nContent-Ty", "pe: text/plain\r\nContent-Length: 5\r", "\n\r", "\nhel", "lo"}
	addr, _ := rawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		for _, p := range pieces {
			if _, err := io.WriteString(c, p); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond) // separate segments, not synchronisation
		}
		io.Copy(io.Discard, br)
	})
	d := directGet(t, directTripper(t, newPools(t, nil), addr), addr)
	if string(d.Fields) != "Content-Type: text/plain\r\nContent-Length: 5\r\n" || d.ContentLength != 5 {
		t.Fatalf("fields %q, length %d", d.Fields, d.ContentLength)
	}
	b, err := io.ReadAll(d.Body)
	d.Body.Close()
	if err != nil || string(b) != "hello" {
		t.Fatalf("body %q, %v", b, err)
	}
}

// peekRaw runs peekDirect over raw in a 4 KiB buffer, as a lean
// connection's.
func peekRaw(raw string) (*bufio.Reader, *directResponse, bool, error) {
	br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
	dr := &directResponse{}
	ok, err := peekDirect(&leanConn{br: br}, dr)
	return br, dr, ok, err
}

// TestPeekDirectCases checks peekDirect alone against the table.
func TestPeekDirectCases(t *testing.T) {
	for _, tc := range directCases {
		t.Run(tc.name, func(t *testing.T) {
			checkPeekDirect(t, tc.raw, tc.direct)
		})
	}
}

// FuzzPeekDirect: whatever peekDirect accepts, net/http and
// readResponseFast read as the same response (status, length, header,
// body, keep-alive); whatever it declines is left unread for them.
func FuzzPeekDirect(f *testing.F) {
	for _, tc := range directCases {
		// The heads of 4 KiB and more (TestPeekDirectCases has them)
		// make every new input take seconds to minimize.
		if len(tc.raw) < 1024 {
			f.Add(tc.raw)
		}
	}
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: 01\r\n\r\nx")
	f.Add("HTTP/1.1 200 \r\nContent-Length:0\r\n\r\n")
	f.Add("HTTP/1.1 200\r\r\nContent-Length:0\r\n\r\n")
	f.Add("HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
	f.Add("HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok")
	f.Fuzz(func(t *testing.T, raw string) {
		checkPeekDirect(t, raw, false)
	})
}

// checkPeekDirect checks peekDirect on raw; must says it has to accept.
func checkPeekDirect(t *testing.T, raw string, must bool) {
	t.Helper()
	br, dr, ok, err := peekRaw(raw)
	if must && !ok {
		t.Fatalf("peekDirect declined (err %v)", err)
	}
	if !ok {
		if rest, _ := io.ReadAll(br); string(rest) != raw {
			t.Fatalf("declined after consuming %d bytes", len(raw)-len(rest))
		}
		return
	}
	if err != nil {
		t.Fatalf("ok with error %v", err)
	}
	d := &dr.d
	if d.StatusCode < 200 || d.StatusCode > 599 || d.StatusCode == 204 || d.StatusCode == 304 || d.ContentLength < 0 {
		t.Fatalf("accepted status %d, length %d", d.StatusCode, d.ContentLength)
	}
	eol := strings.Index(raw, "\r\n")
	headEnd := eol + 2 + len(d.Fields) + 2
	if !strings.HasPrefix(raw[eol+2:], string(d.Fields)+"\r\n") {
		t.Fatalf("Fields %q are not the header lines of %q", d.Fields, raw)
	}
	if len(d.Fields) > 0 && !bytes.HasSuffix(d.Fields, []byte("\r\n")) {
		t.Fatalf("Fields %q do not end in CRLF", d.Fields)
	}
	h, closeConn := fieldsHeader(t, d.Fields)
	if closeConn != dr.closeConn {
		t.Fatalf("closeConn %v, the fields say %v", dr.closeConn, closeConn)
	}
	cl := clBody{br: br, n: d.ContentLength}
	body, _ := io.ReadAll(&cl)
	rest, _ := io.ReadAll(br)
	if want := raw[headEnd:]; string(body)+string(rest) != want {
		t.Fatalf("body %q + rest %q, want %q after the head", body, rest, want)
	}

	fast := readWith(t, raw, http.MethodGet, true)
	if !fast.handled || fast.parseError {
		t.Fatalf("readResponseFast: handled %v, error %v, for a response peekDirect accepts", fast.handled, fast.parseError)
	}
	got := parsedResp{
		status: fast.status, code: d.StatusCode, header: h, length: d.ContentLength,
		close: dr.closeConn, body: string(body), rest: string(rest), handled: true,
	}
	if !reflect.DeepEqual(got, fast) {
		t.Fatalf("raw %q\npeekDirect:\n %+v\nreadResponseFast:\n %+v", raw, got, fast)
	}

	std := readWith(t, raw, http.MethodGet, false)
	if std.parseError {
		t.Fatalf("raw %q: peekDirect accepts what http.ReadResponse rejects", raw)
	}
	if closeConn {
		// net/http drops every Connection field when one names close;
		// readResponseFast and Direct.Response keep them, so that the
		// proxy strips the fields they name.
		delete(std.header, "Connection")
		delete(got.header, "Connection")
	}
	if pv := got.header["Pragma"]; len(pv) > 0 && pv[0] == "no-cache" && got.header["Cache-Control"] == nil {
		// Reported: http.ReadResponse adds Cache-Control: no-cache for
		// Pragma: no-cache (RFC 7234 section 5.4); readResponseFast,
		// and so peekDirect, do not. Delete this when they agree.
		got.header["Cache-Control"] = []string{"no-cache"}
	}
	got.handled, got.status = false, std.status
	if !reflect.DeepEqual(got, std) {
		t.Fatalf("raw %q\npeekDirect:\n %+v\nhttp.ReadResponse:\n %+v", raw, got, std)
	}
}

// TestLeanTLS: an https origin that speaks HTTP/1.1 is served by the lean
// client, direct path included, over one reused verified connection; one
// that picks HTTP/2 by ALPN costs a single wasted handshake, after which
// its pool declines the direct path and RoundTrip speaks HTTP/2.
func TestLeanTLS(t *testing.T) {
	ca := testkit.NewCA(t, "CA")
	leaf := ca.Issue(t, []string{"origin.internal"}).TLS
	directGet := func(t *testing.T, dt DirectTripper, u string) (bool, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		d, resp, ok, err := dt.RoundTripDirect(req, nil)
		if err != nil {
			t.Fatalf("RoundTripDirect: %v", err)
		}
		switch {
		case !ok:
			return false, ""
		case d == nil:
			resp.Body.Close()
			t.Fatalf("RoundTripDirect answered with an *http.Response (%s), want a Direct", resp.Proto)
		}
		b, err := io.ReadAll(d.Body)
		d.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return true, string(b)
	}

	t.Run("http/1.1", func(t *testing.T) {
		o := startOrigin(t, nil, &tls.Config{Certificates: []tls.Certificate{leaf}}, false)
		rt, err := newPools(t, nil).Get("t", Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM, ServerName: "origin.internal"}})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			ok, body := directGet(t, rt.(DirectTripper), o.url.String()+"/x")
			if !ok || body != "proto=HTTP/1.1 sni=origin.internal" {
				t.Fatalf("request %d: direct %v, body %q", i, ok, body)
			}
		}
		if n := o.newConns.Load(); n != 1 {
			t.Fatalf("origin saw %d connections for 3 requests, want 1", n)
		}
	})

	t.Run("h2, a POST first", func(t *testing.T) {
		// The request that finds out the origin speaks h2 goes to
		// http.Transport with its body intact.
		o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s", r.Proto, b)
		}, &tls.Config{Certificates: []tls.Certificate{leaf}}, true)
		rt, err := newPools(t, nil).Get("t", Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM, ServerName: "origin.internal"}})
		if err != nil {
			t.Fatal(err)
		}
		// A client's body, as a server hands it over: unreadable once closed.
		req, _ := http.NewRequest(http.MethodPost, o.url.String()+"/form", &closableBody{r: strings.NewReader("a=1")})
		req.ContentLength = 3
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "HTTP/2.0 a=1" {
			t.Fatalf("origin answered %q, want HTTP/2.0 and the body a=1", b)
		}
	})

	t.Run("h2", func(t *testing.T) {
		o := startOrigin(t, nil, &tls.Config{Certificates: []tls.Certificate{leaf}}, true)
		rt, err := newPools(t, nil).Get("t", Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM, ServerName: "origin.internal"}})
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := directGet(t, rt.(DirectTripper), o.url.String()+"/x"); ok {
			t.Fatal("direct path taken for an HTTP/2 origin")
		}
		for range 3 {
			resp, body, err := get(rt, o.url)
			if err != nil || resp.ProtoMajor != 2 || body != "proto=HTTP/2.0 sni=origin.internal" {
				t.Fatalf("RoundTrip: %v, body %q", err, body)
			}
		}
		if ok, _ := directGet(t, rt.(DirectTripper), o.url.String()+"/x"); ok {
			t.Fatal("direct path taken for an HTTP/2 origin")
		}
		// The lean client's handshake, then http.Transport's one.
		if n := o.newConns.Load(); n != 2 {
			t.Fatalf("origin saw %d connections, want 2", n)
		}
		if n := o.count("GET /x"); n != 0 {
			t.Fatalf("origin got %d requests from the declined direct path, want none", n)
		}
	})
}

// closableBody reads r until closed, then fails like a server's request
// body read after the handler closed it.
type closableBody struct {
	r      io.Reader
	closed atomic.Bool
}

func (b *closableBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.r.Read(p)
}

func (b *closableBody) Close() error { b.closed.Store(true); return nil }
