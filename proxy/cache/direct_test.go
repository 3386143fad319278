package cache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testsvc"
)

// passOrigin answers by path, with what makes a response unstorable; once
// storable is set, /flip and /etag answer with a storable response. It
// sends no Date, so that the injected clock alone decides ages.
func passOrigin(t *testing.T, storable *atomic.Bool) *origin {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		h := w.Header()
		h["Date"] = nil
		switch r.URL.Path {
		case "/private":
			h.Set("Cache-Control", "private, max-age=60")
		case "/cookie":
			h.Set("Cache-Control", "max-age=60")
			h.Set("Set-Cookie", "session=1")
		case "/404":
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNotFound)
		case "/flip":
			if storable.Load() {
				h.Set("Cache-Control", "max-age=60")
			} else {
				h.Set("Cache-Control", "no-store")
			}
		case "/etag":
			if storable.Load() {
				// Stale at once but validated: stored, and revalidated
				// on every use.
				h.Set("Cache-Control", "no-cache")
				h.Set("Etag", `"v1"`)
			} else {
				h.Set("Cache-Control", "no-store")
			}
		case "/vary":
			h.Set("Vary", "Accept-Language")
			if r.Header.Get("Accept-Language") == "en" {
				h.Set("Cache-Control", "max-age=10")
			} else {
				h.Set("Cache-Control", "no-store")
			}
		default: // /nostore and the rest
			h.Set("Cache-Control", "no-store")
		}
		if r.Header.Get("Range") != "" {
			h.Set("Content-Range", "bytes 0-1/4")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = io.WriteString(w, "bo")
			return
		}
		_, _ = io.WriteString(w, "body")
	})
}

// passedFields are the fields Passed documents that it reads; the direct
// path hands it those alone.
var passedFields = []string{"Cache-Control", "Expires", "Date", "Last-Modified", "Etag", "Set-Cookie", "Vary", "Content-Encoding"}

// directFront is the proxy's direct path as the cache sees it: PassMarked,
// Fetching, the client's request sent to the origin as it is (as
// Request.Pass sends it), and Passed with the documented fields.
type directFront struct {
	c    *Cache
	req  Request
	pass passTo
}

func newDirectFront(c *Cache, o *origin, req Request) (*directFront, Request) {
	base, _ := url.Parse(o.srv.URL)
	p := passTo{base: base, tr: &http.Transport{DisableCompression: true}}
	req.Pass = p
	return &directFront{c: c, req: req, pass: p}, req
}

