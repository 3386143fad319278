package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/prometheus/client_golang/prometheus"
)

// origin is a real httptest origin that counts its connections.
type origin struct {
	srv                   *httptest.Server
	url                   *url.URL
	newConns, closedConns atomic.Int64
	requests              sync.Map // method+path → *atomic.Int64
}

func (o *origin) count(key string) int64 {
	v, _ := o.requests.LoadOrStore(key, new(atomic.Int64))
	return v.(*atomic.Int64).Load()
}

// startOrigin starts an origin; tlsConf nil means plain HTTP.
func startOrigin(t testing.TB, h http.HandlerFunc, tlsConf *tls.Config, h2 bool) *origin {
	t.Helper()
	o := &origin{}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			sni := ""
			if r.TLS != nil {
				sni = r.TLS.ServerName
			}
			fmt.Fprintf(w, "proto=%s sni=%s", r.Proto, sni)
		}
	}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := o.requests.LoadOrStore(r.Method+" "+r.URL.Path, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		h(w, r)
	}))
	o.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	o.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			o.newConns.Add(1)
		case http.StateClosed, http.StateHijacked:
			o.closedConns.Add(1)
		}
	}
	if tlsConf != nil {
		o.srv.TLS = tlsConf
		o.srv.EnableHTTP2 = h2
		o.srv.StartTLS()
	} else {
		o.srv.Start()
	}
	t.Cleanup(o.srv.Close)
	o.url, _ = url.Parse(o.srv.URL)
	return o
}

func newPools(t *testing.T, mod func(*Config)) *Pools {
	t.Helper()
	var cfg Config
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// get sends a GET to u through rt and returns the body.
func get(rt http.RoundTripper, u *url.URL) (*http.Response, string, error) {
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func mustGet(t *testing.T, p *Pools, tenant string, tg Target) (*http.Response, string) {
	t.Helper()
	rt, err := p.Get(tenant, tg)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	resp, body, err := get(rt, tg.URL)
	if err != nil {
		t.Fatalf("request: %v (reason %q)", err, Reason(err))
	}
	return resp, body
}

// failGet expects the request to fail and returns the error.
func failGet(t *testing.T, p *Pools, tenant string, tg Target) error {
	t.Helper()
	rt, err := p.Get(tenant, tg)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	_, _, err = get(rt, tg.URL)
	if err == nil {
		t.Fatal("request succeeded, want failure")
	}
	return err
}

func tlsOrigin(t *testing.T, ca *testkit.CA, names ...string) *origin {
	t.Helper()
	leaf := ca.Issue(t, names).TLS
	return startOrigin(t, nil, &tls.Config{Certificates: []tls.Certificate{leaf}}, false)
}

func TestTenantCAVerifies(t *testing.T) {
	ca := testkit.NewCA(t, "tenant CA")
	o := tlsOrigin(t, ca, "127.0.0.1")
	p := newPools(t, nil)
	resp, body := mustGet(t, p, "shop", Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM}})
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "proto=HTTP/1.1") {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
}

func TestWrongCAFailsWithX509Reason(t *testing.T) {
	o := tlsOrigin(t, testkit.NewCA(t, "origin CA"), "127.0.0.1")
	p := newPools(t, nil)
	for name, tg := range map[string]Target{
		"other CA":     {URL: o.url, TLS: TLS{CAPEM: testkit.NewCA(t, "other CA").PEM}},
		"system roots": {URL: o.url},
	} {
		err := failGet(t, p, name, tg)
		if IsTimeout(err) {
			t.Errorf("%s: IsTimeout(%v) = true", name, err)
		}
		if r := Reason(err); r != "x509: certificate signed by unknown authority" {
			t.Errorf("%s: Reason = %q (err %v)", name, r, err)
		}
	}
}

