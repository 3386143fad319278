package certs

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/raftstore"
	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// single is one real raftstore node with a Manager that cannot reach any
// CA (followers and leaders alike never order in these tests unless told).
func single(t *testing.T, cfg Config) (*cluster, *node) {
	t.Helper()
	c := newCluster(t, 1)
	s := c.stores[0]
	lic := &licenses{s: s}
	cfg.Store, cfg.Licenses, cfg.Leadership = kvStore{s}, lic, s
	if cfg.DirectoryURL == "" {
		cfg.DirectoryURL = "https://127.0.0.1:1/directory" // nothing listens: an order would fail
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, &node{s: s, m: m, lic: lic}
}

func TestImportGetListRemove(t *testing.T) {
	c, n := single(t, Config{})
	c.addTenant(t, "shop.example")
	ctx := context.Background()
	now := time.Now()
	certPEM, keyPEM := testkit.SelfSignedValid(t, now.Add(-time.Hour), now.Add(90*24*time.Hour), "shop.example", "www.shop.example").PEM()

	// Validation: wrong domain, mismatched key, expired, garbage.
	_, otherKey := testkit.SelfSignedValid(t, now.Add(-time.Hour), now.Add(time.Hour), "shop.example").PEM()
	expired, expiredKey := testkit.SelfSignedValid(t, now.Add(-48*time.Hour), now.Add(-time.Hour), "shop.example").PEM()
	for name, tc := range map[string]struct {
		domain    string
		cert, key []byte
	}{
		"other domain": {"other.example", certPEM, keyPEM},
		"key mismatch": {"shop.example", certPEM, otherKey},
		"expired":      {"shop.example", expired, expiredKey},
		"garbage":      {"shop.example", []byte("nope"), keyPEM},
	} {
		if _, err := n.m.Import(ctx, tc.domain, tc.cert, tc.key); !errors.Is(err, ErrInvalidCertificate) {
			t.Errorf("%s: Import err = %v, want ErrInvalidCertificate", name, err)
		}
	}

	info, err := n.m.Import(ctx, "Shop.Example.", certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if info.Domain != "shop.example" || info.Source != SourceImported || info.Status != StatusActive ||
		len(info.SANs) != 2 || info.NotAfter.Before(now.Add(89*24*time.Hour)) || info.Issuer == "" {
		t.Fatalf("Import info = %+v", info)
	}
	addr := startTLS(t, n.m)
	leaf, err := handshake(addr, "shop.example", poolOf(t, certPEM))
	if err != nil {
		t.Fatalf("handshake with the imported certificate: %v", err)
	}
	if leaf.SerialNumber.Text(16) != info.Serial {
		t.Fatalf("served serial %s, stored %s", leaf.SerialNumber.Text(16), info.Serial)
	}
	if got, err := n.m.Get("shop.example"); err != nil || got.Serial != info.Serial {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if l := n.m.List(0); len(l) != 1 || l[0].Domain != "shop.example" {
		t.Fatalf("List(0) = %+v", l)
	}
	if l := n.m.List(30 * 24 * time.Hour); len(l) != 0 {
		t.Fatalf("List(30d) lists a certificate valid 90 days: %+v", l)
	}
	if _, err := n.m.Renew(ctx, "shop.example"); !errors.Is(err, ErrImported) {
		t.Fatalf("Renew(imported) err = %v, want ErrImported", err)
	}

	if err := n.m.Remove(ctx, "shop.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.m.Get("shop.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Remove: %v", err)
	}
	if err := n.m.Remove(ctx, "shop.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestWildcardServedAfterExact(t *testing.T) {
	c, n := single(t, Config{})
	c.addTenant(t, "a.shop.example")
	now := time.Now()
	wc, wk := testkit.SelfSignedValid(t, now.Add(-time.Hour), now.Add(time.Hour*24), "*.shop.example").PEM()
	ec, ek := testkit.SelfSignedValid(t, now.Add(-time.Hour), now.Add(time.Hour*24), "a.shop.example").PEM()
	ctx := context.Background()
	if _, err := n.m.Import(ctx, "*.shop.example", wc, wk); err != nil {
		t.Fatal(err)
	}
	addr := startTLS(t, n.m)
	if _, err := handshake(addr, "b.shop.example", poolOf(t, wc)); err != nil {
		t.Fatalf("wildcard: %v", err)
	}
	if _, err := n.m.Import(ctx, "a.shop.example", ec, ek); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(addr, "a.shop.example", poolOf(t, ec)); err != nil {
		t.Fatalf("exact match must win over the wildcard: %v", err)
	}
}

// putRecord writes a record as the leader would, bypassing Import's checks.
func putRecord(t *testing.T, n *node, r *record) {
	t.Helper()
	b, _ := json.Marshal(r)
	if err := (kvStore{n.s}).Put(context.Background(), certPrefix+r.Domain, b, n.s.Term()); err != nil {
		t.Fatal(err)
	}
}

func TestExpiredStoredCertificateIsNotServed(t *testing.T) {
	_, n := single(t, Config{})
	now := time.Now()
	// Stored while valid; it expired since. The domain is not licensed, so
	// nothing may be served at all.
	certPEM, keyPEM := testkit.SelfSignedValid(t, now.Add(-48*time.Hour), now.Add(-time.Second), "old.example").PEM()
	c, _ := parseKeyPair(certPEM, keyPEM)
	r := &record{Domain: "old.example", Source: SourceACME}
	r.setCert(certPEM, keyPEM, c.Leaf)
	putRecord(t, n, r)
	addr := startTLS(t, n.m)
	if _, err := handshake(addr, "old.example", nil); err == nil {
		t.Fatal("an expired stored certificate was served")
	}

	// A record that changes is re-parsed (version check): store a valid
	// one under the same key and it is served at once.
	certPEM, keyPEM = testkit.SelfSignedValid(t, now.Add(-time.Hour), now.Add(time.Hour), "old.example").PEM()
	c, _ = parseKeyPair(certPEM, keyPEM)
	r.setCert(certPEM, keyPEM, c.Leaf)
	putRecord(t, n, r)
	if _, err := handshake(addr, "old.example", poolOf(t, certPEM)); err != nil {
		t.Fatalf("renewed record not served: %v", err)
	}
}

func TestUnknownNameFailsFastWithNegativeCache(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, n := single(t, Config{Registerer: reg, NegativeTTL: time.Minute, NegativeSize: 3})
	addr := startTLS(t, n.m)
	start := time.Now()
	for range 3 {
		if _, err := handshake(addr, "unknown.example", nil); err == nil {
			t.Fatal("handshake for an unknown name succeeded")
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("three rejected handshakes took %v", d)
	}
	if got := n.lic.calls.Load(); got != 1 {
		t.Fatalf("license checked %d times for a repeated unknown name, want 1 (negative cache)", got)
	}
	if got := testutil.ToFloat64(n.m.metrics.handshakes.WithLabelValues(resultRejected)); got != 3 {
		t.Fatalf("rejected handshakes = %v, want 3", got)
	}
	// Bounded: a flood of distinct names never grows it past its size.
	for i := range 50 {
		_, _ = n.m.GetCertificate(helloFor(strings.Repeat("x", i%7+1) + ".flood.example"))
	}
	if l := n.m.neg.len(); l > 3 {
		t.Fatalf("negative cache holds %d names, bound 3", l)
	}
	if got := testutil.ToFloat64(n.m.metrics.orders.WithLabelValues(orderPlaced)); got != 0 {
		t.Fatalf("orders placed = %v", got)
	}
}

func TestHTTPHandlerServesReplicatedToken(t *testing.T) {
	c, n := single(t, Config{})
	c.addTenant(t, "shop.example")
	h := n.m.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	// The leader stores a token the way an order does.
	if err := (kvStore{n.s}).Put(context.Background(), acmePrefix+"tok_EN-1+http-01", []byte("tok_EN-1.thumb"), n.s.Term()); err != nil {
		t.Fatal(err)
	}
	get := func(host, path string) (int, string) {
		req := httptest.NewRequest("GET", "http://"+host+path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		b, _ := io.ReadAll(w.Result().Body)
		return w.Code, string(b)
	}
	if code, body := get("shop.example:80", "/.well-known/acme-challenge/tok_EN-1"); code != 200 || body != "tok_EN-1.thumb" {
		t.Fatalf("token: %d %q", code, body)
	}
	if code, _ := get("evil.example", "/.well-known/acme-challenge/tok_EN-1"); code != http.StatusForbidden {
		t.Fatalf("unlicensed host: %d", code)
	}
	if code, _ := get("shop.example", "/.well-known/acme-challenge/..%2fx"); code != http.StatusBadRequest {
		t.Fatalf("bad token: %d", code)
	}
	if code, _ := get("shop.example", "/index.html"); code != http.StatusTeapot {
		t.Fatalf("fallback: %d", code)
	}
}

func TestRetiredTenantStopsBeingServedAfterGrace(t *testing.T) {
	c, n := single(t, Config{Grace: 300 * time.Millisecond})
	c.addTenant(t, "shop.example")
	now := time.Now()
	certPEM, keyPEM := testkit.SelfSignedValid(t, now.Add(-time.Hour), now.Add(24*time.Hour), "shop.example").PEM()
	ctx := context.Background()
	if _, err := n.m.Import(ctx, "shop.example", certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	addr := startTLS(t, n.m)
	c.suspend(t, "shop.example")
	n.m.Tick(ctx)
	info, err := n.m.Get("shop.example")
	if err != nil || info.InactiveSince.IsZero() {
		t.Fatalf("after suspension: %+v %v", info, err)
	}
	if _, err := handshake(addr, "shop.example", poolOf(t, certPEM)); err != nil {
		t.Fatalf("within the grace period the certificate must still be served: %v", err)
	}
	testkit.Eventually(t, 5*time.Second, "the grace period to end", func() bool {
		_, err := handshake(addr, "shop.example", poolOf(t, certPEM))
		return err != nil
	})
	n.m.Tick(ctx)
	if _, err := n.m.Get("shop.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("retired certificate still stored: %v", err)
	}
}

func TestNormalizeDomain(t *testing.T) {
	for in, want := range map[string]string{
		"Shop.Example.": "shop.example", "bücher.example": "xn--bcher-kva.example", "a_b.example": "a_b.example",
	} {
		if got, err := NormalizeDomain(in, false); err != nil || got != want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "localhost", "a/b.example", "a..example", "*.example.com", "1.2.3.4:80", ".example.com"} {
		if got, err := NormalizeDomain(bad, false); err == nil {
			t.Errorf("NormalizeDomain(%q) = %q, want an error", bad, got)
		}
	}
	if got, err := NormalizeDomain("*.Example.com", true); err != nil || got != "*.example.com" {
		t.Errorf("wildcard: %q %v", got, err)
	}
}

func FuzzNormalizeDomain(f *testing.F) {
	for _, s := range []string{"shop.example", "Bücher.example.", "*.x.y", "a/b", "..", "xn--"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := NormalizeDomain(s, true)
		if err != nil {
			return
		}
		if strings.ContainsAny(d, "/\\:+ ") || strings.HasSuffix(d, ".") {
			t.Fatalf("NormalizeDomain(%q) = %q", s, d)
		}
	})
}

var _ = raftstore.CmdKVPut
