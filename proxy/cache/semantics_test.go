package cache

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/klauspost/compress/gzip"
)

// step is one client request in a semantics scenario.
type step struct {
	advance    time.Duration // move the clock first
	method     string        // default GET
	hdr        []string      // request header pairs
	wantCode   int           // default 200
	wantCS     string        // Cache-Status prefix
	wantOrigin int64         // origin requests so far
	wantBody   string        // when set
	check      func(t *testing.T, r response, o *origin)
}

func TestSemantics(t *testing.T) {
	clk := newFakeClock()
	httpDate := func(d time.Duration) string { return clk.Now().Add(d).UTC().Format(http.TimeFormat) }
	static := func(hdr ...string) func(w http.ResponseWriter, r *http.Request, n int64) {
		return func(w http.ResponseWriter, r *http.Request, n int64) {
			for i := 0; i+1 < len(hdr); i += 2 {
				w.Header().Add(hdr[i], hdr[i+1])
			}
			_, _ = io.WriteString(w, "body")
		}
	}
	validated := func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, "body")
	}
	cases := []struct {
		name   string
		origin func(w http.ResponseWriter, r *http.Request, n int64)
		policy Policy
		steps  []step
	}{
		{
			name:   "max-age fresh then stale without validator refetches",
			origin: static("Cache-Control", "max-age=60"),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1, wantBody: "body"},
				{advance: 30 * time.Second, wantCS: "edge; hit", wantOrigin: 1, wantBody: "body",
					check: func(t *testing.T, r response, _ *origin) {
						if r.header.Get("Age") != "30" {
							t.Errorf("Age = %q, want 30", r.header.Get("Age"))
						}
					}},
				{advance: 31 * time.Second, wantCS: "edge; fwd=miss; stored", wantOrigin: 2}, // no validator: dead once stale
				{wantCS: "edge; hit", wantOrigin: 2},
			},
		},
		{
			name:   "no-store is never stored",
			origin: static("Cache-Control", "no-store"),
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=no-store", wantOrigin: 1},
				{wantCS: "edge; fwd=miss; detail=no-store", wantOrigin: 2},
			},
		},
		{
			name:   "private is not stored by a shared cache",
			origin: static("Cache-Control", "private, max-age=60"),
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=private", wantOrigin: 1},
				{wantCS: "edge; fwd=miss", wantOrigin: 2},
			},
		},
		{
			name: "no-cache revalidates every time with the validator",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Cache-Control", "no-cache")
				w.Header().Set("ETag", `"v1"`)
				if r.Header.Get("If-None-Match") == `"v1"` {
					w.WriteHeader(http.StatusNotModified)
					return
				}
				_, _ = io.WriteString(w, "body")
			},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{wantCS: "edge; fwd=stale; fwd-status=304", wantOrigin: 2, wantBody: "body"},
			},
		},
		{
			name:   "s-maxage wins over max-age",
			origin: static("Cache-Control", "max-age=0, s-maxage=60"),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 59 * time.Second, wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name: "Expires relative to Date",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Date", httpDate(0))
				w.Header().Set("Expires", httpDate(60*time.Second))
				_, _ = io.WriteString(w, "body")
			},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 50 * time.Second, wantCS: "edge; hit", wantOrigin: 1},
				{advance: 11 * time.Second, wantCS: "edge; fwd=miss; stored", wantOrigin: 2},
			},
		},
		{
			name:   "Age from upstream shortens freshness",
			origin: static("Cache-Control", "max-age=60", "Age", "50"),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 5 * time.Second, wantCS: "edge; hit", wantOrigin: 1, check: func(t *testing.T, r response, _ *origin) {
					if r.header.Get("Age") != "55" {
						t.Errorf("Age = %q, want 55", r.header.Get("Age"))
					}
				}},
				{advance: 6 * time.Second, wantCS: "edge; fwd=miss; stored", wantOrigin: 2},
			},
		},
		{
			name:   "Set-Cookie is not stored by default",
			origin: static("Cache-Control", "max-age=60", "Set-Cookie", "s=1"),
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=set-cookie", wantOrigin: 1},
				{wantCS: "edge; fwd=miss", wantOrigin: 2},
			},
		},
		{
			name:   "Set-Cookie stored when allowed: the fetching client gets it, a hit does not",
			origin: static("Cache-Control", "max-age=60", "Set-Cookie", "s=1", "Set-Cookie", "t=2"),
			policy: Policy{CacheSetCookie: true},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1, check: func(t *testing.T, r response, _ *origin) {
					if got := strings.Join(r.header.Values("Set-Cookie"), "|"); got != "s=1|t=2" {
						t.Errorf("fetching client got Set-Cookie %q, want s=1|t=2", got)
					}
				}},
				{wantCS: "edge; hit", wantOrigin: 1, check: func(t *testing.T, r response, _ *origin) {
					if r.header.Get("Set-Cookie") != "" {
						t.Errorf("hit replayed Set-Cookie %q", r.header.Get("Set-Cookie"))
					}
				}},
			},
		},
		{
			name:   "Authorization bypasses the cache by default",
			origin: static("Cache-Control", "max-age=60"),
			steps: []step{
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "edge; fwd=bypass", wantOrigin: 1},
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "edge; fwd=bypass", wantOrigin: 2},
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 3},
			},
		},
		{
			name:   "Authorization with the policy: max-age alone is not shareable (RFC 9111 section 3.5)",
			origin: static("Cache-Control", "max-age=60"),
			policy: Policy{CacheAuthorized: true},
			steps: []step{
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "edge; fwd=miss; detail=authorization", wantOrigin: 1},
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "edge; fwd=miss; detail=authorization", wantOrigin: 2},
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 3},                                // anonymous: stored
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "edge; hit", wantOrigin: 3}, // and shared
			},
		},
		{
			name:   "Authorization with the policy: public is stored and shared",
			origin: static("Cache-Control", "public, max-age=60"),
			policy: Policy{CacheAuthorized: true},
			steps: []step{
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{hdr: []string{"Authorization", "Bearer y"}, wantCS: "edge; hit", wantOrigin: 1},
				{wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name:   "Authorization with the policy: s-maxage is stored",
			origin: static("Cache-Control", "s-maxage=60"),
			policy: Policy{CacheAuthorized: true},
			steps: []step{
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name:   "Authorization with the policy: must-revalidate is stored, never served stale",
			origin: static("Cache-Control", "max-age=60, must-revalidate, stale-if-error=600"),
			policy: Policy{CacheAuthorized: true},
			steps: []step{
				{hdr: []string{"Authorization", "Bearer x"}, wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{wantCS: "edge; hit", wantOrigin: 1},
				{advance: 61 * time.Second, wantCS: "edge; fwd=stale; stored", wantOrigin: 2}, // fetched, not served stale
			},
		},
		{
			name: "must-revalidate forbids stale-if-error",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				if n > 1 {
					w.WriteHeader(http.StatusInternalServerError)
					return
				}
				w.Header().Set("Cache-Control", "max-age=10, must-revalidate, stale-if-error=600")
				_, _ = io.WriteString(w, "body")
			},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 20 * time.Second, wantCode: 500, wantCS: "edge; fwd=stale; fwd-status=500", wantOrigin: 2},
			},
		},
		{
			name: "stale-if-error serves stale on a 5xx",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				if n > 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.Header().Set("Cache-Control", "max-age=10, stale-if-error=600")
				_, _ = io.WriteString(w, "body")
			},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 20 * time.Second, wantCS: "edge; fwd=stale; fwd-status=503; detail=stale-if-error", wantOrigin: 2, wantBody: "body"},
				{advance: 600 * time.Second, wantCode: 503, wantCS: "edge; fwd=miss; fwd-status=503", wantOrigin: 3}, // past the window
			},
		},
		{
			name:   "policy stale-if-error without the directive",
			policy: Policy{StaleIfError: time.Hour},
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				if n > 1 {
					w.WriteHeader(http.StatusBadGateway)
					return
				}
				w.Header().Set("Cache-Control", "max-age=10")
				_, _ = io.WriteString(w, "body")
			},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 20 * time.Second, wantCS: "edge; fwd=stale; fwd-status=502; detail=stale-if-error", wantOrigin: 2, wantBody: "body"},
			},
		},
		{
			name: "origin 304 refreshes the entry",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Cache-Control", "max-age=10")
				w.Header().Set("ETag", `"v1"`)
				w.Header().Set("X-Gen", strings.Repeat("x", int(n)))
				if r.Header.Get("If-None-Match") == `"v1"` {
					w.WriteHeader(http.StatusNotModified)
					return
				}
				_, _ = io.WriteString(w, "body")
			},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 11 * time.Second, wantCS: "edge; fwd=stale; fwd-status=304; stored", wantOrigin: 2, wantBody: "body",
					check: func(t *testing.T, r response, o *origin) {
						if got := o.lastRequest().Header.Get("If-None-Match"); got != `"v1"` {
							t.Errorf("revalidation If-None-Match = %q", got)
						}
						if r.header.Get("X-Gen") != "xx" {
							t.Errorf("304 headers not merged: X-Gen = %q", r.header.Get("X-Gen"))
						}
					}},
				{advance: 5 * time.Second, wantCS: "edge; hit", wantOrigin: 2, wantBody: "body"},
			},
		},
		{
			name:   "client conditionals answered with 304",
			origin: static("Cache-Control", "max-age=60", "ETag", `"abc"`, "Last-Modified", "Sun, 01 Feb 2026 10:00:00 GMT"),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{hdr: []string{"If-None-Match", `"zzz", "abc"`}, wantCode: 304, wantCS: "edge; hit", wantOrigin: 1, wantBody: ""},
				{hdr: []string{"If-None-Match", `"zzz"`}, wantCode: 200, wantCS: "edge; hit", wantOrigin: 1, wantBody: "body"},
				{hdr: []string{"If-Modified-Since", "Mon, 02 Feb 2026 10:00:00 GMT"}, wantCode: 304, wantCS: "edge; hit", wantOrigin: 1},
				{hdr: []string{"If-Modified-Since", "Sat, 31 Jan 2026 10:00:00 GMT"}, wantCode: 200, wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name:   "conditional miss is fetched unconditionally and stored",
			origin: static("Cache-Control", "max-age=60", "ETag", `"abc"`),
			steps: []step{
				{hdr: []string{"If-None-Match", `"abc"`}, wantCode: 304, wantCS: "edge; fwd=miss; stored", wantOrigin: 1,
					check: func(t *testing.T, _ response, o *origin) {
						if o.lastRequest().Header.Get("If-None-Match") != "" {
							t.Error("client validator forwarded on a miss")
						}
					}},
				{wantCS: "edge; hit", wantOrigin: 1, wantBody: "body"},
			},
		},
		{
			name:   "HEAD first fills with GET, HEAD served from GET entry",
			origin: static("Cache-Control", "max-age=60"),
			steps: []step{
				{method: http.MethodHead, wantCS: "edge; fwd=miss; stored", wantOrigin: 1, wantBody: "",
					check: func(t *testing.T, r response, o *origin) {
						if m := o.lastRequest().Method; m != http.MethodGet {
							t.Errorf("origin saw %s, want GET", m)
						}
						if r.header.Get("Content-Length") != "4" {
							t.Errorf("HEAD Content-Length = %q", r.header.Get("Content-Length"))
						}
					}},
				{wantCS: "edge; hit", wantOrigin: 1, wantBody: "body"},
				{method: http.MethodHead, wantCS: "edge; hit", wantOrigin: 1, wantBody: ""},
			},
		},
		{
			name:   "POST passes and invalidates",
			origin: static("Cache-Control", "max-age=60"),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{method: http.MethodPost, wantCS: "edge; fwd=method", wantOrigin: 2},
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 3},
			},
		},
		{
			name:   "default TTL without explicit freshness",
			origin: static(),
			policy: Policy{DefaultTTL: time.Minute},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 59 * time.Second, wantCS: "edge; hit", wantOrigin: 1},
				{advance: 2 * time.Second, wantCS: "edge; fwd=miss; stored", wantOrigin: 2},
			},
		},
		{
			name:   "override TTL replaces the origin's",
			origin: static("Cache-Control", "max-age=1"),
			policy: Policy{DefaultTTL: time.Hour, OverrideTTL: true},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 30 * time.Minute, wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name:   "no freshness and no validator is not stored",
			origin: static(),
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=no-freshness", wantOrigin: 1},
				{wantCS: "edge; fwd=miss", wantOrigin: 2},
			},
		},
		{
			name: "Expires with a one-digit hour is already expired",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Date", httpDate(0))
				w.Header().Set("Expires", strings.Replace(httpDate(time.Hour), " 13:", " 1:", 1)) // net/http.ParseTime takes it
				_, _ = io.WriteString(w, "body")
			},
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=stale", wantOrigin: 1},
				{wantCS: "edge; fwd=miss", wantOrigin: 2},
			},
		},
		{
			name: "two Expires lines are already expired",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Add("Expires", httpDate(time.Hour))
				w.Header().Add("Expires", httpDate(2*time.Hour))
				_, _ = io.WriteString(w, "body")
			},
			steps: []step{{wantCS: "edge; fwd=miss; detail=stale", wantOrigin: 1}},
		},
		{
			name: "Expires names in any case are accepted (RFC 9111 section 4.2)",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Date", httpDate(0))
				w.Header().Set("Expires", strings.Replace(httpDate(time.Minute), "GMT", "gMT", 1))
				_, _ = io.WriteString(w, "body")
			},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 30 * time.Second, wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name:   "Age list uses its first member",
			origin: static("Cache-Control", "max-age=3600", "Age", "7200, 0"),
			steps: []step{
				{wantOrigin: 1},
				{wantCS: "edge; fwd=miss", wantOrigin: 2}, // two hours old: never fresh here
			},
		},
		{
			name:   "an invalid Age is treated as stale",
			origin: static("Cache-Control", "max-age=3600", "Age", "+5"),
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=stale", wantOrigin: 1},
				{wantCS: "edge; fwd=miss", wantOrigin: 2},
			},
		},
		{
			name:   "max-age twice with different values is stale",
			origin: static("Cache-Control", "max-age=1", "Cache-Control", "max-age=1800"),
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=stale", wantOrigin: 1},
				{wantCS: "edge; fwd=miss", wantOrigin: 2},
			},
		},
		{
			name:   "max-age twice with the same value is that value",
			origin: static("Cache-Control", "max-age=60, max-age=60"),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 59 * time.Second, wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name: "302 without explicit freshness is not heuristically cacheable",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Location", "/x")
				w.WriteHeader(http.StatusFound)
			},
			policy: Policy{DefaultTTL: time.Minute},
			steps: []step{
				{wantCode: 302, wantCS: "edge; fwd=miss; fwd-status=302; detail=status", wantOrigin: 1},
				{wantCode: 302, wantCS: "edge; fwd=miss", wantOrigin: 2},
			},
		},
		{
			name: "404 cached under the default TTL",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				http.NotFound(w, r)
			},
			policy: Policy{DefaultTTL: time.Minute},
			steps: []step{
				{wantCode: 404, wantCS: "edge; fwd=miss; fwd-status=404; stored", wantOrigin: 1},
				{wantCode: 404, wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name: "Vary keeps variants apart and ignores Accept-Encoding",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Vary", "Accept-Language, Accept-Encoding")
				_, _ = io.WriteString(w, "lang="+r.Header.Get("Accept-Language"))
			},
			steps: []step{
				{hdr: []string{"Accept-Language", "en"}, wantCS: "edge; fwd=miss; stored", wantOrigin: 1, wantBody: "lang=en"},
				{hdr: []string{"Accept-Language", "fr"}, wantCS: "edge; fwd=miss; stored", wantOrigin: 2, wantBody: "lang=fr"},
				{hdr: []string{"Accept-Language", "en", "Accept-Encoding", "gzip"}, wantCS: "edge; hit", wantOrigin: 2, wantBody: "lang=en"},
				{hdr: []string{"Accept-Language", "fr"}, wantCS: "edge; hit", wantOrigin: 2, wantBody: "lang=fr"},
			},
		},
		{
			name:   "Vary: * is never stored",
			origin: static("Cache-Control", "max-age=60", "Vary", "*"),
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=vary", wantOrigin: 1},
			},
		},
		{
			name:   "client no-cache is ignored by default",
			origin: validated,
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{hdr: []string{"Cache-Control", "no-cache"}, wantCS: "edge; hit", wantOrigin: 1},
				{hdr: []string{"Pragma", "no-cache"}, wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name:   "client no-cache revalidates under Policy.ClientNoCache",
			origin: validated,
			policy: Policy{ClientNoCache: true},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{hdr: []string{"Cache-Control", "no-cache"}, wantCS: "edge; fwd=request; fwd-status=304; stored", wantOrigin: 2, wantBody: "body"},
				{wantCS: "edge; hit", wantOrigin: 2},
				{hdr: []string{"Cache-Control", "max-age=0"}, wantCS: "edge; fwd=request; fwd-status=304", wantOrigin: 3},
				{hdr: []string{"Pragma", "no-cache"}, wantCS: "edge; fwd=request; fwd-status=304", wantOrigin: 4},
				{hdr: []string{"Cache-Control", "max-age=30"}, wantCS: "edge; hit", wantOrigin: 4},
			},
		},
		{
			name:   "surrogate headers are not sent to clients",
			origin: static("Cache-Control", "max-age=60", "Surrogate-Key", "a b", "Cache-Tag", "c"),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1, check: func(t *testing.T, r response, _ *origin) {
					if r.header.Get("Surrogate-Key") != "" || r.header.Get("Cache-Tag") != "" {
						t.Errorf("surrogate headers leaked: %v", r.header)
					}
				}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runSteps(t, clk, tc.origin, tc.policy, tc.steps)
		})
	}
}

