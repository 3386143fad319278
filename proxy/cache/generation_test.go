package cache

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestGenerationKeysApartOnEveryTier: an object stored under one tenant
// generation is unreachable under the next one in L1, Redis (L2) and S3
// (L3), while still there for its own generation: a tenant removed and
// added again (or whose origin changed) never gets the old owner's
// objects, on this node or on a node that only sees the shared tiers.
func TestGenerationKeysApartOnEveryTier(t *testing.T) {
	addr, _ := testkit.Redis(t)
	endpoint, bucket, ak, sk := testkit.S3(t)
	rc := &RedisConfig{Addr: addr, Timeout: time.Second}
	sc := &S3Config{Bucket: bucket, Endpoint: endpoint, PathStyle: true, AccessKey: ak, SecretKey: sk, Timeout: time.Second}
	oldOrigin := newOrigin(t, func(w http.ResponseWriter, _ *http.Request, _ int64) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write([]byte("old owner"))
	})
	nextOrigin := newOrigin(t, func(w http.ResponseWriter, _ *http.Request, _ int64) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write([]byte("new owner"))
	})
	gen1 := Request{Tenant: "shop.example", Generation: 7, Persist: true}
	gen2 := Request{Tenant: "shop.example", Generation: 9, Persist: true}

	a := newCache(t, Config{Redis: rc, S3: sc})
	wantStatus(t, newFront(t, a, oldOrigin.srv.URL, gen1).get(t, "/p"), 200, "edge; fwd=miss; stored")
	testkit.Eventually(t, 10*time.Second, "L2 and L3 writes", func() bool {
		s := a.Stats()
		return s.L2.Stores >= 1 && s.L3.Stores >= 1
	})

	// Same node, L1 holds the old object: the new generation misses.
	r := newFront(t, a, nextOrigin.srv.URL, gen2).get(t, "/p")
	wantStatus(t, r, 200, "edge; fwd=miss; stored")
	if r.body != "new owner" {
		t.Fatalf("new generation on the same node: body %q", r.body)
	}

	// A node that sees only Redis (and S3), with the new generation first.
	for _, tc := range []struct {
		name string
		cfg  Config
		tier string
	}{
		{"l2", Config{Redis: rc}, "l2"},
		{"l3", Config{S3: sc}, "l3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh := newOrigin(t, func(w http.ResponseWriter, _ *http.Request, _ int64) {
				w.Header().Set("Cache-Control", "no-store")
				w.Write([]byte("origin"))
			})
			c := newCache(t, tc.cfg)
			f2 := newFront(t, c, fresh.srv.URL, Request{Tenant: "shop.example", Generation: 11, Persist: true})
			if r := f2.get(t, "/p"); strings.Contains(r.body, "old owner") || fresh.hits.Load() != 1 {
				t.Fatalf("generation 11 found %q (origin hits %d), want a miss", r.body, fresh.hits.Load())
			}
			f1 := newFront(t, c, fresh.srv.URL, gen1)
			r := f1.get(t, "/p")
			wantStatus(t, r, 200, "edge; hit")
			if r.body != "old owner" || f1.last.Load().Tier != tc.tier {
				t.Fatalf("generation 7 on a fresh node: body %q from %q, want the stored object from %s", r.body, f1.last.Load().Tier, tc.tier)
			}
		})
	}
}

// TestCacheKeyOneAllocation: the key of a tenant with a generation costs
// what the key without one did, one allocation.
func TestCacheKeyOneAllocation(t *testing.T) {
	tenant, host, pq := "shop.example", "www.shop.example", "/a/b?c=d"
	if got := testing.AllocsPerRun(100, func() {
		_ = cacheKey(tenant, 1234567, "https", host, pq, "")
	}); got != 1 {
		t.Fatalf("cacheKey with a generation: %v allocations, want 1", got)
	}
	if k := cacheKey(tenant, 42, "https", host, pq, "fr"); k != "shop.example\x0042\x00GET\x00https\x00www.shop.example\x00/a/b?c=d\x00fr" {
		t.Fatalf("key %q", k)
	}
	if cacheKey(tenant, 0, "https", host, pq, "") != tenant+"\x00GET\x00https\x00"+host+"\x00"+pq+"\x00" {
		t.Fatal("generation 0 must keep the key generations did not have")
	}
}
