package proxy

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// The direct path (direct.go) promises the bytes the full path would have
// sent, but for the order and case of header fields. These tests hold it
// to that: the same scripted origin behind two proxies wired as node
// wires them, one with Config.Direct and one without, every answer
// compared after normalising what legitimately differs (timings, the
// proxy's Date, the Vary lines' split). The origin is raw TCP so that a
// case controls header case, duplicates, Connection tokens and framing.

// directCase is one origin behaviour for TestDirectMatchesFullPath. Each
// case has its own URL; the client asks for it `requests` times through
// each proxy over one keep-alive connection. The first request marks the
// URL hit-for-miss; the later ones are what the direct path serves.
type directCase struct {
	name  string
	ae    string                // the client's Accept-Encoding; "" sends none
	reply func(n int) originAct // the origin's answer to its n-th request (from 1)

	requests int // per proxy; 0 means 3
	fetches  int // requests the origin must see per proxy; 0 means requests
	direct   int // responses the direct proxy must relay on the direct path

	status      int    // of every response; 0 means 200
	body        []byte // the body every client gets, decoded
	encoding    string // Content-Encoding of the last response
	cacheStatus string // Cache-Status of the last response; "" skips
	absent      []string
	check       func(errorf errorf, h http.Header) // more on the last response
}

// errorf reports a failure, like testing.T.Errorf.
type errorf func(format string, args ...any)