func TestMTLS(t *testing.T) {
	serverCA, clientCA := testkit.NewCA(t, "server CA"), testkit.NewCA(t, "client CA")
	leaf := serverCA.Issue(t, []string{"127.0.0.1"}).TLS
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}, &tls.Config{Certificates: []tls.Certificate{leaf}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}, false)
	certPEM, keyPEM := clientCA.Issue(t, []string{"edge-client"}, x509.ExtKeyUsageClientAuth).PEM()
	p := newPools(t, nil)

	_, body := mustGet(t, p, "with", Target{URL: o.url, TLS: TLS{CAPEM: serverCA.PEM, ClientCertPEM: certPEM, ClientKeyPEM: keyPEM}})
	if body != "edge-client" {
		t.Fatalf("origin saw client %q", body)
	}
	err := failGet(t, p, "without", Target{URL: o.url, TLS: TLS{CAPEM: serverCA.PEM}})
	if r := Reason(err); !strings.Contains(r, "certificate") {
		t.Fatalf("Reason = %q (err %v)", r, err)
	}
}

func TestServerNameOverride(t *testing.T) {
	ca := testkit.NewCA(t, "CA")
	o := tlsOrigin(t, ca, "origin.internal") // no IP SAN
	p := newPools(t, nil)

	err := failGet(t, p, "plain", Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM}})
	if r := Reason(err); !strings.Contains(r, "x509") || !strings.Contains(r, "127.0.0.1") {
		t.Fatalf("without override: Reason = %q", r)
	}
	_, body := mustGet(t, p, "override", Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM, ServerName: "origin.internal"}})
	if !strings.HasSuffix(body, "sni=origin.internal") {
		t.Fatalf("origin saw %q, want SNI origin.internal", body)
	}
}

func TestInsecureSkipVerifyOnlyWhenSet(t *testing.T) {
	o := tlsOrigin(t, testkit.NewCA(t, "unknown CA"), "elsewhere.example")
	p := newPools(t, nil)
	if err := failGet(t, p, "strict", Target{URL: o.url}); !strings.Contains(Reason(err), "x509") {
		t.Fatalf("strict: %v", err)
	}
	mustGet(t, p, "lax", Target{URL: o.url, TLS: TLS{InsecureSkipVerify: true}})
}

func TestHTTP2Negotiated(t *testing.T) {
	ca := testkit.NewCA(t, "CA")
	leaf := ca.Issue(t, []string{"127.0.0.1"}).TLS
	o := startOrigin(t, nil, &tls.Config{Certificates: []tls.Certificate{leaf}}, true)
	p := newPools(t, nil)
	resp, body := mustGet(t, p, "h2", Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM}})
	if resp.ProtoMajor != 2 || !strings.HasPrefix(body, "proto=HTTP/2.0") {
		t.Fatalf("proto %s, origin saw %q", resp.Proto, body)
	}
}

func TestPoolReusedAcrossRequestsAndTenants(t *testing.T) {
	ca := testkit.NewCA(t, "CA")
	o := tlsOrigin(t, ca, "127.0.0.1")
	reg := prometheus.NewRegistry()
	p := newPools(t, func(c *Config) { c.Registerer = reg })
	tg := Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM}}
	for i := range 6 {
		mustGet(t, p, []string{"a", "b"}[i%2], tg)
	}
	if n := o.newConns.Load(); n != 1 {
		t.Fatalf("origin saw %d connections for 6 sequential requests, want 1", n)
	}
	ra, _ := p.Get("a", tg)
	rb, _ := p.Get("b", tg)
	if ra != rb {
		t.Fatal("tenants with the same origin and settings got different pools")
	}
	for name, want := range map[string]float64{"edge_upstream_pools": 1, "edge_upstream_conns_open": 1, "edge_upstream_dials_total": 1} {
		if v := gathered(t, reg, name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
}

func TestSettingsChangeClosesOldIdleConnections(t *testing.T) {
	ca := testkit.NewCA(t, "CA")
	o := tlsOrigin(t, ca, "127.0.0.1")
	p := newPools(t, nil)
	before := Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM}}
	after := Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM, ServerName: "127.0.0.1"}}

	// Shared pool: a's change must not close b's connection.
	mustGet(t, p, "a", before)
	mustGet(t, p, "b", before)
	mustGet(t, p, "a", after)
	if n := o.newConns.Load(); n != 2 {
		t.Fatalf("connections = %d, want 2 (old + new settings)", n)
	}
	mustGet(t, p, "b", before)
	if n := o.newConns.Load(); n != 2 || o.closedConns.Load() != 0 {
		t.Fatalf("old pool still used by b lost its connection: new=%d closed=%d", n, o.closedConns.Load())
	}

	// Last user leaves: the idle connection of the old settings closes.
	mustGet(t, p, "b", after)
	testkit.Eventually(t, 5*time.Second, "old connection closed", func() bool { return o.closedConns.Load() == 1 })
	mustGet(t, p, "a", after)
	if n := o.newConns.Load(); n != 2 {
		t.Fatalf("new settings' connection not reused: %d connections", n)
	}
}

func TestDeadOriginFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newPools(t, nil)
	start := time.Now()
	err = failGet(t, p, "dead", Target{URL: &url.URL{Scheme: "http", Host: addr}})
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
	if IsTimeout(err) || Reason(err) != "connect: connection refused" {
		t.Fatalf("IsTimeout=%v Reason=%q err=%v", IsTimeout(err), Reason(err), err)
	}
}

func TestTimeouts(t *testing.T) {
	t.Run("dial", func(t *testing.T) {
		p := newPools(t, func(c *Config) {
			c.DialTimeout = 100 * time.Millisecond
			c.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
				<-ctx.Done() // an origin that never answers SYN
				return nil, ctx.Err()
			}
		})
		err := failGet(t, p, "t", Target{URL: &url.URL{Scheme: "http", Host: "127.0.0.1:9"}})
		if !IsTimeout(err) || Reason(err) != "dial timeout" {
			t.Fatalf("IsTimeout=%v Reason=%q", IsTimeout(err), Reason(err))
		}
	})
	t.Run("tls handshake", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() { // accepts and never speaks
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		p := newPools(t, func(c *Config) { c.TLSHandshakeTimeout = 100 * time.Millisecond })
		err = failGet(t, p, "t", Target{URL: &url.URL{Scheme: "https", Host: ln.Addr().String()}})
		if !IsTimeout(err) || Reason(err) != "tls handshake timeout" {
			t.Fatalf("IsTimeout=%v Reason=%q err=%v", IsTimeout(err), Reason(err), err)
		}
	})
	t.Run("response header", func(t *testing.T) {
		release := make(chan struct{})
		o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) { <-release }, nil, false)
		t.Cleanup(func() { close(release) })
		p := newPools(t, func(c *Config) { c.ResponseHeaderTimeout = 100 * time.Millisecond })
		err := failGet(t, p, "t", Target{URL: o.url})
		if !IsTimeout(err) || Reason(err) != "response header timeout" {
			t.Fatalf("IsTimeout=%v Reason=%q err=%v", IsTimeout(err), Reason(err), err)
		}
	})
	t.Run("response header over HTTP/2", func(t *testing.T) {
		release := make(chan struct{})
		ca := testkit.NewCA(t, "CA")
		leaf := ca.Issue(t, []string{"127.0.0.1"}).TLS
		o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) { <-release },
			&tls.Config{Certificates: []tls.Certificate{leaf}}, true)
		t.Cleanup(func() { close(release) })
		p := newPools(t, func(c *Config) { c.ResponseHeaderTimeout = 100 * time.Millisecond })
		err := failGet(t, p, "t", Target{URL: o.url, TLS: TLS{CAPEM: ca.PEM}})
		if !IsTimeout(err) || Reason(err) != "response header timeout" {
			t.Fatalf("IsTimeout=%v Reason=%q err=%v", IsTimeout(err), Reason(err), err)
		}
	})
	t.Run("client canceled is not a timeout", func(t *testing.T) {
		if IsTimeout(fmt.Errorf("x: %w", context.Canceled)) {
			t.Fatal("canceled counted as timeout")
		}
	})
}