// runSteps runs one semantics scenario through a cache in front of a
// real origin: each step is a request for /page.
func runSteps(t *testing.T, clk *fakeClock, originFn func(w http.ResponseWriter, r *http.Request, n int64), policy Policy, steps []step) {
	t.Helper()
	o := newOrigin(t, originFn)
	c := newCache(t, Config{Now: clk.Now})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1", Policy: policy})
	for i, s := range steps {
		clk.Advance(s.advance)
		method := s.method
		if method == "" {
			method = http.MethodGet
		}
		r := f.do(t, method, "/page", s.hdr...)
		code := s.wantCode
		if code == 0 {
			code = http.StatusOK
		}
		if r.code != code {
			t.Fatalf("step %d: status %d, want %d (Cache-Status %q)", i, r.code, code, r.header.Get("Cache-Status"))
		}
		if cs := r.header.Get("Cache-Status"); !strings.HasPrefix(cs, s.wantCS) {
			t.Fatalf("step %d: Cache-Status %q, want prefix %q", i, cs, s.wantCS)
		}
		if n := o.hits.Load(); n != s.wantOrigin {
			t.Fatalf("step %d: origin requests %d, want %d", i, n, s.wantOrigin)
		}
		if (s.wantBody != "" || method == http.MethodHead || code == 304) && r.body != s.wantBody {
			t.Fatalf("step %d: body %q, want %q", i, r.body, s.wantBody)
		}
		if s.check != nil {
			s.check(t, r, o)
		}
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	clk := newFakeClock()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		_, _ = io.WriteString(w, strings.Repeat("v", int(n)))
	})
	c := newCache(t, Config{Now: clk.Now})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	wantStatus(t, f.get(t, "/swr"), 200, "edge; fwd=miss; stored")
	clk.Advance(20 * time.Second)
	r := f.get(t, "/swr")
	wantStatus(t, r, 200, "edge; hit; detail=stale")
	if r.body != "v" {
		t.Fatalf("stale body %q, want v", r.body)
	}
	testkit.Eventually(t, 5*time.Second, "background revalidation", func() bool {
		r := f.get(t, "/swr")
		return r.body == "vv" && r.header.Get("Cache-Status") == "edge; hit"
	})
	if n := o.hits.Load(); n != 2 {
		t.Fatalf("origin requests %d, want 2", n)
	}
	// Past the stale window the object is gone and the request waits.
	clk.Advance(100 * time.Second)
	wantStatus(t, f.get(t, "/swr"), 200, "edge; fwd=miss; stored")
}