func TestDirectMatchesFullPath(t *testing.T) {
	date := time.Now().UTC().Format(http.TimeFormat)
	noStore := func(extra ...string) []string {
		return append([]string{"Content-Type: text/plain", "Cache-Control: no-store", "Date: " + date}, extra...)
	}
	text1K := textBody(1024)
	html10K := bytes.ReplaceAll(textBody(10<<10), []byte("edge"), []byte("<b>"))
	small := []byte("hello, edge\n")
	png := append([]byte("\x89PNG\r\n\x1a\n"), randomBytes(2048, 1)...)
	big := randomBytes(1<<20, 2)

	cases := []directCase{
		{
			name:  "no-store-text-1KB",
			reply: fixed(originResp("200 OK", noStore(), text1K)),
			body:  text1K, direct: 2,
			cacheStatus: "edge; fwd=miss; detail=no-store",
			// Compressible and large enough: a client without
			// Accept-Encoding gets it as is, but caches must vary.
			check: wantVary("accept-encoding"),
		},
		{
			name: "private-set-cookie",
			reply: fixed(originResp("200 OK", []string{"Content-Type: text/plain", "Cache-Control: private",
				"Set-Cookie: session=abc; HttpOnly", "Date: " + date}, small)),
			body: small, direct: 2,
			cacheStatus: "edge; fwd=miss; detail=private",
			check:       wantValues("Set-Cookie", "session=abc; HttpOnly"),
		},
		{
			name:  "origin-connection-close",
			reply: closing(originResp("200 OK", noStore("Connection: close"), small)),
			body:  small, direct: 2,
			absent: []string{"Connection"},
		},
		{
			name:  "connection-names-a-field",
			reply: fixed(originResp("200 OK", noStore("Connection: X-Hop", "X-Hop: secret", "X-Kept: yes"), small)),
			body:  small, direct: 2,
			absent: []string{"X-Hop", "Connection"},
			check:  wantValues("X-Kept", "yes"),
		},
		{
			// net/http's response reader drops a Connection field that
			// says close, with the names in it; the lean client keeps it
			// so that X-Hop is stripped on the full path too.
			name:  "connection-close-names-a-field",
			reply: closing(originResp("200 OK", noStore("Connection: close, X-Hop", "X-Hop: secret", "X-Kept: yes"), small)),
			body:  small, direct: 2,
			absent: []string{"X-Hop", "Connection"},
			check:  wantValues("X-Kept", "yes"),
		},
		{
			// The same through net/http's reader (chunked framing), on
			// the full path in both proxies.
			name: "chunked-connection-close-names-a-field",
			reply: closing(originResp("200 OK", noStore("Transfer-Encoding: chunked", "Connection: close, X-Hop", "X-Hop: secret"),
				[]byte("5\r\nhello\r\n7\r\n, edge\n\r\n0\r\n\r\n"))),
			body: []byte("hello, edge\n"), direct: 0,
			absent: []string{"X-Hop", "Connection"},
		},
		{
			name: "hop-by-hop-fields",
			reply: fixed(originResp("200 OK", noStore("Keep-Alive: timeout=5", "Proxy-Connection: keep-alive",
				"Proxy-Authenticate: Basic realm=x", "Upgrade: h2c", "TE: trailers"), small)),
			body: small, direct: 2,
			absent: []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Upgrade", "Te"},
		},
		{
			name: "origin-cache-and-timing-fields",
			reply: fixed(originResp("200 OK", noStore("Cache-Status: upstream; hit", "Surrogate-Key: a b",
				"Surrogate-Control: max-age=60", "Cache-Tag: t1", "X-Origin-Time: 7777.77ms",
				"X-Total-Time: 8888.88ms"), small)),
			body: small, direct: 2,
			cacheStatus: "edge; fwd=miss; detail=no-store",
			absent:      []string{"Surrogate-Key", "Surrogate-Control", "Cache-Tag"},
			check: func(errorf errorf, h http.Header) {
				if h.Get("X-Origin-Time") == "7777.77ms" || h.Get("X-Total-Time") == "8888.88ms" {
					errorf("origin's timing fields relayed: %q %q", h.Get("X-Origin-Time"), h.Get("X-Total-Time"))
				}
			},
		},
		{
			name:  "origin-server-timing",
			reply: fixed(originResp("200 OK", noStore("Server-Timing: db;dur=12.5"), small)),
			body:  small, direct: 2,
			check: func(errorf errorf, h http.Header) {
				// The origin's entry is kept and Edge's follows it.
				if st := h.Values("Server-Timing"); len(st) != 2 || st[0] != "db;dur=12.5" {
					errorf("Server-Timing %q, want the origin's then Edge's", st)
				}
			},
		},
		{
			name: "lower-case-names",
			reply: fixed(originResp("200 OK", []string{"content-type: text/plain", "cache-control: no-store",
				"date: " + date, "x-lower: yes", "connection: x-hop", "x-hop: secret"}, small)),
			body: small, direct: 2,
			absent: []string{"X-Hop"},
			check:  wantValues("X-Lower", "yes"),
		},
		{
			name: "duplicate-fields",
			reply: fixed(originResp("200 OK", noStore("Set-Cookie: a=1; Path=/", "X-Dup: one",
				"Set-Cookie: b=2; Path=/", "X-Dup: two"), small)),
			body: small, direct: 2,
			check: func(errorf errorf, h http.Header) {
				wantValues("Set-Cookie", "a=1; Path=/", "b=2; Path=/")(errorf, h)
				wantValues("X-Dup", "one", "two")(errorf, h)
			},
		},
		{
			name:  "vary-cookie",
			reply: fixed(originResp("200 OK", noStore("Vary: Cookie"), text1K)),
			body:  text1K, direct: 2,
			check: wantVary("accept-encoding", "cookie"),
		},
		{
			name:  "vary-accept-encoding",
			reply: fixed(originResp("200 OK", noStore("Vary: accept-encoding"), text1K)),
			body:  text1K, direct: 2,
			check: wantVary("accept-encoding"),
		},
		{
			name:  "no-date",
			reply: fixed(originResp("200 OK", []string{"Content-Type: text/plain", "Cache-Control: no-store"}, small)),
			body:  small, direct: 2,
		},
		{
			name:  "content-length-0",
			reply: fixed(originResp("200 OK", noStore(), nil)),
			body:  []byte{}, direct: 2,
			check: wantValues("Content-Length", "0"),
		},
		{
			name:   "404-no-store",
			reply:  fixed(originResp("404 Not Found", noStore(), []byte("no such page\n"))),
			status: 404, body: []byte("no such page\n"), direct: 2,
			cacheStatus: "edge; fwd=miss; fwd-status=404; detail=no-store",
		},
		{
			name:   "500-no-store",
			reply:  fixed(originResp("500 Internal Server Error", noStore(), []byte("boom\n"))),
			status: 500, body: []byte("boom\n"), direct: 2,
			cacheStatus: "edge; fwd=miss; fwd-status=500; detail=no-store",
		},
		{
			name: "gzip-body-client-accepts",
			ae:   "gzip",
			reply: fixed(originResp("200 OK", []string{"Content-Type: text/html", "Content-Encoding: gzip",
				"Cache-Control: no-store", "Date: " + date}, gzipBytes(html10K))),
			body: html10K, encoding: "gzip", direct: 2,
			check: wantVary("accept-encoding"),
		},
		{
			// The client cannot read gzip: the full path decodes, with
			// the response the direct path already fetched.
			name: "gzip-body-client-does-not-accept",
			reply: fixed(originResp("200 OK", []string{"Content-Type: text/html", "Content-Encoding: gzip",
				"Cache-Control: no-store", "Date: " + date}, gzipBytes(html10K))),
			body: html10K, direct: 0,
			check: wantVary("accept-encoding"),
		},
		{
			name:  "unknown-coding-passes",
			reply: fixed(originResp("200 OK", noStore("Content-Encoding: deflate"), []byte("not really deflate"))),
			body:  []byte("not really deflate"), encoding: "deflate", direct: 2,
			check: wantVary("accept-encoding"),
		},
		{
			name:  "html-10KB-client-accepts-gzip",
			ae:    "gzip",
			reply: fixed(originResp("200 OK", []string{"Content-Type: text/html", "Cache-Control: no-store", "Date: " + date}, html10K)),
			body:  html10K, encoding: "gzip", direct: 0,
			check: wantVary("accept-encoding"),
		},
		{
			name:  "html-10KB-no-accept-encoding",
			reply: fixed(originResp("200 OK", []string{"Content-Type: text/html", "Cache-Control: no-store", "Date: " + date}, html10K)),
			body:  html10K, direct: 2,
			check: wantVary("accept-encoding"),
		},
		{
			name: "html-no-transform-client-accepts-gzip",
			ae:   "gzip",
			reply: fixed(originResp("200 OK", []string{"Content-Type: text/html",
				"Cache-Control: no-store, no-transform", "Date: " + date}, html10K)),
			body: html10K, direct: 2,
			absent: []string{"Vary"},
		},
		{
			name:  "png-client-accepts-gzip",
			ae:    "gzip, br",
			reply: fixed(originResp("200 OK", []string{"Content-Type: image/png", "Cache-Control: no-store", "Date: " + date}, png)),
			body:  png, direct: 2,
			absent: []string{"Vary"},
		},
		{
			name:  "1MiB-body",
			ae:    "gzip",
			reply: fixed(originResp("200 OK", []string{"Content-Type: application/octet-stream", "Cache-Control: no-store", "Date: " + date}, big)),
			body:  big, direct: 2,
		},
		{
			// The full path's h1 writer sniffs a Content-Type for a body
			// the origin did not type (as net/http does): the direct
			// path leaves such a response to it.
			name:  "no-content-type",
			reply: fixed(originResp("200 OK", []string{"Cache-Control: no-store", "Date: " + date}, small)),
			body:  small, direct: 0, // left to the full path
		},
		{
			// The next two: fields Connection names are dropped, so they
			// must not count for the decisions made from the relayed
			// head: Date (the server then adds one) and Vary.
			name:  "connection-names-date",
			reply: fixed(originResp("200 OK", noStore("Connection: Date"), small)),
			body:  small, direct: 2,
		},
		{
			// Vary (with Accept-Encoding) is dropped, and not re-added
			// because the dropped line already had Accept-Encoding.
			name:  "connection-names-vary",
			reply: fixed(originResp("200 OK", noStore("Connection: Vary", "Vary: Accept-Encoding"), text1K)),
			body:  text1K, direct: 2,
			check: wantVary("accept-encoding"),
		},
		{
			name: "chunked-falls-back",
			reply: fixed(originResp("200 OK", noStore("Transfer-Encoding: chunked"),
				[]byte("5\r\nhello\r\n7\r\n, edge\n\r\n0\r\n\r\n"))),
			body: []byte("hello, edge\n"), direct: 0,
		},
		{
			name:  "trailer-field-falls-back",
			reply: fixed(originResp("200 OK", noStore("Trailer: X-Sum"), small)),
			body:  small, direct: 0,
			absent: []string{"Trailer"},
		},
		{
			name: "many-connection-tokens-fall-back",
			reply: fixed(originResp("200 OK", noStore("Connection: A1, A2, A3, A4, A5",
				"A1: x", "A2: x", "A3: x", "A4: x", "A5: x", "A6: kept"), small)),
			body: small, direct: 0,
			absent: []string{"A1", "A2", "A3", "A4", "A5"},
			check:  wantValues("A6", "kept"),
		},
		{
			name: "many-caching-fields-fall-back",
			reply: fixed(originResp("200 OK", noStore("Set-Cookie: c1=1", "Set-Cookie: c2=1", "Set-Cookie: c3=1",
				"Set-Cookie: c4=1", "Set-Cookie: c5=1", "Set-Cookie: c6=1", "Set-Cookie: c7=1"), small)),
			body: small, direct: 0,
			check: func(errorf errorf, h http.Header) {
				if n := len(h.Values("Set-Cookie")); n != 7 {
					errorf("%d Set-Cookie fields, want 7", n)
				}
			},
		},
		{
			name:  "head-larger-than-buffer-falls-back",
			reply: fixed(originResp("200 OK", noStore("X-Big: "+strings.Repeat("b", 64<<10)), small)),
			body:  small, direct: 0,
		},
		{
			name: "http-1.0-falls-back",
			reply: closing([]byte("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\n" +
				"Date: " + date + "\r\nContent-Length: 12\r\n\r\nhello, edge\n")),
			body: small, direct: 0,
		},
		{
			// The origin changes its mind: the passed response is storable,
			// so the mark goes, the next request fills the cache and the
			// ones after are hits, on both proxies.
			name: "turns-cacheable",
			reply: func(n int) originAct {
				if n == 1 {
					return originAct{raw: originResp("200 OK", []string{"Content-Type: text/plain", "Cache-Control: no-store"}, small)}
				}
				return originAct{raw: originResp("200 OK", []string{"Content-Type: text/plain", "Cache-Control: max-age=60"}, small)}
			},
			requests: 5, fetches: 3, direct: 1,
			body: small, cacheStatus: "edge; hit",
		},
	}

	byPath := map[string]*directCase{}
	for i := range cases {
		byPath["/c/"+cases[i].name] = &cases[i]
	}
	script := func(path string, n int) originAct {
		if c := byPath[path]; c != nil {
			return c.reply(n)
		}
		return originAct{raw: originResp("404 Not Found", noStore(), nil)}
	}
	// One origin per proxy, running the same script: each proxy's origin
	// traffic (requests, connections) is then its own to count.
	fullOrigin, directOrigin := startScriptedOrigin(t, script), startScriptedOrigin(t, script)
	full := startDirectProxy(t, fullOrigin.addr, upstream.Config{}, false)
	direct := startDirectProxy(t, directOrigin.addr, upstream.Config{}, true)

	for i := range cases {
		c := &cases[i]
		t.Run(c.name, func(t *testing.T) {
			path := "/c/" + c.name
			n := cmp.Or(c.requests, 3)
			fullGot, fullDelta := runCase(t, full, path, c.ae, n)
			directGot, directDelta := runCase(t, direct, path, c.ae, n)

			// The origin is asked once per client request: a fallback
			// relays the response the direct path already fetched.
			fh, dh := fullOrigin.requests(path), directOrigin.requests(path)
			if want := cmp.Or(c.fetches, n); len(fh) != want || len(dh) != want {
				t.Errorf("origin saw %d requests from the full path and %d from the direct path, want %d each",
					len(fh), len(dh), want)
			}
			for i := range min(len(fh), len(dh)) {
				if f, d := normRequestHead(fh[i]), normRequestHead(dh[i]); f != d {
					t.Errorf("origin request %d differs between the paths:\n%s", i+1, diffLines(f, d))
				}
			}

			if got := directDelta["edge_direct_responses_total"]; got != float64(c.direct) {
				t.Errorf("direct proxy relayed %v responses on the direct path, want %d", got, c.direct)
			}
			if got := fullDelta["edge_direct_responses_total"]; got != 0 {
				t.Errorf("proxy without Config.Direct counted %v direct responses", got)
			}
			delete(fullDelta, "edge_direct_responses_total")
			delete(directDelta, "edge_direct_responses_total")
			if f, d := fmt.Sprint(fullDelta), fmt.Sprint(directDelta); f != d {
				t.Errorf("request metrics differ:\nfull path:   %s\ndirect path: %s", f, d)
			}

			// What the client gets.
			errorf := errorf(t.Errorf)
			for i := range n {
				f, d := normResponse(errorf, fullGot[i], date), normResponse(errorf, directGot[i], date)
				if f != d {
					errorf("response %d differs between the paths:\n%s", i+1, diffLines(f, d))
				}
			}
			checkCase(errorf, "full", c, fullGot)
			checkCase(errorf, "direct", c, directGot)
		})
	}
}

