package proxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

const (
	originHint = "</style.css>; rel=preload; as=style"
	// the cached page's Link fields: two hints and one that is not
	pageLinks = `</app.js>; rel=preload; as=script, <https://cdn.example>; rel="preconnect"`
	pageCanon = "</canonical>; rel=canonical"
)

// hintOrigin is a real origin that sends a 103 Early Hints (with a
// hop-by-hop field that must not reach the client) before each answer:
// /page an HTML page the cache stores, /nostore one it never stores,
// /style.css a cacheable stylesheet with a preload Link.
type hintOrigin struct {
	url  string
	hits atomic.Int64
}

func startHintOrigin(t *testing.T, h2 bool) *hintOrigin {
	t.Helper()
	o := &hintOrigin{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		hd := w.Header()
		hd.Set("Link", originHint)
		hd.Set("Connection", "X-Hop")
		hd.Set("X-Hop", "secret")
		w.WriteHeader(http.StatusEarlyHints)
		clear(hd)
		w.WriteHeader(http.StatusProcessing) // 102: not forwarded
		hd.Set("Content-Type", "text/html; charset=utf-8")
		hd.Set("Cache-Control", "max-age=300")
		hd.Add("Link", pageLinks)
		hd.Add("Link", pageCanon)
		switch r.URL.Path {
		case "/nostore":
			hd.Set("Cache-Control", "no-store")
		case "/style.css":
			hd.Set("Content-Type", "text/css")
		}
		io.WriteString(w, "<html>"+r.Method+" "+r.URL.Path+"</html>")
	}))
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	o.url = srv.URL
	return o
}

// startHintProxy wires a proxy as node does (lean pools, cache,
// compression, the direct path; or --standard-paths) over plain HTTP and
// TLS, in front of o, for a tenant with or without EarlyHints.
func startHintProxy(t *testing.T, o *hintOrigin, earlyHints, standard bool) *testProxy {
	t.Helper()
	c, comp := newCacheCompressor(t, cache.Config{MaxBytes: 64 << 20})
	cfg := Config{
		Upstreams: newPools(t, upstream.Config{DisableLeanHTTP1: standard}), Cache: c,
		WrapWriter: CompressWriter(comp), DecodeOrigin: CompressDecoder(comp),
		IsTimeout: upstream.IsTimeout, ErrorReason: upstream.Reason,
	}
	if !standard {
		cfg.Direct = &DirectConfig{Untransformed: func(*tenantcfg.Tenant) bool { return true }, Compressor: comp}
	}
	ten := tenant("shop.example", o.url)
	ten.Origin.TLS.InsecureSkipVerify = true
	ten.EarlyHints = earlyHints
	return startProxy(t, routesOf(ten), proxyOpts{cfg: cfg, tls: true, server: ServerConfig{StandardPaths: standard}})
}

// hintClient is a real net/http client of one protocol: "h1" on the
// plain listener, "h1-tls" and "h2" on the TLS one (ALPN decides).
type hintClient struct {
	name string
	base string
	c    *http.Client
}

