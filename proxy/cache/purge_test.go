package cache

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// purgeFixture is a cache in front of an origin whose responses carry tags
// taken from the path: /t/<tag>/... gets Surrogate-Key <tag>.
type purgeFixture struct {
	o      *origin
	c      *Cache
	fronts map[string]*front // by tenant
}

func newPurgeFixture(t *testing.T) *purgeFixture {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=3600, stale-while-revalidate=3600")
		w.Header().Set("ETag", `"e"`)
		if parts := strings.Split(r.URL.Path, "/"); len(parts) > 2 && parts[1] == "t" {
			w.Header().Set("Surrogate-Key", parts[2]+" all-tagged")
		}
		fmt.Fprintf(w, "%s #%d", r.URL.Path, n)
	})
	c := newCache(t, Config{})
	fx := &purgeFixture{o: o, c: c, fronts: map[string]*front{}}
	for _, tenant := range []string{"acme", "globex"} {
		fx.fronts[tenant] = newFront(t, c, o.srv.URL, Request{Tenant: tenant, Host: tenant + ".example"})
	}
	return fx
}

// warm fetches paths for a tenant so they are cached.
func (fx *purgeFixture) warm(t *testing.T, tenant string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		fx.fronts[tenant].get(t, p)
		wantStatus(t, fx.fronts[tenant].get(t, p), 200, "edge; hit")
	}
}

// status returns the Cache-Status of a GET.
func (fx *purgeFixture) status(t *testing.T, tenant, path string) string {
	t.Helper()
	return fx.fronts[tenant].get(t, path).header.Get("Cache-Status")
}

func TestPurgeSelectors(t *testing.T) {
	paths := []string{"/a", "/a?x=1", "/blog/1", "/blog/2", "/t/red/1", "/t/blue/1"}
	cases := []struct {
		name   string
		purge  Purge
		purged map[string][]string // tenant → paths that must miss; all others hit
	}{
		{"exact URL with host", Purge{Tenant: "acme", URLs: []string{"https://acme.example/a"}},
			map[string][]string{"acme": {"/a"}}},
		{"exact URL with query, no host", Purge{Tenant: "acme", URLs: []string{"/a?x=1"}},
			map[string][]string{"acme": {"/a?x=1"}}},
		{"prefix", Purge{Tenant: "acme", Prefixes: []string{"acme.example/blog/"}},
			map[string][]string{"acme": {"/blog/1", "/blog/2"}}},
		{"tag", Purge{Tenant: "acme", Tags: []string{"red"}},
			map[string][]string{"acme": {"/t/red/1"}}},
		{"tag across tenants", Purge{Tags: []string{"blue"}},
			map[string][]string{"acme": {"/t/blue/1"}, "globex": {"/t/blue/1"}}},
		{"host tag", Purge{Tags: []string{"globex.example"}},
			map[string][]string{"globex": paths}},
		{"whole tenant", Purge{Tenant: "globex", All: true},
			map[string][]string{"globex": paths}},
		{"everything", Purge{All: true},
			map[string][]string{"acme": paths, "globex": paths}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fx := newPurgeFixture(t)
			fx.warm(t, "acme", paths...)
			fx.warm(t, "globex", paths...)
			if err := fx.c.ApplyPurge(tc.purge); err != nil {
				t.Fatal(err)
			}
			for _, tenant := range []string{"acme", "globex"} {
				for _, p := range paths {
					want := "edge; hit"
					for _, q := range tc.purged[tenant] {
						if q == p {
							want = "edge; fwd=miss; stored"
						}
					}
					if got := fx.status(t, tenant, p); got != want {
						t.Errorf("%s %s: Cache-Status %q, want %q", tenant, p, got, want)
					}
				}
			}
		})
	}
}

func TestPurgeSoftServesStaleWhileRevalidating(t *testing.T) {
	fx := newPurgeFixture(t)
	fx.warm(t, "acme", "/soft")
	if err := fx.c.ApplyPurge(Purge{Tenant: "acme", URLs: []string{"/soft"}, Soft: true}); err != nil {
		t.Fatal(err)
	}
	r := fx.fronts["acme"].get(t, "/soft")
	wantStatus(t, r, 200, "edge; hit; detail=stale")
	if r.body != "/soft #1" {
		t.Fatalf("soft purge served %q, want the old body", r.body)
	}
	// The background revalidation (the origin answers 200 here) replaces it.
	testkit.Eventually(t, 15*time.Second, "revalidated object", func() bool {
		r := fx.fronts["acme"].get(t, "/soft")
		return r.header.Get("Cache-Status") == "edge; hit" && r.body == "/soft #2"
	})
}