// TestDirectOriginFailures: what a client sees when the origin fails a
// request the direct path serves (the URL is marked before each).
func TestDirectOriginFailures(t *testing.T) {
	ok := originResp("200 OK", []string{"Content-Type: text/plain", "Cache-Control: no-store"}, []byte("fine\n"))

	t.Run("origin-gone-502", func(t *testing.T) {
		o := startScriptedOrigin(t, func(string, int) originAct { return originAct{raw: ok} })
		p := startDirectProxy(t, o.addr, upstream.Config{}, true)
		c := newRawClient(t, p)
		mustGet(t, c, "/gone", "", 200)
		o.close() // the listener and the kept-alive connection
		start := time.Now()
		mustGet(t, c, "/gone", "", 502)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("502 took %v", d)
		}
		if !strings.Contains(p.logs.String(), `"msg":"origin fetch failed","tenant":"shop.example"`) {
			t.Errorf("no origin fetch failure logged:\n%s", p.logs)
		}
	})

	t.Run("origin-silent-504", func(t *testing.T) {
		o := startScriptedOrigin(t, func(_ string, n int) originAct {
			return originAct{raw: ok, stall: n > 1}
		})
		p := startDirectProxy(t, o.addr, upstream.Config{ResponseHeaderTimeout: 200 * time.Millisecond}, true)
		c := newRawClient(t, p)
		mustGet(t, c, "/silent", "", 200)
		start := time.Now()
		mustGet(t, c, "/silent", "", 504)
		if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
			t.Errorf("504 after %v, want about the 200ms ResponseHeaderTimeout", d)
		}
		o.waitHungUp(t, "/silent") // the proxy gave up on the connection
	})

	t.Run("origin-breaks-off-mid-body", func(t *testing.T) {
		cut := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nCache-Control: no-store\r\n"+
			"Content-Length: 1000\r\n\r\n"), randomBytes(100, 3)...)
		o := startScriptedOrigin(t, func(_ string, n int) originAct {
			if n == 2 {
				return originAct{raw: cut, close: true}
			}
			return originAct{raw: ok}
		})
		p := startDirectProxy(t, o.addr, upstream.Config{}, true)
		mustGet(t, newRawClient(t, p), "/cut", "", 200)
		before := gatherCounters(t, p.reg)

		// Depending on buffering the client sees the abort before or
		// after the head; either way not a complete response.
		resp, body, err := newRawClient(t, p).get("/cut", "")
		if err == nil {
			t.Fatalf("truncated origin body read as complete: status %d, %d bytes", resp.StatusCode, len(body))
		}
		testkit.Eventually(t, 5*time.Second, "the origin failure in the log", func() bool {
			return strings.Contains(p.logs.String(), `"msg":"origin body failed","tenant":"shop.example"`)
		})
		mustGet(t, newRawClient(t, p), "/cut", "", 200) // the proxy carries on
		// Both went the direct path: the failure is the direct path's.
		if d := counterDelta(before, gatherCounters(t, p.reg))["edge_direct_responses_total"]; d != 2 {
			t.Errorf("%v direct responses, want 2", d)
		}
	})

	t.Run("client-leaves-499", func(t *testing.T) {
		o := startScriptedOrigin(t, func(_ string, n int) originAct {
			return originAct{raw: ok, stall: n > 1}
		})
		p := startDirectProxy(t, o.addr, upstream.Config{}, true)
		c := newRawClient(t, p)
		mustGet(t, c, "/leave", "", 200)
		before := gatherCounters(t, p.reg)
		if err := c.send("/leave", ""); err != nil {
			t.Fatal(err)
		}
		o.waitStalled(t, "/leave")
		c.conn.Close()
		// The proxy notices the client is gone and hangs up on the
		// origin instead of waiting for an answer nobody will read.
		o.waitHungUp(t, "/leave")
		testkit.Eventually(t, 5*time.Second, "a 499 access log line", func() bool {
			for _, l := range p.accessLines("/leave") {
				if l["status"] == float64(499) {
					return true
				}
			}
			return false
		})
		d := counterDelta(before, gatherCounters(t, p.reg))
		if d[`edge_requests_total{cache="miss",code="4xx"}`] != 1 || d["edge_direct_responses_total"] != 0 {
			t.Errorf("metrics after a client left: %v", d)
		}
	})
}