func hintClients(t *testing.T, p *testProxy) []hintClient {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	tlsConf := func() *tls.Config { return &tls.Config{RootCAs: pool, ServerName: "shop.example"} }
	h1tls := &http.Transport{TLSClientConfig: tlsConf(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	h2 := &http.Transport{TLSClientConfig: tlsConf(), ForceAttemptHTTP2: true}
	h1 := &http.Transport{}
	for _, tr := range []*http.Transport{h1, h1tls, h2} {
		t.Cleanup(tr.CloseIdleConnections)
	}
	return []hintClient{
		{"h1", p.url, &http.Client{Transport: h1, Timeout: 10 * time.Second}},
		{"h1-tls", p.tlsURL, &http.Client{Transport: h1tls, Timeout: 10 * time.Second}},
		{"h2", p.tlsURL, &http.Client{Transport: h2, Timeout: 10 * time.Second}},
	}
}

// exchange is what a client saw: each informational response (status
// and Link values) in order, then the final one.
type exchange struct {
	interim []string // "103 <link>, <link>"
	hop     bool     // an interim response carried X-Hop
	resp    *http.Response
	body    string
}

func (c hintClient) send(t *testing.T, method, path string) exchange {
	t.Helper()
	var ex exchange
	final := false
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		if final {
			t.Errorf("%s: a %d after the final response", c.name, code)
		}
		ex.interim = append(ex.interim, http.StatusText(code)+" "+strings.Join(h["Link"], ", "))
		ex.hop = ex.hop || h.Get("X-Hop") != ""
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), method, c.base+path, nil)
	req.Host = "shop.example"
	resp, err := c.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s %s: %v", c.name, method, path, err)
	}
	final = true
	ex.resp, ex.body = resp, readAll(t, resp)
	wantProto := 1
	if c.name == "h2" {
		wantProto = 2
	}
	if resp.StatusCode != 200 || resp.ProtoMajor != wantProto || method != http.MethodHead && !strings.Contains(ex.body, method+" "+path) {
		t.Fatalf("%s %s %s: %d %s %q", c.name, method, path, resp.StatusCode, resp.Proto, ex.body)
	}
	return ex
}

var fromOrigin = []string{"Early Hints " + originHint}

// TestEarlyHintsForwarded: the origin's 103 reaches h1, h1-over-TLS and
// h2 clients with its Link header (its hop-by-hop fields and its 102
// left behind) before the 200, on every path a request the cache does
// not answer takes: a miss, a pass-through under a hit-for-miss mark
// (on h1 offered to the direct path, whose round trip reads the 103 and
// hands the 200 back to the full path), a POST; over lean and http.Transport origins
// (h1 and h2) and with --standard-paths. The cache stores the 200, not
// the 103: the next request is a hit with the origin's page and no 103.
func TestEarlyHintsForwarded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		h2Origin bool
		standard bool
	}{
		{"lean origin", false, false},
		{"h2 origin", true, false},
		{"standard paths", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := startHintOrigin(t, tc.h2Origin)
			p := startHintProxy(t, o, false, tc.standard)
			for _, c := range hintClients(t, p) {
				page := "/page-" + c.name
				miss := c.send(t, http.MethodGet, page)
				// An HTTP/2 origin has no Connection field to name X-Hop with.
				if !equal(miss.interim, fromOrigin) || miss.hop && !tc.h2Origin {
					t.Errorf("%s miss: interim %q (X-Hop %v), want %q", c.name, miss.interim, miss.hop, fromOrigin)
				}
				hits := o.hits.Load()
				hit := c.send(t, http.MethodGet, page)
				if len(hit.interim) != 0 || o.hits.Load() != hits || !strings.HasPrefix(hit.resp.Header.Get("Cache-Status"), "edge; hit") {
					t.Errorf("%s hit: interim %q, origin asked again %v, Cache-Status %q", c.name, hit.interim,
						o.hits.Load() != hits, hit.resp.Header.Get("Cache-Status"))
				}
				for i := 0; i < 3; i++ { // a miss, then passes under the hit-for-miss mark
					if ex := c.send(t, http.MethodGet, "/nostore"); !equal(ex.interim, fromOrigin) {
						t.Errorf("%s no-store #%d: interim %q", c.name, i, ex.interim)
					}
				}
				if ex := c.send(t, http.MethodPost, "/post"); !equal(ex.interim, fromOrigin) {
					t.Errorf("%s POST: interim %q", c.name, ex.interim)
				}
			}
			for _, l := range p.accessLines("/nostore") {
				if l["status"] != float64(200) {
					t.Errorf("access line status %v, want the final 200", l["status"])
				}
			}
		})
	}
}

