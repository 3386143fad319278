package dnscache

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testDNS is a real DNS server on loopback UDP whose answers a test controls.
type testDNS struct {
	addr    string
	srv     *dns.Server
	queries atomic.Int64

	mu       sync.Mutex
	ttl      uint32
	ips      []string // A and AAAA records of every name under .test.
	servfail bool
	delay    time.Duration
}

func startDNS(t *testing.T, ttl uint32, ips ...string) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{addr: pc.LocalAddr().String(), ttl: ttl, ips: ips}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve), NotifyStartedFunc: func() { close(started) }}
	go d.srv.ActivateAndServe()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("dns server did not start")
	}
	t.Cleanup(func() { d.stop() })
	return d
}

func (d *testDNS) stop() { _ = d.srv.Shutdown() }

func (d *testDNS) set(f func(d *testDNS)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func (d *testDNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	d.queries.Add(1)
	d.mu.Lock()
	ttl, ips, servfail, delay := d.ttl, d.ips, d.servfail, d.delay
	d.mu.Unlock()
	time.Sleep(delay)
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	switch {
	case servfail:
		m.Rcode = dns.RcodeServerFailure
	case q.Name == "missing.test.":
		m.Rcode = dns.RcodeNameError
	default:
		for _, s := range ips {
			ip := netip.MustParseAddr(s)
			hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: ttl}
			switch {
			case ip.Is4() && q.Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
			case ip.Is6() && q.Qtype == dns.TypeAAAA:
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
			}
		}
	}
	_ = w.WriteMsg(m)
}

// clock is an injectable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type logBuf struct {
	mu sync.Mutex
	b  []byte
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}
func (l *logBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return string(l.b) }

func newResolver(t *testing.T, d *testDNS, clk *clock, mod func(*Config)) *Resolver {
	t.Helper()
	cfg := Config{
		Nameservers:  []string{d.addr},
		HostsFile:    filepath.Join(t.TempDir(), "hosts"),
		MinTTL:       5 * time.Second,
		MaxTTL:       time.Minute,
		QueryTimeout: 300 * time.Millisecond,
		Now:          clk.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func lookup(t *testing.T, r *Resolver, host string) []netip.Addr {
	t.Helper()
	addrs, err := r.LookupHost(context.Background(), host)
	if err != nil {
		t.Fatalf("LookupHost(%q): %v", host, err)
	}
	return addrs
}

func eq(a []netip.Addr, want ...string) bool {
	if len(a) != len(want) {
		return false
	}
	for i := range a {
		if a[i].String() != want[i] {
			return false
		}
	}
	return true
}

func TestTTLRespected(t *testing.T) {
	d := startDNS(t, 30, "192.0.2.1", "2001:db8::1")
	clk := &clock{now: time.Unix(1e9, 0)}
	r := newResolver(t, d, clk, nil)

	if got := lookup(t, r, "Origin.Test."); !eq(got, "192.0.2.1", "2001:db8::1") {
		t.Fatalf("addrs = %v", got)
	}
	q := d.queries.Load() // A + AAAA
	d.set(func(d *testDNS) { d.ips = []string{"192.0.2.2"} })

	clk.Advance(29 * time.Second)
	if got := lookup(t, r, "origin.test"); !eq(got, "192.0.2.1", "2001:db8::1") {
		t.Fatalf("within TTL: addrs = %v, want cached", got)
	}
	if n := d.queries.Load(); n != q {
		t.Fatalf("queries within TTL: %d, want %d", n, q)
	}
	clk.Advance(2 * time.Second)
	if got := lookup(t, r, "origin.test"); !eq(got, "192.0.2.2") {
		t.Fatalf("after TTL: addrs = %v, want refreshed 192.0.2.2", got)
	}
}

func TestTTLClamped(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ttl       uint32
		stillHeld time.Duration // answer still cached after this
		refreshed time.Duration // and refreshed after this
	}{
		{"zero TTL raised to MinTTL", 0, 4 * time.Second, 5 * time.Second},
		{"one hour lowered to MaxTTL", 3600, 59 * time.Second, 60 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDNS(t, tc.ttl, "192.0.2.1")
			clk := &clock{now: time.Unix(1e9, 0)}
			r := newResolver(t, d, clk, nil)
			lookup(t, r, "a.test")
			d.set(func(d *testDNS) { d.ips = []string{"192.0.2.9"} })
			clk.Advance(tc.stillHeld)
			if got := lookup(t, r, "a.test"); !eq(got, "192.0.2.1") {
				t.Fatalf("after %v: %v, want cached 192.0.2.1", tc.stillHeld, got)
			}
			clk.Advance(tc.refreshed - tc.stillHeld)
			if got := lookup(t, r, "a.test"); !eq(got, "192.0.2.9") {
				t.Fatalf("after %v: %v, want refreshed 192.0.2.9", tc.refreshed, got)
			}
		})
	}
}