// TestDirectKeepsConnections: the direct path gives origin connections
// back to the pool, so a steady stream of uncacheable requests does not
// dial per request.
func TestDirectKeepsConnections(t *testing.T) {
	body := textBody(1024)
	resp := originResp("200 OK", []string{"Content-Type: text/plain", "Cache-Control: no-store"}, body)
	o := startScriptedOrigin(t, func(string, int) originAct { return originAct{raw: resp} })
	p := startDirectProxy(t, o.addr, upstream.Config{}, true)
	c := newRawClient(t, p)
	mustGet(t, c, "/keep", "", 200) // marks the URL
	before := gatherCounters(t, p.reg)
	const n = 200
	for i := range n {
		_, got := mustGet(t, c, "/keep", "", 200)
		if !bytes.Equal(got, body) {
			t.Fatalf("request %d: body of %d bytes differs from the origin's", i, len(got))
		}
	}
	if d := counterDelta(before, gatherCounters(t, p.reg))["edge_direct_responses_total"]; d != n {
		t.Errorf("%v direct responses, want %d", d, n)
	}
	if got := len(o.requests("/keep")); got != n+1 {
		t.Errorf("origin saw %d requests, want %d", got, n+1)
	}
	if conns := o.connCount(); conns > 2 {
		t.Errorf("%d origin connections for %d sequential requests, want at most 2", conns, n+1)
	}
}