// TestEarlyHintsCachedPages: with the tenant's EarlyHints, a cache hit
// on an HTML page sends a 103 built from its preload and preconnect Link
// values (not its canonical one) before the page; the miss before it
// gets the origin's 103 only (not a second one); a cached stylesheet
// with a preload Link gets none (not HTML).
func TestEarlyHintsCachedPages(t *testing.T) {
	o := startHintOrigin(t, false)
	p := startHintProxy(t, o, true, false)
	fromCache := []string{"Early Hints </app.js>; rel=preload; as=script, <https://cdn.example>; rel=\"preconnect\""}
	for _, c := range hintClients(t, p) {
		page := "/page-" + c.name
		if ex := c.send(t, http.MethodGet, page); !equal(ex.interim, fromOrigin) {
			t.Errorf("%s miss: interim %q, want the origin's only", c.name, ex.interim)
		}
		hits := o.hits.Load()
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			ex := c.send(t, method, page)
			if !equal(ex.interim, fromCache) {
				t.Errorf("%s hit: interim %q, want %q", c.name, ex.interim, fromCache)
			}
			if got := ex.resp.Header.Values("Link"); len(got) != 2 || got[1] != pageCanon {
				t.Errorf("%s hit: the page's own Link fields changed: %q", c.name, got)
			}
		}
		if o.hits.Load() != hits {
			t.Errorf("%s: the hits went to the origin", c.name)
		}
		c.send(t, http.MethodGet, "/style.css")
		if ex := c.send(t, http.MethodGet, "/style.css"); len(ex.interim) != 0 {
			t.Errorf("%s: a cached stylesheet got %q", c.name, ex.interim)
		}
	}
}

// TestEarlyHintsNotForHTTP10: an HTTP/1.0 client gets neither the
// origin's 103 nor one built from the cache (RFC 9110 §15.2): its first
// status line is the final one.
func TestEarlyHintsNotForHTTP10(t *testing.T) {
	o := startHintOrigin(t, false)
	p := startHintProxy(t, o, true, false)
	u, _ := url.Parse(p.url)
	for _, path := range []string{"/page", "/page", "/nostore", "/nostore"} { // miss, hit, miss, pass
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET "+path+" HTTP/1.0\r\nHost: shop.example\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil) // ReadResponse would return a 1xx as is
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: first status %d, want 200", path, resp.StatusCode)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEarlyLinks: the link-values a cached page's 103 carries are those
// whose first rel names preload or preconnect; commas inside <…> and
// quoted strings do not split a value.
func TestEarlyLinks(t *testing.T) {
	for _, tc := range []struct {
		fields []string
		want   []string
	}{
		{[]string{"</a.css>; rel=preload; as=style"}, []string{"</a.css>; rel=preload; as=style"}},
		{[]string{`</a,b.js>; rel="preload"; as=script, </c>; rel=canonical`}, []string{`</a,b.js>; rel="preload"; as=script`}},
		{[]string{`<https://cdn.example>; rel="preconnect dns-prefetch"`, "</x>; REL=PreLoad"}, []string{`<https://cdn.example>; rel="preconnect dns-prefetch"`, "</x>; REL=PreLoad"}},
		{[]string{`</t>; title="a, rel=preload"; rel=prefetch`}, nil},
		{[]string{"</n>; rel=next; rel=preload"}, nil}, // the first rel counts
		{[]string{"rel=preload", "<unterminated; rel=preload", ""}, nil},
	} {
		if got := earlyLinks(tc.fields); !equal(got, tc.want) {
			t.Errorf("earlyLinks(%q) = %q, want %q", tc.fields, got, tc.want)
		}
	}
}

// FuzzEarlyLinks: any Link field (an origin's, stored) yields values that
// are pieces of it naming a preload or preconnect target, without a panic.
func FuzzEarlyLinks(f *testing.F) {
	f.Add(pageLinks)
	f.Add(`</a,"b>; rel="pre\"load", <c>; rel=preconnect`)
	f.Fuzz(func(t *testing.T, field string) {
		for _, v := range earlyLinks([]string{field}) {
			if !strings.Contains(field, v) || !strings.HasPrefix(v, "<") || !earlyRel(v) {
				t.Fatalf("earlyLinks(%q) gave %q", field, v)
			}
		}
	})
}
