package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// frontingProxy is a proxy whose TLS listener picks a certificate by SNI,
// like the certificate manager: a.test and b.test have their own,
// multi.test's also covers b.test, x.wild.test gets *.wild.test, and a
// hello without SNI gets a.test's.
type frontingProxy struct {
	*testProxy
	addr    string
	pool    *x509.CertPool
	origin  atomic.Int64 // requests the origin received
	lookups atomic.Int64 // LookupCertificate calls (resumed sessions)
}

func startFrontingProxy(t *testing.T) *frontingProxy {
	t.Helper()
	fp := &frontingProxy{pool: x509.NewCertPool()}
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		fp.origin.Add(1)
		fmt.Fprint(w, "origin")
	})
	bySNI := map[string]*tls.Certificate{
		"a.test":      &testkit.SelfSigned(t, "a.test").TLS,
		"b.test":      &testkit.SelfSigned(t, "b.test").TLS,
		"multi.test":  &testkit.SelfSigned(t, "multi.test", "b.test").TLS,
		"x.wild.test": &testkit.SelfSigned(t, "*.wild.test").TLS,
	}
	bySNI[""] = bySNI["a.test"]
	for _, c := range bySNI {
		fp.pool.AddCert(c.Leaf)
	}
	var ts []*tenantcfg.Tenant
	for _, d := range []string{"a.test", "b.test", "multi.test", "x.wild.test", "y.wild.test", "wild.test", "a.b.wild.test"} {
		ts = append(ts, tenant(d, o.URL))
	}
	p := startProxy(t, routesOf(ts...), proxyOpts{server: ServerConfig{
		HTTPSAddr: "127.0.0.1:0",
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := bySNI[h.ServerName]; c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("no certificate for %q", h.ServerName)
		},
		LookupCertificate: func(name string) *tls.Certificate {
			fp.lookups.Add(1)
			return bySNI[name]
		},
	}})
	fp.testProxy, fp.addr = p, p.srv.HTTPSAddr().String()
	return fp
}

// client opens connections to the proxy with SNI sni ("" sends none),
// over HTTP/2 or HTTP/1.1 only.
func (fp *frontingProxy) client(t *testing.T, sni string, h2 bool, sessions tls.ClientSessionCache) *http.Client {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			ServerName: sni, RootCAs: fp.pool, ClientSessionCache: sessions,
			// Without SNI the client would check the certificate against
			// 127.0.0.1.
			InsecureSkipVerify: sni == "",
		},
		ForceAttemptHTTP2: h2,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get sends GET / for host and checks the protocol used; it returns the
// status and the response's TLS state.
func (fp *frontingProxy) get(t *testing.T, c *http.Client, host string, h2 bool) (int, *tls.ConnectionState) {
	t.Helper()
	req, err := http.NewRequest("GET", "https://"+fp.addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", host, err)
	}
	readAll(t, resp)
	if want := map[bool]int{true: 2, false: 1}[h2]; resp.ProtoMajor != want {
		t.Fatalf("GET %s went over %s, want HTTP/%d", host, resp.Proto, want)
	}
	return resp.StatusCode, resp.TLS
}

// TestDomainFronting421: a TLS connection made for one name must not serve
// a Host its certificate does not cover (issue 14, item 11). Each case
// sends its requests on one connection, so the h2 cases are connection
// coalescing as a browser does it.
func TestDomainFronting421(t *testing.T) {
	fp := startFrontingProxy(t)
	type req struct {
		host string
		want int
	}
	cases := []struct {
		name, sni string
		reqs      []req
	}{
		{"own name", "a.test", []req{{"a.test", 200}, {"A.Test:443", 200}}},
		{"other tenant", "a.test", []req{{"a.test", 200}, {"b.test", 421}, {"a.test", 200}}},
		{"certificate covers both", "multi.test", []req{{"multi.test", 200}, {"b.test", 200}, {"a.test", 421}}},
		{"wildcard", "x.wild.test", []req{{"y.wild.test", 200}, {"x.wild.test", 200}, {"wild.test", 421}, {"a.b.wild.test", 421}}},
		{"no SNI", "", []req{{"a.test", 200}, {"b.test", 421}, {"127.0.0.1", 421}}},
	}
	for _, h2 := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/h2=%v", tc.name, h2), func(t *testing.T) {
				c := fp.client(t, tc.sni, h2, nil)
				for _, r := range tc.reqs {
					before := fp.origin.Load()
					code, _ := fp.get(t, c, r.host, h2)
					if code != r.want {
						t.Fatalf("SNI %q, Host %s: %d, want %d", tc.sni, r.host, code, r.want)
					}
					reached := fp.origin.Load() - before
					if (r.want == 421) != (reached == 0) {
						t.Fatalf("SNI %q, Host %s (%d): the origin got %d requests", tc.sni, r.host, code, reached)
					}
				}
			})
		}
	}
	if lines := fp.accessLines("/"); len(lines) == 0 {
		t.Fatal("no access log lines")
	} else {
		n := 0
		for _, l := range lines {
			if l["status"] == float64(421) {
				n++
			}
		}
		if n != 12 {
			t.Fatalf("%d access log lines with status 421, want 12", n)
		}
	}
}

