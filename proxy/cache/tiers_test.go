package cache

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func countingOrigin(t *testing.T) *origin {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, "%s %s", r.URL.Path, strings.Repeat("payload ", 100))
	})
}

func TestRedisL2SharedAcrossNodes(t *testing.T) {
	addr, _ := testkit.Redis(t)
	o := countingOrigin(t)
	rc := &RedisConfig{Addr: addr, Timeout: 100 * time.Millisecond}
	a := newFront(t, newCache(t, Config{Redis: rc}), o.srv.URL, Request{Tenant: "t"})
	b := newFront(t, newCache(t, Config{Redis: rc}), o.srv.URL, Request{Tenant: "t"})

	wantStatus(t, a.get(t, "/shared", "Accept-Encoding", "gzip"), 200, "edge; fwd=miss; stored")
	testkit.Eventually(t, 5*time.Second, "L2 write", func() bool { return a.c.Stats().L2.Stores >= 1 })
	r := b.get(t, "/shared")
	wantStatus(t, r, 200, "edge; hit")
	if tier := b.last.Load().Tier; tier != "l2" {
		t.Fatalf("second node served from %q, want l2", tier)
	}
	if !strings.HasPrefix(r.body, "/shared payload") {
		t.Fatalf("body %q", r.body[:20])
	}
	wantStatus(t, b.get(t, "/shared"), 200, "edge; hit")
	if tier := b.last.Load().Tier; tier != "l1" {
		t.Fatalf("L2 hit not promoted to L1: tier %q", tier)
	}
	if o.hits.Load() != 1 {
		t.Fatalf("origin requests %d, want 1", o.hits.Load())
	}

	// A purge applied on node b makes b's L2 copy a miss too: the record
	// travels with the node, the stamp with the object.
	c := newFront(t, newCache(t, Config{Redis: rc}), o.srv.URL, Request{Tenant: "t"})
	must(t, c.c.ApplyPurge(Purge{Index: 7, Tenant: "t", Prefixes: []string{"/sh"}}))
	wantStatus(t, c.get(t, "/shared"), 200, "edge; fwd=miss; stored")
}

func TestRedisKilledMidTest(t *testing.T) {
	srv := testkit.StartRedis(t)
	o := countingOrigin(t)
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	rc := &RedisConfig{Addr: srv.Addr(), Timeout: 50 * time.Millisecond}
	a := newFront(t, newCache(t, Config{Redis: rc, Logger: log}), o.srv.URL, Request{Tenant: "t"})
	b := newFront(t, newCache(t, Config{Redis: rc}), o.srv.URL, Request{Tenant: "t"})

	wantStatus(t, a.get(t, "/before"), 200, "edge; fwd=miss; stored")
	testkit.Eventually(t, 5*time.Second, "L2 write", func() bool { return a.c.Stats().L2.Stores >= 1 })

	srv.Stop()
	// Everything keeps working: L1 hits, origin misses, no errors for clients.
	for i := range 50 {
		start := time.Now()
		wantStatus(t, a.get(t, "/before"), 200, "edge; hit")
		r := a.get(t, fmt.Sprintf("/during/%d", i))
		wantStatus(t, r, 200, "edge; fwd=miss; stored")
		if d := time.Since(start); d > time.Second {
			t.Fatalf("request took %s with Redis down", d)
		}
	}
	if st := a.c.Stats(); st.L2.Errors == 0 {
		t.Fatalf("no L2 errors counted while Redis was down: %+v", st.L2)
	}
	if n := logs.count("cache tier unavailable"); n != 1 {
		t.Fatalf("outage logged %d times, want once", n)
	}

	srv.Start()
	// L2 comes back by itself: a new object written by a reaches b via Redis.
	testkit.Eventually(t, 10*time.Second, "L2 to come back", func() bool {
		p := fmt.Sprintf("/after/%d", time.Now().UnixNano())
		a.get(t, p)
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			b.get(t, p)
			if b.last.Load().Tier == "l2" {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})
	testkit.Eventually(t, 5*time.Second, "recovery log", func() bool { return logs.count("cache tier available again") == 1 })
}

func TestRedisUnreachableAtStart(t *testing.T) {
	o := countingOrigin(t)
	// A port nothing listens on: New succeeds, requests are served.
	c := newCache(t, Config{Redis: &RedisConfig{Addr: "127.0.0.1:1"}})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t"})
	wantStatus(t, f.get(t, "/x"), 200, "edge; fwd=miss; stored")
	wantStatus(t, f.get(t, "/x"), 200, "edge; hit")
}

func TestS3L3PersistentVariants(t *testing.T) {
	endpoint, bucket, ak, sk := testkit.S3(t)
	o := countingOrigin(t)
	sc := &S3Config{Bucket: bucket, Endpoint: endpoint, PathStyle: true, AccessKey: ak, SecretKey: sk, Timeout: time.Second}
	persist := Request{Tenant: "t", Variant: "fr", Persist: true}
	a := newFront(t, newCache(t, Config{S3: sc}), o.srv.URL, persist)
	wantStatus(t, a.get(t, "/translated"), 200, "edge; fwd=miss; stored")
	testkit.Eventually(t, 10*time.Second, "L3 write", func() bool { return a.c.Stats().L3.Stores >= 1 })

	// A fresh node (empty L1, as after a restart) finds it in S3.
	b := newFront(t, newCache(t, Config{S3: sc}), o.srv.URL, persist)
	r := b.get(t, "/translated")
	wantStatus(t, r, 200, "edge; hit")
	if tier := b.last.Load().Tier; tier != "l3" {
		t.Fatalf("served from %q, want l3", tier)
	}
	// Requests that do not ask to persist never touch S3.
	plain := newFront(t, b.c, o.srv.URL, Request{Tenant: "t", Variant: "fr"})
	wantStatus(t, plain.get(t, "/other"), 200, "edge; fwd=miss; stored")
	if o.hits.Load() != 2 {
		t.Fatalf("origin requests %d, want 2", o.hits.Load())
	}
}

func TestS3Unavailable(t *testing.T) {
	srv := testkit.StartS3(t)
	o := countingOrigin(t)
	logs := &logBuffer{}
	sc := &S3Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}
	c := newCache(t, Config{S3: sc, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t", Persist: true})
	wantStatus(t, f.get(t, "/a"), 200, "edge; fwd=miss; stored")
	srv.Stop()
	for i := range 20 {
		wantStatus(t, f.get(t, "/a"), 200, "edge; hit")
		wantStatus(t, f.get(t, fmt.Sprintf("/b%d", i)), 200, "edge; fwd=miss; stored")
	}
	if n := logs.count("cache tier unavailable"); n != 1 {
		t.Fatalf("outage logged %d times, want once", n)
	}

	// Wrong endpoint from the start.
	bad := newCache(t, Config{S3: &S3Config{Bucket: "b", Endpoint: "http://127.0.0.1:1", PathStyle: true, AccessKey: "a", SecretKey: "s"}})
	g := newFront(t, bad, o.srv.URL, Request{Tenant: "t", Persist: true})
	wantStatus(t, g.get(t, "/c"), 200, "edge; fwd=miss; stored")
	wantStatus(t, g.get(t, "/c"), 200, "edge; hit")
}