func TestCompressedStorage(t *testing.T) {
	page := strings.Repeat("<p>hello compressible world</p>\n", 500)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("ETag", `"p1"`)
		_, _ = io.WriteString(w, page)
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	first := f.get(t, "/p", "Accept-Encoding", "gzip")
	wantStatus(t, first, 200, "edge; fwd=miss; stored")
	for _, ae := range []string{"gzip", "br, gzip;q=0.5", "*"} {
		r := f.get(t, "/p", "Accept-Encoding", ae)
		wantStatus(t, r, 200, "edge; hit")
		if r.header.Get("Content-Encoding") != "gzip" || r.header.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("AE %q: Content-Encoding %q Vary %q", ae, r.header.Get("Content-Encoding"), r.header.Get("Vary"))
		}
		if r.header.Get("ETag") != `W/"p1"` {
			t.Fatalf("gzip ETag %q, want weak", r.header.Get("ETag"))
		}
		zr, err := gzip.NewReader(strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(zr)
		if string(b) != page {
			t.Fatal("gzip body does not decompress to the page")
		}
		if len(r.body) >= len(page)/4 {
			t.Fatalf("gzip body %d bytes for a %d-byte page", len(r.body), len(page))
		}
	}
	for _, ae := range []string{"", "identity", "gzip;q=0", "br"} {
		r := f.get(t, "/p", "Accept-Encoding", ae)
		wantStatus(t, r, 200, "edge; hit")
		if r.header.Get("Content-Encoding") != "" || r.body != page || r.header.Get("ETag") != `"p1"` {
			t.Fatalf("AE %q: identity response wrong (CE %q, %d bytes)", ae, r.header.Get("Content-Encoding"), len(r.body))
		}
	}
	if o.hits.Load() != 1 {
		t.Fatalf("origin requests %d, want 1", o.hits.Load())
	}
}

func TestOriginGzipStoredAsIs(t *testing.T) {
	page := strings.Repeat("gzipped by the origin ", 300)
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	_, _ = zw.Write([]byte(page))
	_ = zw.Close()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(zbuf.Bytes())
			return
		}
		_, _ = io.WriteString(w, page)
	})
	c := newCache(t, Config{})
	f := newFront(t, c, o.srv.URL, Request{Tenant: "t1"})
	wantStatus(t, f.get(t, "/z", "Accept-Encoding", "gzip"), 200, "edge; fwd=miss; stored")
	r := f.get(t, "/z", "Accept-Encoding", "gzip")
	if r.body != zbuf.String() {
		t.Fatal("gzip client did not get the origin's gzip bytes")
	}
	r = f.get(t, "/z")
	wantStatus(t, r, 200, "edge; hit")
	if r.body != page || r.header.Get("Content-Length") != "6600" {
		t.Fatalf("identity client: %d bytes, Content-Length %q", len(r.body), r.header.Get("Content-Length"))
	}
}