// TestDirectConcurrentClients: concurrent direct responses on a shared
// pool each get their own origin's bytes (the head is edited in the
// origin connection's buffer).
func TestDirectConcurrentClients(t *testing.T) {
	const paths, per = 8, 25
	o := startScriptedOrigin(t, func(path string, _ int) originAct {
		return originAct{raw: originResp("200 OK", []string{"Content-Type: application/octet-stream",
			"Cache-Control: no-store", "X-Path: " + path}, pathBody(path))}
	})
	p := startDirectProxy(t, o.addr, upstream.Config{}, true)
	for i := range paths {
		mustGet(t, newRawClient(t, p), "/p"+strconv.Itoa(i), "", 200)
	}
	before := gatherCounters(t, p.reg)
	concurrentClients(t, p, paths, per, func(i, _ int) string { return "/p" + strconv.Itoa(i) })
	if d := counterDelta(before, gatherCounters(t, p.reg))["edge_direct_responses_total"]; d != paths*per {
		t.Errorf("%v direct responses, want %d", d, paths*per)
	}
}

// ---- helpers ----

// concurrentClients runs that many keep-alive clients at once, each making
// per requests to pathOf(client, request) and checking every response with
// ownResponse; failures are reported when all are done.
func concurrentClients(t *testing.T, p *testProxy, clients, per int, pathOf func(i, j int) string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newRawClient(t, p)
			for j := range per {
				path := pathOf(i, j)
				resp, body, err := c.get(path, "")
				if err := ownResponse(path, resp, body, err); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// ownResponse checks a response to path from the concurrent tests'
// origin: path's own status, X-Path and body (not another request's),
// and the header values the handler's state backs (written after the
// handler returned from a recycled state, they would come out empty).
func ownResponse(path string, resp *http.Response, body []byte, err error) error {
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", path, err)
	case resp.StatusCode != 200 || resp.Header.Get("X-Path") != path || !bytes.Equal(body, pathBody(path)):
		return fmt.Errorf("%s: status %d, X-Path %q, %d bytes: another request's response",
			path, resp.StatusCode, resp.Header.Get("X-Path"), len(body))
	case !strings.HasSuffix(resp.Header.Get("X-Total-Time"), "ms") || resp.Header.Get("Cache-Status") == "":
		return fmt.Errorf("%s: X-Total-Time %q, Cache-Status %q", path,
			resp.Header.Get("X-Total-Time"), resp.Header.Get("Cache-Status"))
	}
	return nil
}

// startDirectProxy starts a proxy for shop.example in front of the
// origin at addr, wired as node wires it: lean upstream pools, a cache,
// compression both ways and, when direct is set, the direct path.
func startDirectProxy(t *testing.T, addr string, up upstream.Config, direct bool) *testProxy {
	t.Helper()
	c, comp := newCacheCompressor(t, cache.Config{MaxBytes: 64 << 20})
	cfg := Config{
		Upstreams: newPools(t, up), Cache: c,
		WrapWriter: CompressWriter(comp), DecodeOrigin: CompressDecoder(comp),
		IsTimeout: upstream.IsTimeout, ErrorReason: upstream.Reason,
	}
	if direct {
		cfg.Direct = &DirectConfig{
			Untransformed: func(*tenantcfg.Tenant) bool { return true },
			Compressor:    comp,
		}
	}
	ten := tenant("shop.example", "http://"+addr)
	// The same Host for every origin instance, so their requests compare.
	ten.Origin.HostHeader = "origin.example"
	return startProxy(t, routesOf(ten), proxyOpts{cfg: cfg})
}

// originAct is what the scripted origin does with one request.
type originAct struct {
	raw   []byte // written as is
	close bool   // then close the connection
	stall bool   // instead: answer nothing and wait for the proxy to hang up
}

func fixed(raw []byte) func(int) originAct { return func(int) originAct { return originAct{raw: raw} } }

func closing(raw []byte) func(int) originAct {
	return func(int) originAct { return originAct{raw: raw, close: true} }
}

// originResp assembles a response: the status, the fields as given (any
// case, duplicates, order) and a Content-Length unless a field frames the
// body already.
func originResp(status string, fields []string, body []byte) []byte {
	b := []byte("HTTP/1.1 " + status + "\r\n")
	framed := false
	for _, f := range fields {
		name, _, _ := strings.Cut(f, ":")
		framed = framed || strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Transfer-Encoding")
		b = append(b, f+"\r\n"...)
	}
	if !framed {
		b = append(b, "Content-Length: "+strconv.Itoa(len(body))+"\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, body...)
}

// scriptedOrigin is an HTTP/1.1 origin on raw TCP: it reads request heads
// (GETs, no bodies) on keep-alive connections, records them and acts as
// the script says for the path's n-th request.
type scriptedOrigin struct {
	ln     net.Listener
	addr   string
	script func(path string, n int) originAct

	mu      sync.Mutex
	heads   map[string][]string // by path, in arrival order
	conns   []net.Conn
	stalled chan string // path of each request the origin does not answer
	hungUp  chan string // path of each stalled request whose connection the proxy closed
	wg      sync.WaitGroup
}

func startScriptedOrigin(t *testing.T, script func(path string, n int) originAct) *scriptedOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &scriptedOrigin{
		ln: ln, addr: ln.Addr().String(), script: script, heads: map[string][]string{},
		stalled: make(chan string, 16), hungUp: make(chan string, 16),
	}
	o.wg.Add(1)
	go o.accept()
	t.Cleanup(func() {
		o.close()
		o.wg.Wait()
	})
	return o
}

func (o *scriptedOrigin) accept() {
	defer o.wg.Done()
	for {
		c, err := o.ln.Accept()
		if err != nil {
			return
		}
		o.mu.Lock()
		o.conns = append(o.conns, c)
		o.mu.Unlock()
		o.wg.Add(1)
		go o.serve(c)
	}
}

func (o *scriptedOrigin) serve(c net.Conn) {
	defer o.wg.Done()
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" || line == "\n" {
				break
			}
		}
		h := head.String()
		_, rest, _ := strings.Cut(h, " ")
		path, _, _ := strings.Cut(rest, " ")
		o.mu.Lock()
		o.heads[path] = append(o.heads[path], h)
		n := len(o.heads[path])
		o.mu.Unlock()
		act := o.script(path, n)
		if act.stall {
			o.stalled <- path
			io.Copy(io.Discard, br) // until the proxy closes its end
			o.hungUp <- path
			return
		}
		if _, err := c.Write(act.raw); err != nil || act.close {
			return
		}
	}
}

