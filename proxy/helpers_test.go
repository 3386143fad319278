package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/compress"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// newCacheCompressor returns a cache on cfg, closed when the test ends,
// and the real compressor with its defaults: what node wires in front of
// the handler.
func newCacheCompressor(t testing.TB, cfg cache.Config) (*cache.Cache, *compress.Compressor) {
	t.Helper()
	c, err := cache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	comp, err := compress.New(compress.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c, comp
}

// mapRoutes is a Routes over a fixed map (host → tenant).
type mapRoutes map[string]*tenantcfg.Tenant

func (m mapRoutes) Lookup(host string) *tenantcfg.Tenant { return m[host] }

func routesOf(ts ...*tenantcfg.Tenant) mapRoutes {
	m := mapRoutes{}
	for _, t := range ts {
		for _, h := range t.Hosts() {
			m[h] = t
		}
	}
	return m
}

// transportUpstreams gives every tenant a real http.Transport, cached per
// origin URL, like the upstream package does.
type transportUpstreams struct {
	mu        sync.Mutex
	byURL     map[string]*http.Transport
	parsed    map[string]*url.URL
	configure func(*http.Transport)
}

func newTransportUpstreams(t *testing.T, configure func(*http.Transport)) *transportUpstreams {
	u := &transportUpstreams{byURL: map[string]*http.Transport{}, parsed: map[string]*url.URL{}, configure: configure}
	t.Cleanup(func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		for _, tr := range u.byURL {
			tr.CloseIdleConnections()
		}
	})
	return u
}

func (u *transportUpstreams) RoundTripper(t *tenantcfg.Tenant) (http.RoundTripper, *url.URL, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if tr, ok := u.byURL[t.Origin.URL]; ok {
		return tr, u.parsed[t.Origin.URL], nil
	}
	target, err := url.Parse(t.Origin.URL)
	if err != nil {
		return nil, nil, err
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   50,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second,
	}
	if u.configure != nil {
		u.configure(tr)
	}
	u.byURL[t.Origin.URL], u.parsed[t.Origin.URL] = tr, target
	return tr, target, nil
}

func tenant(domain, origin string, aliases ...string) *tenantcfg.Tenant {
	return &tenantcfg.Tenant{
		Domain:  domain,
		Aliases: aliases,
		License: tenantcfg.License{Status: tenantcfg.LicenseActive},
		Origin:  tenantcfg.Origin{URL: origin},
	}
}

// testProxy is a proxy Server on loopback with its handler's log and
// metrics registry.
type testProxy struct {
	srv    *Server
	url    string // http://127.0.0.1:port
	tlsURL string
	logs   *testkit.SyncBuffer
	reg    *prometheus.Registry
	cert   *x509.Certificate
}

type proxyOpts struct {
	cfg       Config       // Routes/Upstreams/Logger/Registerer filled in when empty
	server    ServerConfig // addresses, handler and certificate filled in
	transport func(*http.Transport)
	tls       bool
}

func startProxy(t *testing.T, routes Routes, o proxyOpts) *testProxy {
	t.Helper()
	p := &testProxy{logs: &testkit.SyncBuffer{}, reg: prometheus.NewRegistry()}
	log := slog.New(slog.NewJSONHandler(p.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := o.cfg
	cfg.Routes = routes
	if cfg.Upstreams == nil {
		cfg.Upstreams = newTransportUpstreams(t, o.transport)
	}
	cfg.Logger, cfg.Registerer = log, p.reg
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc := o.server
	sc.HTTPAddr, sc.Handler, sc.Logger, sc.Registerer = "127.0.0.1:0", h, log, p.reg
	if o.tls {
		kp := testkit.SelfSigned(t, "shop.example", "*.example", "127.0.0.1")
		cert, leaf := &kp.TLS, kp.TLS.Leaf
		p.cert = leaf
		sc.HTTPSAddr = "127.0.0.1:0"
		sc.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
	}
	srv, err := NewServer(sc)
	if err != nil {
		t.Fatal(err)
	}
	p.srv = srv
	p.url = "http://" + srv.HTTPAddr().String()
	if o.tls {
		p.tlsURL = "https://" + srv.HTTPSAddr().String()
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return p
}

// do sends a request for host through the proxy with a fresh client.
func (p *testProxy) do(t *testing.T, method, host, path string, body string, hdr http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vv := range hdr {
		req.Header[k] = vv
	}
	req.Host = host
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b.String()
}

// origin starts an httptest origin that is closed with the test.
func origin(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// accessLines returns p's access log lines for path, decoded.
func (p *testProxy) accessLines(path string) []map[string]any {
	var out []map[string]any
	for l := range strings.SplitSeq(p.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" && m["path"] == path {
			out = append(out, m)
		}
	}
	return out
}