// TestDomainFronting421ResumedSession: a resumed session skips
// GetCertificate, so the check looks the certificate up by SNI, once per
// connection.
func TestDomainFronting421ResumedSession(t *testing.T) {
	fp := startFrontingProxy(t)
	for _, h2 := range []bool{false, true} {
		sessions := tls.NewLRUClientSessionCache(4)
		c := fp.client(t, "a.test", h2, sessions)
		if code, st := fp.get(t, c, "a.test", h2); code != 200 || st.DidResume {
			t.Fatalf("first connection: %d, resumed %v", code, st.DidResume)
		}
		c.Transport.(*http.Transport).CloseIdleConnections()
		lookups := fp.lookups.Load()
		for _, r := range []struct {
			host string
			want int
		}{{"a.test", 200}, {"b.test", 421}, {"a.test", 200}} {
			code, st := fp.get(t, c, r.host, h2)
			if !st.DidResume {
				t.Fatal("the second connection did not resume the session")
			}
			if code != r.want {
				t.Fatalf("resumed, Host %s: %d, want %d", r.host, code, r.want)
			}
		}
		if n := fp.lookups.Load() - lookups; n != 1 {
			t.Fatalf("LookupCertificate called %d times for one resumed connection, want 1", n)
		}
	}
}

func TestCovers(t *testing.T) {
	leaf := testkit.SelfSigned(t, "shop.example", "*.wild.example", "Mixed.Example", "10.0.0.1", "2001:db8::1").TLS.Leaf
	for host, want := range map[string]bool{
		"shop.example":         true,
		"www.shop.example":     false,
		"a.wild.example":       true,
		"wild.example":         false,
		"a.b.wild.example":     false,
		"mixed.example":        true,
		"10.0.0.1":             true,
		"10.0.0.2":             false,
		"2001:db8::1":          true,
		"2001:db8:0:0:0:0:0:1": true,
		"::1":                  false,
		"example":              false,
	} {
		if got := covers(leaf, host); got != want {
			t.Errorf("covers(%s) = %v, want %v", host, got, want)
		}
	}
	if covers(nil, "shop.example") {
		t.Error("a nil leaf covers nothing")
	}
}

// BenchmarkMisdirected is the 421 check alone, per request, with a
// context chain as deep as net/http's (server, connection, request).
func BenchmarkMisdirected(b *testing.B) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	cert := &testkit.SelfSigned(b, "shop.example", "www.shop.example", "*.cdn.shop.example").TLS
	src := &certSource{get: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }}
	ctx := context.WithValue(context.Background(), http.ServerContextKey, nil)
	ctx = src.connContext(ctx, tls.Server(c1, &tls.Config{}))
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c1.LocalAddr())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx.Value(presentedKey{}).(*presented).cert.Store(cert)
	ctx, cancel = context.WithCancel(ctx)
	defer cancel()
	r := (&http.Request{TLS: &tls.ConnectionState{ServerName: "shop.example"}}).WithContext(ctx)
	for _, tc := range []struct {
		host string
		want bool
	}{{"shop.example", false}, {"img.cdn.shop.example", false}, {"other.example", true}} {
		b.Run(tc.host, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if misdirected(r, tc.host) != tc.want {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}