func TestPurgeHardAfterSoft(t *testing.T) {
	fx := newPurgeFixture(t)
	fx.warm(t, "acme", "/x")
	must(t, fx.c.ApplyPurge(Purge{Index: 10, Tenant: "acme", All: true, Soft: true}))
	must(t, fx.c.ApplyPurge(Purge{Index: 11, Tenant: "acme", URLs: []string{"/x"}}))
	wantStatus(t, fx.fronts["acme"].get(t, "/x"), 200, "edge; fwd=miss; stored")
}

func TestPurgeNeverCachedURL(t *testing.T) {
	fx := newPurgeFixture(t)
	if err := fx.c.ApplyPurge(Purge{Tenant: "acme", URLs: []string{"https://acme.example/never"}}); err != nil {
		t.Fatalf("purge of a URL never cached: %v", err)
	}
	if fx.c.PurgeIndex() != 1 {
		t.Fatalf("purge index %d, want 1", fx.c.PurgeIndex())
	}
	wantStatus(t, fx.fronts["acme"].get(t, "/never"), 200, "edge; fwd=miss; stored")
	wantStatus(t, fx.fronts["acme"].get(t, "/never"), 200, "edge; hit")
}

func TestPurgeReplayIgnored(t *testing.T) {
	fx := newPurgeFixture(t)
	must(t, fx.c.ApplyPurge(Purge{Index: 5, Tenant: "acme", All: true}))
	fx.warm(t, "acme", "/r")
	// A replayed older entry (e.g. after a restart) must not purge again.
	must(t, fx.c.ApplyPurge(Purge{Index: 5, Tenant: "acme", All: true}))
	must(t, fx.c.ApplyPurge(Purge{Index: 3, Tenant: "acme", All: true}))
	wantStatus(t, fx.fronts["acme"].get(t, "/r"), 200, "edge; hit")
}

func TestPurgeInFlightFetchIsPurged(t *testing.T) {
	// An object whose fetch began before a purge must not survive it.
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprintf(w, "#%d", n)
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "acme"})
	done := make(chan response)
	go func() { done <- f.get(t, "/slow") }()
	testkit.Eventually(t, 5*time.Second, "fetch to start", func() bool { return o.hits.Load() == 1 })
	must(t, c.ApplyPurge(Purge{Tenant: "acme", All: true}))
	close(release)
	<-done
	if r := f.get(t, "/slow"); r.body != "#2" {
		t.Fatalf("object fetched across a purge was served: %q (%s)", r.body, r.header.Get("Cache-Status"))
	}
}

func TestPurgeValidate(t *testing.T) {
	bad := []Purge{
		{Tenant: "acme"},
		{URLs: []string{""}},
		{URLs: []string{"ftp://host/x"}},
		{Prefixes: []string{"https:///nohost"}},
		{Tags: []string{"two words"}},
		{Tags: []string{""}},
	}
	for _, p := range bad {
		err := p.Validate()
		if !errors.Is(err, ErrNoSelector) && !errors.Is(err, ErrBadSelector) {
			t.Errorf("%+v: Validate() = %v, want a selector error", p, err)
		}
	}
	c := newCache(t, Config{})
	if err := c.ApplyPurge(Purge{}); err == nil {
		t.Error("ApplyPurge accepted a purge without selectors")
	}
	good := Purge{URLs: []string{"https://h/x?y", "h/x", "/x"}, Prefixes: []string{"/"}, Tags: []string{"k"}}
	if err := good.Validate(); err != nil {
		t.Errorf("good purge: %v", err)
	}
}

func TestPurgeRecordsBounded(t *testing.T) {
	fx := newPurgeFixture(t)
	fx.c.purges.limit = 16
	fx.warm(t, "acme", "/keep")
	for i := range 100 {
		must(t, fx.c.ApplyPurge(Purge{Tenant: "acme", URLs: []string{fmt.Sprintf("/p%d", i)}}))
	}
	v, _ := fx.c.purges.tenants.Load("acme")
	if n := len(*v.(interface{ Load() *[]*record }).Load()); n > 16 {
		t.Fatalf("%d records kept, want at most 16", n)
	}
	// Collapsing over-purges (safe): /keep is now a miss.
	wantStatus(t, fx.fronts["acme"].get(t, "/keep"), 200, "edge; fwd=miss")
	must(t, fx.c.ApplyPurge(Purge{Tenant: "acme", All: true}))
	if n := len(*v.(interface{ Load() *[]*record }).Load()); n != 1 {
		t.Fatalf("%d records after a tenant purge, want 1", n)
	}
}

func TestPurgeMatchDryRun(t *testing.T) {
	fx := newPurgeFixture(t)
	fx.warm(t, "acme", "/blog/1", "/blog/2", "/other")
	n, err := fx.c.Match(Purge{Tenant: "acme", Prefixes: []string{"/blog/"}})
	if err != nil || n != 2 {
		t.Fatalf("Match = %d, %v; want 2", n, err)
	}
	wantStatus(t, fx.fronts["acme"].get(t, "/blog/1"), 200, "edge; hit") // a dry run purges nothing
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