// close stops accepting and closes every connection, as a crashed origin.
func (o *scriptedOrigin) close() {
	o.ln.Close()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.conns {
		c.Close()
	}
}

func (o *scriptedOrigin) requests(path string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.heads[path])
}

func (o *scriptedOrigin) connCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.conns)
}

func (o *scriptedOrigin) waitStalled(t *testing.T, path string) {
	t.Helper()
	waitChan(t, o.stalled, path, "the origin to receive the request")
}

func (o *scriptedOrigin) waitHungUp(t *testing.T, path string) {
	t.Helper()
	waitChan(t, o.hungUp, path, "the proxy to close the stalled origin connection")
}

func waitChan(t *testing.T, ch chan string, path, what string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != path {
			t.Fatalf("waiting for %s on %s: got %s", what, path, got)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s on %s", what, path)
	}
}

// rawClient is one keep-alive client connection to a proxy, so a test
// controls exactly what the request carries (no transparent gzip).
type rawClient struct {
	t    *testing.T
	addr string
	conn net.Conn
	br   *bufio.Reader
}

func newRawClient(t *testing.T, p *testProxy) *rawClient {
	return &rawClient{t: t, addr: p.srv.HTTPAddr().String()}
}

// send writes a GET for path, dialling first if needed.
func (c *rawClient) send(path, acceptEncoding string) error {
	if c.conn == nil {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			return err
		}
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		c.t.Cleanup(func() { conn.Close() })
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: edge-test\r\n"
	if acceptEncoding != "" {
		req += "Accept-Encoding: " + acceptEncoding + "\r\n"
	}
	_, err := io.WriteString(c.conn, req+"\r\n")
	return err
}

// get sends a GET and reads the whole response. A response that ends the
// connection makes the next get dial again.
func (c *rawClient) get(path, acceptEncoding string) (*http.Response, []byte, error) {
	if err := c.send(path, acceptEncoding); err != nil {
		return nil, nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.conn.Close()
		c.conn = nil
		return nil, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.Close {
		c.conn.Close()
		c.conn = nil
	}
	return resp, body, err
}

func mustGet(t *testing.T, c *rawClient, path, acceptEncoding string, status int) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := c.get(path, acceptEncoding)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != status {
		t.Fatalf("GET %s: status %d, want %d (body %.200q)", path, resp.StatusCode, status, body)
	}
	return resp, body
}

// clientResult is one response as the client got it.
type clientResult struct {
	resp *http.Response
	body []byte
}

// runCase sends n requests for path through p over one connection and
// returns the responses with the change in p's counters.
func runCase(t *testing.T, p *testProxy, path, ae string, n int) ([]clientResult, map[string]float64) {
	t.Helper()
	before := gatherCounters(t, p.reg)
	c := newRawClient(t, p)
	var got []clientResult
	for i := range n {
		resp, body, err := c.get(path, ae)
		if err != nil {
			t.Fatalf("request %d for %s: %v", i+1, path, err)
		}
		got = append(got, clientResult{resp, body})
	}
	return got, counterDelta(before, gatherCounters(t, p.reg))
}