// An origin that drops a kept-alive connection after reading a request: the
// transport may replay a GET on a new connection, never a POST.
func TestNonIdempotentNotRetried(t *testing.T) {
	o := startOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/drop" {
			io.Copy(io.Discard, r.Body)
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		fmt.Fprint(w, "ok")
	}, nil, false)
	p := newPools(t, nil)
	tg := Target{URL: o.url}
	rt, _ := p.Get("t", tg)
	send := func(method string, body io.Reader, idemKey bool) error {
		// Leave a kept-alive connection idle, for the next request to reuse.
		mustGet(t, p, "t", tg)
		req, _ := http.NewRequest(method, o.url.String()+"/drop", body) // sets GetBody
		if idemKey {
			req.Header.Set("Idempotency-Key", "k1")
		}
		resp, err := rt.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	for _, idemKey := range []bool{false, true} {
		// With Idempotency-Key and a rewindable body, http.Transport alone
		// would replay the POST; the pool must not.
		if err := send(http.MethodPost, strings.NewReader("pay=1"), idemKey); err == nil {
			t.Fatal("POST to a dropping origin succeeded")
		}
	}
	if n := o.count("POST /drop"); n != 2 {
		t.Fatalf("2 POSTs reached the origin %d times, want 2", n)
	}
	// Control: the same failure makes the transport replay a GET.
	send(http.MethodGet, nil, false)
	if n := o.count("GET /drop"); n != 2 {
		t.Fatalf("GET reached the origin %d times; the retry scenario did not happen", n)
	}
}

func TestInvalidSettings(t *testing.T) {
	p := newPools(t, nil)
	u, _ := url.Parse("https://origin.example")
	for _, tc := range []struct {
		tg   Target
		want string
	}{
		{Target{URL: u, TLS: TLS{CAPEM: []byte("not pem")}}, "CA bundle"},
		{Target{URL: u, TLS: TLS{ClientCertPEM: []byte("x")}}, "client certificate"},
		{Target{URL: &url.URL{Scheme: "ftp", Host: "a"}}, "scheme"},
		{Target{}, "no URL"},
	} {
		for range 2 { // the error is cached and returned again
			if _, err := p.Get("t", tc.tg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Get(%+v) err = %v, want %q", tc.tg, err, tc.want)
			}
		}
	}
}

func TestFingerprint(t *testing.T) {
	fp := func(raw string, tl TLS) string {
		u, _ := url.Parse(raw)
		s, err := Target{URL: u, TLS: tl}.Fingerprint()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if fp("https://Origin.Example", TLS{}) != fp("https://origin.example:443/path", TLS{}) {
		t.Error("case and default port change the fingerprint")
	}
	if fp("http://o.example", TLS{ServerName: "x"}) != fp("http://o.example:80", TLS{}) {
		t.Error("TLS settings change an http fingerprint")
	}
	base := fp("https://o.example", TLS{})
	for _, tl := range []TLS{{ServerName: "x"}, {CAPEM: []byte("a")}, {ClientCertPEM: []byte("a")}, {ClientKeyPEM: []byte("a")}, {InsecureSkipVerify: true}} {
		if fp("https://o.example", tl) == base {
			t.Errorf("%+v does not change the fingerprint", tl)
		}
	}
	if fp("https://o.example:8443", TLS{}) == base || fp("http://o.example", TLS{}) == base {
		t.Error("port or scheme does not change the fingerprint")
	}
}

func TestReasonUnwrapsPlainErrors(t *testing.T) {
	if r := Reason(errors.New("boom")); r != "boom" {
		t.Fatal(r)
	}
}

func BenchmarkGetCached(b *testing.B) {
	p, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	u, _ := url.Parse("https://origin.example")
	tg := Target{URL: u, TLS: TLS{ServerName: "o", CAPEM: testkit.NewCA(b, "CA").PEM}}
	for i := range 1000 {
		if _, err := p.Get(fmt.Sprintf("tenant-%d", i), tg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Get("tenant-42", tg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// gathered returns the sum of the samples of a gauge or counter in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return v
}