func clientRequest(method, path string, hdr ...string) *http.Request {
	r := httptest.NewRequest(method, path, nil)
	r.Host = "www.example.com"
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

func (d *directFront) marked(method, path string, hdr ...string) bool {
	_, ok := d.c.PassMarked(clientRequest(method, path, hdr...), d.req)
	return ok
}

// get serves a GET the direct way; ok is false when PassMarked declined
// (nothing was fetched).
func (d *directFront) get(t *testing.T, path string, hdr ...string) (r response, ok bool) {
	t.Helper()
	req := clientRequest(http.MethodGet, path, hdr...)
	mark, ok := d.c.PassMarked(req, d.req)
	if !ok {
		return response{}, false
	}
	mark.Fetching()
	resp, err := d.pass.FetchPass(req)
	if err != nil {
		t.Fatalf("origin: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("origin body: %v", err)
	}
	h := http.Header{}
	for _, k := range passedFields {
		if v, ok := resp.Header[k]; ok {
			h[k] = v
		}
	}
	status := mark.Passed(resp.StatusCode, h, resp.ContentLength, req.Header.Get("Authorization") != "")
	out := resp.Header.Clone()
	out.Set("Cache-Status", status)
	return response{code: resp.StatusCode, header: out, body: string(b)}, true
}

func (d *directFront) mustGet(t *testing.T, path string, hdr ...string) response {
	t.Helper()
	r, ok := d.get(t, path, hdr...)
	if !ok {
		t.Fatalf("GET %s %v: not marked", path, hdr)
	}
	return r
}

// counters are the Stats a pass moves.
type counters struct {
	L1, L2, L3                            TierStats
	HitForMiss, Coalesced, Stale, Fetches int64
}

func countersOf(c *Cache) counters {
	s := c.Stats()
	return counters{s.L1, s.L2, s.L3, s.HitForMiss, s.Coalesced, s.Stale, s.OriginFetches}
}

func (a counters) minus(b counters) counters {
	sub := func(x, y TierStats) TierStats {
		return TierStats{x.Hits - y.Hits, x.Misses - y.Misses, x.Stores - y.Stores, x.Errors - y.Errors, x.DroppedWrites - y.DroppedWrites}
	}
	return counters{sub(a.L1, b.L1), sub(a.L2, b.L2), sub(a.L3, b.L3),
		a.HitForMiss - b.HitForMiss, a.Coalesced - b.Coalesced, a.Stale - b.Stale, a.Fetches - b.Fetches}
}

func TestPassMarked(t *testing.T) {
	var storable atomic.Bool
	o := passOrigin(t, &storable)
	c := newCache(t, Config{})
	d, req := newDirectFront(c, o, Request{Tenant: "t1"})
	f := newFront(t, c, o.srv.URL, req)

	if d.marked("GET", "/nostore") {
		t.Fatal("marked before any request")
	}
	wantStatus(t, f.get(t, "/nostore"), 200, "edge; fwd=miss; detail=no-store")
	if !d.marked("GET", "/nostore") {
		t.Fatal("not marked after a no-store response")
	}
	for _, tc := range []struct {
		name, method, path string
		hdr                []string
	}{
		{"POST", "POST", "/nostore", nil},
		{"HEAD", "HEAD", "/nostore", nil},
		{"authorized", "GET", "/nostore", []string{"Authorization", "Bearer x"}},
		{"another path", "GET", "/other", nil},
		{"another query", "GET", "/nostore?a=1", nil},
	} {
		if d.marked(tc.method, tc.path, tc.hdr...) {
			t.Errorf("%s: marked", tc.name)
		}
	}
	// Serve bypasses an authorized request with its own Cache-Status.
	wantStatus(t, f.get(t, "/nostore", "Authorization", "Bearer x"), 200, "edge; fwd=bypass; detail=authorization")

	for name, other := range map[string]Request{
		"another tenant":  {Tenant: "t2"},
		"another host":    {Tenant: "t1", Host: "other.example.com"},
		"another variant": {Tenant: "t1", Variant: "fr"},
		"https":           {Tenant: "t1", Scheme: "https"},
	} {
		if _, ok := c.PassMarked(clientRequest("GET", "/nostore"), other); ok {
			t.Errorf("%s: marked", name)
		}
	}
	authOK := req
	authOK.Policy.CacheAuthorized = true
	if _, ok := c.PassMarked(clientRequest("GET", "/nostore", "Authorization", "Bearer x"), authOK); !ok {
		t.Error("authorized request not marked under a policy that caches them")
	}

	// A stored response is no mark.
	storable.Store(true)
	wantStatus(t, f.get(t, "/flip"), 200, "edge; fwd=miss; stored")
	if d.marked("GET", "/flip") {
		t.Fatal("a stored response is marked")
	}
}

func TestPassMarkedFollowsVary(t *testing.T) {
	clk := newFakeClock()
	o := passOrigin(t, new(atomic.Bool))
	c := newCache(t, Config{Now: clk.Now})
	d, req := newDirectFront(c, o, Request{Tenant: "t1"})
	f := newFront(t, c, o.srv.URL, req)

	wantStatus(t, f.get(t, "/vary", "Accept-Language", "en"), 200, "edge; fwd=miss; stored")
	wantStatus(t, f.get(t, "/vary", "Accept-Language", "fr"), 200, "edge; fwd=miss; detail=no-store")
	for lang, want := range map[string]bool{"en": false, "fr": true, "de": false} {
		if got := d.marked("GET", "/vary", "Accept-Language", lang); got != want {
			t.Errorf("%s: marked %v, want %v", lang, got, want)
		}
	}
	wantStatus(t, f.get(t, "/vary", "Accept-Language", "en"), 200, "edge; hit")
	if r := d.mustGet(t, "/vary", "Accept-Language", "fr"); r.header.Get("Cache-Status") != "edge; fwd=miss; detail=no-store" {
		t.Fatalf("direct fr: Cache-Status %q", r.header.Get("Cache-Status"))
	}
	wantStatus(t, f.get(t, "/vary", "Accept-Language", "fr"), 200, "edge; fwd=miss; detail=no-store")

	t.Run("expired Vary marker", func(t *testing.T) {
		clk.Advance(11 * time.Second) // past en's max-age=10: the marker is dead, fr's mark is not
		before := countersOf(c)
		marked := d.marked("GET", "/vary", "Accept-Language", "fr")
		wantStatus(t, f.get(t, "/vary", "Accept-Language", "fr"), 200, "edge; fwd=miss; detail=no-store")
		if filled := countersOf(c).minus(before).HitForMiss == 1; marked && filled {
			t.Fatal("PassMarked reported a mark Serve did not pass under (it filled and set a new mark)")
		}
	})
}

// TestPassedMatchesServe: for the origin answers a hit-for-miss key gets,
// the direct path's Cache-Status and counters are Serve's.
func TestPassedMatchesServe(t *testing.T) {
	o := passOrigin(t, new(atomic.Bool))
	c := newCache(t, Config{})
	d, req := newDirectFront(c, o, Request{Tenant: "t1"})
	f := newFront(t, c, o.srv.URL, req)
	for _, tc := range []struct {
		path   string
		hdr    []string
		code   int
		status string
	}{
		{"/nostore", nil, 200, "edge; fwd=miss; detail=no-store"},
		{"/private", nil, 200, "edge; fwd=miss; detail=private"},
		{"/cookie", nil, 200, "edge; fwd=miss; detail=set-cookie"},
		{"/404", nil, 404, "edge; fwd=miss; fwd-status=404; detail=no-store"},
		{"/nostore", []string{"Range", "bytes=0-1"}, 206, "edge; fwd=miss; fwd-status=206; detail=status"},
	} {
		t.Run(tc.path+" "+tc.status, func(t *testing.T) {
			if !d.marked("GET", tc.path) {
				f.get(t, tc.path) // the fill sets the mark
			}
			before := countersOf(c)
			dr := d.mustGet(t, tc.path, tc.hdr...)
			direct := countersOf(c).minus(before)
			before = countersOf(c)
			sr := f.get(t, tc.path, tc.hdr...)
			served := countersOf(c).minus(before)
			if ds, ss := dr.header.Get("Cache-Status"), sr.header.Get("Cache-Status"); ds != ss || ss != tc.status {
				t.Fatalf("Cache-Status: direct %q, Serve %q, want %q", ds, ss, tc.status)
			}
			if dr.code != tc.code || sr.code != tc.code || dr.body != sr.body {
				t.Fatalf("direct %d %q, Serve %d %q", dr.code, dr.body, sr.code, sr.body)
			}
			if direct != served {
				t.Fatalf("counters moved by the direct path %+v, by Serve %+v", direct, served)
			}
			if direct.Fetches != 1 || direct.L1.Misses != 1 || direct.HitForMiss != 0 {
				t.Fatalf("direct path counted %+v", direct)
			}
			if !d.marked("GET", tc.path) {
				t.Fatal("the mark is gone")
			}
		})
	}
}

// TestPassedDropsMarkWhenStorable: once the origin allows storing, Passed
// drops the mark as Serve does: the next request fills, the one after
// hits.
func TestPassedDropsMarkWhenStorable(t *testing.T) {
	for _, path := range []string{"/flip", "/etag"} {
		t.Run(path, func(t *testing.T) {
			for _, direct := range []bool{false, true} {
				var storable atomic.Bool
				o := passOrigin(t, &storable)
				c := newCache(t, Config{})
				d, req := newDirectFront(c, o, Request{Tenant: "t1"})
				f := newFront(t, c, o.srv.URL, req)
				wantStatus(t, f.get(t, path), 200, "edge; fwd=miss; detail=no-store")
				storable.Store(true)
				var r response
				if direct {
					r = d.mustGet(t, path)
				} else {
					r = f.get(t, path)
				}
				if cs := r.header.Get("Cache-Status"); cs != "edge; fwd=miss" {
					t.Fatalf("direct %v: Cache-Status %q once storable, want edge; fwd=miss", direct, cs)
				}
				if d.marked("GET", path) {
					t.Fatalf("direct %v: still marked", direct)
				}
				wantStatus(t, f.get(t, path), 200, "edge; fwd=miss; stored")
				if path == "/flip" {
					wantStatus(t, f.get(t, path), 200, "edge; hit")
				}
			}
		})
	}
}

// TestPassedRenewsMark: a mark past half its life is renewed by a pass,
// as Serve renews it; a younger one is not, and expires.
func TestPassedRenewsMark(t *testing.T) {
	for _, direct := range []bool{true, false} {
		clk := newFakeClock()
		o := passOrigin(t, new(atomic.Bool))
		c := newCache(t, Config{Now: clk.Now})
		d, req := newDirectFront(c, o, Request{Tenant: "t1"})
		f := newFront(t, c, o.srv.URL, req)
		pass := func(path string) {
			t.Helper()
			if direct {
				d.mustGet(t, path)
			} else {
				wantStatus(t, f.get(t, path), 200, "edge; fwd=miss; detail=no-store")
			}
		}
		wantStatus(t, f.get(t, "/nostore"), 200, "edge; fwd=miss; detail=no-store")
		wantStatus(t, f.get(t, "/young"), 200, "edge; fwd=miss; detail=no-store")
		if n := c.Stats().HitForMiss; n != 2 {
			t.Fatalf("HitForMiss %d after two fills", n)
		}
		clk.Advance(hitForMissTTL / 4)
		pass("/young") // not past half its life: kept as it is
		pass("/nostore")
		if n := c.Stats().HitForMiss; n != 2 {
			t.Fatalf("direct %v: HitForMiss %d, want 2 (no renewal before half-life)", direct, n)
		}
		clk.Advance(hitForMissTTL/4 + time.Second)
		pass("/nostore") // past half its life: renewed
		if n := c.Stats().HitForMiss; n != 3 {
			t.Fatalf("direct %v: HitForMiss %d, want 3 (renewed)", direct, n)
		}
		clk.Advance(hitForMissTTL / 2) // past the first marks' end
		if !d.marked("GET", "/nostore") {
			t.Fatalf("direct %v: renewed mark expired", direct)
		}
		if d.marked("GET", "/young") {
			t.Fatalf("direct %v: a mark outlived hitForMissTTL", direct)
		}
	}
}

// TestPassCountersWithTiers: with L2 and L3 configured, Fetching counts
// the misses Serve's lookup counts for a marked key: L2 always, L3 for a
// request that persists.
func TestPassCountersWithTiers(t *testing.T) {
	redisAddr, _ := testsvc.Redis(t)
	endpoint, bucket, ak, sk := testsvc.S3(t)
	o := passOrigin(t, new(atomic.Bool))
	c := newCache(t, Config{
		Redis: &RedisConfig{Addr: redisAddr, Timeout: time.Second},
		S3:    &S3Config{Bucket: bucket, Endpoint: endpoint, PathStyle: true, AccessKey: ak, SecretKey: sk, Timeout: time.Second},
	})
	for _, persist := range []bool{false, true} {
		d, req := newDirectFront(c, o, Request{Tenant: "t1", Variant: "v", Persist: persist})
		f := newFront(t, c, o.srv.URL, req)
		path := "/nostore?persist=" + map[bool]string{false: "no", true: "yes"}[persist]
		wantStatus(t, f.get(t, path), 200, "edge; fwd=miss; detail=no-store")
		before := countersOf(c)
		d.mustGet(t, path)
		direct := countersOf(c).minus(before)
		before = countersOf(c)
		wantStatus(t, f.get(t, path), 200, "edge; fwd=miss; detail=no-store")
		served := countersOf(c).minus(before)
		if direct != served {
			t.Fatalf("persist %v: direct path moved %+v, Serve %+v", persist, direct, served)
		}
		want := counters{L1: TierStats{Misses: 1}, L2: TierStats{Misses: 1}, Fetches: 1}
		if persist {
			want.L3.Misses = 1
		}
		if direct != want {
			t.Fatalf("persist %v: direct path moved %+v, want %+v", persist, direct, want)
		}
	}
}