// checkCase holds one proxy's responses to what the case promises.
func checkCase(errorf errorf, side string, c *directCase, got []clientResult) {
	hop := []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Te", "Trailer", "Upgrade",
		"Surrogate-Key", "Surrogate-Control", "Cache-Tag"}
	for i, r := range got {
		h := r.resp.Header
		if want := cmp.Or(c.status, 200); r.resp.StatusCode != want {
			errorf("%s path, response %d: status %d, want %d", side, i+1, r.resp.StatusCode, want)
		}
		if body := decodedBody(errorf, r); !bytes.Equal(body, c.body) {
			errorf("%s path, response %d: body of %d bytes is not the origin's %d", side, i+1, len(body), len(c.body))
		}
		for _, k := range append(hop, c.absent...) {
			if v, ok := h[k]; ok {
				errorf("%s path, response %d: %s: %q relayed", side, i+1, k, v)
			}
		}
		if r.resp.Close {
			errorf("%s path, response %d: the proxy closes the client connection", side, i+1)
		}
		if cs := h.Values("Cache-Status"); len(cs) != 1 || !strings.HasPrefix(cs[0], "edge; ") {
			errorf("%s path, response %d: Cache-Status %q, want one of Edge's", side, i+1, cs)
		}
		if len(h.Values("Date")) != 1 {
			errorf("%s path, response %d: Date %q, want one", side, i+1, h.Values("Date"))
		}
	}
	last := got[len(got)-1].resp.Header
	if ce := last.Get("Content-Encoding"); ce != c.encoding {
		errorf("%s path: Content-Encoding %q, want %q", side, ce, c.encoding)
	}
	if c.cacheStatus != "" && last.Get("Cache-Status") != c.cacheStatus {
		errorf("%s path: Cache-Status %q, want %q", side, last.Get("Cache-Status"), c.cacheStatus)
	}
	if c.check != nil {
		c.check(func(format string, args ...any) { errorf(side+" path: "+format, args...) }, last)
	}
}

func decodedBody(errorf errorf, r clientResult) []byte {
	if r.resp.Header.Get("Content-Encoding") != "gzip" {
		return r.body
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.body))
	if err != nil {
		errorf("Content-Encoding gzip, body is not: %v", err)
		return nil
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		errorf("gunzip: %v", err)
	}
	return b
}

var (
	msValue          = regexp.MustCompile(`^\d+\.\d\dms$`)
	edgeServerTiming = regexp.MustCompile(`^origin;dur=\d+\.\d\d, total;dur=\d+\.\d\d$`)
	ageValue         = regexp.MustCompile(`^\d+$`)
)

// normResponse renders a response as sorted "Name: value" lines, with
// what differs legitimately between two answers replaced by a marker once
// its format is checked: the timing values, the proxy's Date (an origin's
// Date must be relayed as is), Age; Vary as a set of tokens over all its
// lines. The body is rendered decoded, by length and hash.
func normResponse(errorf errorf, r clientResult, originDate string) string {
	var lines []string
	bad := func(k string, v []string) { lines = append(lines, fmt.Sprintf("%s: BAD %q", k, v)) }
	for k, vv := range r.resp.Header {
		switch k {
		case "X-Request-Id": // generated per proxy: its shape, once
			if len(vv) != 1 || !generatedID.MatchString(vv[0]) {
				bad(k, vv)
				continue
			}
			lines = append(lines, k+": <generated>")
		case "X-Origin-Time", "X-Total-Time":
			if len(vv) != 1 || !msValue.MatchString(vv[0]) {
				bad(k, vv)
				continue
			}
			lines = append(lines, k+": <ms>")
		case "Server-Timing":
			if !edgeServerTiming.MatchString(vv[len(vv)-1]) {
				bad(k, vv)
				continue
			}
			for _, v := range vv[:len(vv)-1] {
				lines = append(lines, k+": "+v)
			}
			lines = append(lines, k+": <edge's>")
		case "Date":
			switch _, err := http.ParseTime(vv[0]); {
			case len(vv) != 1 || err != nil:
				bad(k, vv)
			case vv[0] == originDate:
				lines = append(lines, k+": <origin's>")
			default:
				lines = append(lines, k+": <proxy's>")
			}
		case "Age":
			if len(vv) != 1 || !ageValue.MatchString(vv[0]) {
				bad(k, vv)
				continue
			}
			lines = append(lines, k+": <age>")
		case "Vary":
			var toks []string
			for _, v := range vv {
				for tok := range strings.SplitSeq(v, ",") {
					if tok = strings.ToLower(strings.TrimSpace(tok)); tok != "" && !slices.Contains(toks, tok) {
						toks = append(toks, tok)
					}
				}
			}
			slices.Sort(toks)
			lines = append(lines, k+": {"+strings.Join(toks, ", ")+"}")
		default:
			for _, v := range vv {
				lines = append(lines, k+": "+v)
			}
		}
	}
	slices.Sort(lines)
	body := decodedBody(errorf, r)
	sum := sha256.Sum256(body)
	return fmt.Sprintf("status %d\n%s\nbody: %d bytes, sha256 %s", r.resp.StatusCode,
		strings.Join(lines, "\n"), len(body), hex.EncodeToString(sum[:8]))
}