func TestStaleOnFailure(t *testing.T) {
	for _, mode := range []string{"servfail", "stopped"} {
		t.Run(mode, func(t *testing.T) {
			d := startDNS(t, 10, "192.0.2.1")
			clk := &clock{now: time.Unix(1e9, 0)}
			var logs logBuf
			r := newResolver(t, d, clk, func(c *Config) {
				c.Logger = slogTo(&logs)
				c.MaxStale = time.Hour
			})
			lookup(t, r, "a.test")

			if mode == "servfail" {
				d.set(func(d *testDNS) { d.servfail = true })
			} else {
				d.stop()
			}
			clk.Advance(11 * time.Second)
			if got := lookup(t, r, "a.test"); !eq(got, "192.0.2.1") {
				t.Fatalf("stale answer = %v", got)
			}
			if !contains(logs.String(), "serving stale answer") || !contains(logs.String(), "a.test") {
				t.Fatalf("no stale warning logged: %q", logs.String())
			}
			// The failed refresh is not retried on every lookup, only after MinTTL.
			q := d.queries.Load()
			lookup(t, r, "a.test")
			if d.queries.Load() != q {
				t.Fatal("refresh retried before MinTTL")
			}
			// Past MaxStale the stale answer is gone.
			clk.Advance(2 * time.Hour)
			if _, err := r.LookupHost(context.Background(), "a.test"); err == nil {
				t.Fatal("answer served beyond MaxStale")
			}
		})
	}
}

func TestRecoversAfterFailure(t *testing.T) {
	d := startDNS(t, 10, "192.0.2.1")
	clk := &clock{now: time.Unix(1e9, 0)}
	r := newResolver(t, d, clk, nil)
	lookup(t, r, "a.test")
	d.set(func(d *testDNS) { d.servfail = true })
	clk.Advance(11 * time.Second)
	lookup(t, r, "a.test") // stale
	d.set(func(d *testDNS) { d.servfail = false; d.ips = []string{"192.0.2.3"} })
	clk.Advance(5 * time.Second) // MinTTL: retry
	if got := lookup(t, r, "a.test"); !eq(got, "192.0.2.3") {
		t.Fatalf("after recovery: %v", got)
	}
}

func TestNotFound(t *testing.T) {
	d := startDNS(t, 10, "192.0.2.1")
	r := newResolver(t, d, &clock{now: time.Unix(1e9, 0)}, nil)
	_, err := r.LookupHost(context.Background(), "missing.test")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Fatalf("err = %v, want not found", err)
	}
	q := d.queries.Load()
	r.LookupHost(context.Background(), "missing.test")
	if d.queries.Load() != q {
		t.Fatal("negative answer not cached")
	}
}

func TestFailureWithoutStaleIsError(t *testing.T) {
	d := startDNS(t, 10, "192.0.2.1")
	d.set(func(d *testDNS) { d.servfail = true })
	r := newResolver(t, d, &clock{now: time.Unix(1e9, 0)}, nil)
	_, err := r.LookupHost(context.Background(), "a.test")
	if err == nil || !contains(err.Error(), "SERVFAIL") {
		t.Fatalf("err = %v, want SERVFAIL", err)
	}
}

func TestSingleflight(t *testing.T) {
	d := startDNS(t, 10, "192.0.2.1")
	d.set(func(d *testDNS) { d.delay = 50 * time.Millisecond })
	r := newResolver(t, d, &clock{now: time.Unix(1e9, 0)}, nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := lookup(t, r, "a.test"); !eq(got, "192.0.2.1") {
				t.Errorf("addrs = %v", got)
			}
		}()
	}
	wg.Wait()
	if n := d.queries.Load(); n != 2 { // one A + one AAAA
		t.Fatalf("queries = %d, want 2", n)
	}
}

func TestLiteralsAndHostsFile(t *testing.T) {
	d := startDNS(t, 10, "192.0.2.1")
	clk := &clock{now: time.Unix(1e9, 0)}
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("# comment\n::1 myhost\n127.0.0.1 localhost MyHost # trailing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, d, clk, func(c *Config) { c.HostsFile = hosts })
	if got := lookup(t, r, "10.1.2.3"); !eq(got, "10.1.2.3") {
		t.Fatalf("v4 literal: %v", got)
	}
	if got := lookup(t, r, "[::1]"); !eq(got, "::1") {
		t.Fatalf("v6 literal: %v", got)
	}
	if got := lookup(t, r, "myhost"); !eq(got, "127.0.0.1", "::1") {
		t.Fatalf("hosts file: %v", got)
	}
	if got := lookup(t, r, "localhost"); !eq(got, "127.0.0.1") {
		t.Fatalf("localhost: %v", got)
	}
	if got := lookup(t, r, "app.localhost"); !eq(got, "127.0.0.1", "::1") {
		t.Fatalf("app.localhost: %v", got)
	}
	if n := d.queries.Load(); n != 0 {
		t.Fatalf("nameserver asked %d times for literals/hosts names", n)
	}
}

func TestDialContextTriesAddressesInOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// A closed port on 127.0.0.2 first (refused), then the listener.
	d := startDNS(t, 10, "127.0.0.2", "127.0.0.1")
	r := newResolver(t, d, &clock{now: time.Unix(1e9, 0)}, func(c *Config) { c.DialTimeout = time.Second })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	c, err := r.DialContext(context.Background(), "tcp", net.JoinHostPort("two.test", port))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := c.RemoteAddr().String(); got != ln.Addr().String() {
		t.Fatalf("connected to %s, want %s", got, ln.Addr())
	}
	c.Close()

	_, err = r.DialContext(context.Background(), "tcp", "missing.test:80")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Fatalf("dial missing: %v", err)
	}
}

func BenchmarkLookupHostCached(b *testing.B) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	d := &testDNS{ttl: 300, ips: []string{"192.0.2.1"}}
	d.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve)}
	go d.srv.ActivateAndServe()
	defer d.srv.Shutdown()
	r, err := New(Config{Nameservers: []string{pc.LocalAddr().String()}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for start := time.Now(); time.Since(start) < 5*time.Second; { // wait for the server
		if _, err := r.LookupHost(ctx, "a.test"); err == nil {
			break
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.LookupHost(ctx, "a.test"); err != nil {
			b.Fatal(err)
		}
	}
}