// normRequestHead renders a request head as its request line and sorted
// "Name: value" lines (canonical names).
// generatedID is the shape of a request ID the proxy makes up.
var generatedID = regexp.MustCompile(`^[0-9a-v]{20}$`)

func normRequestHead(head string) string {
	first, rest, _ := strings.Cut(head, "\r\n")
	var lines []string
	for ln := range strings.SplitSeq(strings.TrimSpace(rest), "\r\n") {
		k, v, _ := strings.Cut(ln, ":")
		k, v = textproto.CanonicalMIMEHeaderKey(k), strings.TrimSpace(v)
		if k == "X-Request-Id" && generatedID.MatchString(v) {
			v = "<generated>" // each proxy has its own prefix
		}
		lines = append(lines, k+": "+v)
	}
	slices.Sort(lines)
	return first + "\n" + strings.Join(lines, "\n")
}

// diffLines lists the lines only the full path (-) or only the direct
// path (+) has.
func diffLines(full, direct string) string {
	f, d := strings.Split(full, "\n"), strings.Split(direct, "\n")
	var b strings.Builder
	for _, l := range f {
		if !slices.Contains(d, l) {
			fmt.Fprintf(&b, "  - full:   %s\n", l)
		}
	}
	for _, l := range d {
		if !slices.Contains(f, l) {
			fmt.Fprintf(&b, "  + direct: %s\n", l)
		}
	}
	return b.String()
}

// gatherCounters reads every counter of reg, keyed by name and labels.
func gatherCounters(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetCounter() == nil {
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			out[key] = m.GetCounter().GetValue()
		}
	}
	return out
}

// counterDelta is after - before, for the edge_ request counters that
// changed (and the direct counter, always).
func counterDelta(before, after map[string]float64) map[string]float64 {
	d := map[string]float64{"edge_direct_responses_total": 0}
	for k, v := range after {
		if !strings.HasPrefix(k, "edge_requests_total") && k != "edge_direct_responses_total" {
			continue
		}
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

func wantValues(k string, want ...string) func(errorf, http.Header) {
	return func(errorf errorf, h http.Header) {
		if got := h.Values(k); !slices.Equal(got, want) {
			errorf("%s %q, want %q", k, got, want)
		}
	}
}

// wantVary checks the Vary tokens (lower case, sorted) over all lines.
func wantVary(want ...string) func(errorf, http.Header) {
	return func(errorf errorf, h http.Header) {
		var got []string
		for _, v := range h.Values("Vary") {
			for tok := range strings.SplitSeq(v, ",") {
				got = append(got, strings.ToLower(strings.TrimSpace(tok)))
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			errorf("Vary tokens %q (lines %q), want %q", got, h.Values("Vary"), want)
		}
	}
}

func textBody(n int) []byte {
	return bytes.Repeat([]byte("edge direct path, "), n/18+1)[:n]
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func pathBody(path string) []byte {
	return bytes.Repeat([]byte(path+";"), 3000/len(path))
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// TestRecycledStateMixedTraffic: the handler recycles a request's state
// after a direct-path response only: never after a hit (the server may
// write its header map, which points into the state, after the handler
// returns), a stale hit (its revalidation runs on) or a miss (a fill,
// possibly collapsed with others).
// Concurrent clients mixing all four, under the race detector, each get
// their own path's response: a state still in use when recycled would
// mix them up, or race.
func TestRecycledStateMixedTraffic(t *testing.T) {
	o := startScriptedOrigin(t, func(path string, _ int) originAct {
		cc := "no-store" // /pass…: marked hit-for-miss, then the direct path
		switch {
		case strings.HasPrefix(path, "/hit"):
			cc = "max-age=60"
		case strings.HasPrefix(path, "/stale"):
			cc = "max-age=0, stale-while-revalidate=60"
		case strings.HasPrefix(path, "/miss"):
			cc = "max-age=60" // a new query each time: always a miss
		}
		return originAct{raw: originResp("200 OK", []string{"Content-Type: application/octet-stream",
			"Cache-Control: " + cc, "X-Path: " + path}, pathBody(path))}
	})
	p := startDirectProxy(t, o.addr, upstream.Config{}, true)
	var paths []string
	for _, kind := range []string{"/pass", "/hit", "/stale", "/miss"} {
		for i := range 3 {
			paths = append(paths, kind+strconv.Itoa(i))
		}
	}
	for _, path := range paths {
		mustGet(t, newRawClient(t, p), path, "", 200)
	}
	before := gatherCounters(t, p.reg)
	concurrentClients(t, p, len(paths), 40, func(i, j int) string {
		path := paths[(i+j)%len(paths)]
		if strings.HasPrefix(path, "/miss") {
			path += "?n=" + strconv.Itoa(i*100+j)
		}
		return path
	})
	// Every kind was served the way it was meant to be.
	d := counterDelta(before, gatherCounters(t, p.reg))
	for _, k := range []string{"edge_direct_responses_total",
		`edge_requests_total{cache="hit",code="2xx"}`, `edge_requests_total{cache="stale",code="2xx"}`,
		`edge_requests_total{cache="miss",code="2xx"}`} {
		if d[k] == 0 {
			t.Errorf("no %s: %v", k, d)
		}
	}
	if n := len(o.requests("/stale0")); n < 2 {
		t.Errorf("/stale0 reached the origin %d times: no revalidation ran", n)
	}
}
