package cache

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTargetedCacheControl: Edge-Cache-Control, then CDN-Cache-Control,
// govern storing and reuse over Cache-Control and Expires (RFC 9213), an
// invalid one is ignored, and neither reaches clients unless the tenant
// keeps CDN-Cache-Control.
func TestTargetedCacheControl(t *testing.T) {
	clk := newFakeClock()
	static := func(hdr ...string) func(w http.ResponseWriter, r *http.Request, n int64) {
		return func(w http.ResponseWriter, r *http.Request, n int64) {
			for i := 0; i+1 < len(hdr); i += 2 {
				w.Header().Add(hdr[i], hdr[i+1])
			}
			_, _ = io.WriteString(w, "body")
		}
	}
	// sent checks what the client got of the caching fields.
	sent := func(want ...string) func(t *testing.T, r response, _ *origin) {
		return func(t *testing.T, r response, _ *origin) {
			t.Helper()
			for i := 0; i+1 < len(want); i += 2 {
				if got := strings.Join(r.header.Values(want[i]), ", "); got != want[i+1] {
					t.Errorf("%s = %q, want %q", want[i], got, want[i+1])
				}
			}
		}
	}
	cases := []struct {
		name   string
		origin func(w http.ResponseWriter, r *http.Request, n int64)
		policy Policy
		steps  []step
	}{
		{
			name:   "CDN-Cache-Control max-age stores over Cache-Control no-store",
			origin: static("Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60"),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1,
					check: sent("Cache-Control", "no-store", "CDN-Cache-Control", "")},
				{advance: 59 * time.Second, wantCS: "edge; hit", wantOrigin: 1,
					check: sent("Cache-Control", "no-store", "CDN-Cache-Control", "")},
				{advance: 2 * time.Second, wantCS: "edge; fwd=miss; stored", wantOrigin: 2},
			},
		},
		{
			name:   "CDN-Cache-Control no-store wins over Cache-Control max-age",
			origin: static("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-store"),
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=no-store", wantOrigin: 1,
					check: sent("Cache-Control", "max-age=60", "CDN-Cache-Control", "")},
				{wantCS: "edge; fwd=miss", wantOrigin: 2},
			},
		},
		{
			name:   "CDN-Cache-Control private is not stored",
			origin: static("Cache-Control", "public, max-age=60", "CDN-Cache-Control", "private"),
			steps:  []step{{wantCS: "edge; fwd=miss; detail=private", wantOrigin: 1}},
		},
		{
			name:   "CDN-Cache-Control no-cache revalidates every use",
			origin: static("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=60, no-cache", "ETag", `"v"`),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{wantCS: "edge; fwd=stale", wantOrigin: 2},
			},
		},
		{
			name:   "CDN-Cache-Control ignores Expires",
			origin: static("Expires", "Thu, 01 Jan 1970 00:00:00 GMT", "CDN-Cache-Control", "s-maxage=60"),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 30 * time.Second, wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name: "CDN-Cache-Control stale-if-error over Cache-Control must-revalidate",
			origin: func(w http.ResponseWriter, r *http.Request, n int64) {
				if n > 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.Header().Set("Cache-Control", "max-age=1, must-revalidate")
				w.Header().Set("CDN-Cache-Control", "max-age=1, stale-if-error=60")
				_, _ = io.WriteString(w, "body")
			},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{advance: 10 * time.Second, wantCS: "edge; fwd=stale; fwd-status=503; detail=stale-if-error", wantOrigin: 2, wantBody: "body"},
			},
		},
		{
			name:   "a max-age that is not an Integer is stale",
			origin: static("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=1.5"),
			steps:  []step{{wantCS: "edge; fwd=miss; detail=stale", wantOrigin: 1}},
		},
		{
			name:   "an invalid CDN-Cache-Control is ignored: Cache-Control governs",
			origin: static("Cache-Control", "no-store", "CDN-Cache-Control", "Max-Age=60"),
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=no-store", wantOrigin: 1, check: sent("CDN-Cache-Control", "")},
			},
		},
		{
			name:   "an empty CDN-Cache-Control is ignored",
			origin: static("Cache-Control", "max-age=60", "CDN-Cache-Control", " "),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1},
				{wantCS: "edge; hit", wantOrigin: 1},
			},
		},
		{
			name: "Edge-Cache-Control wins over CDN-Cache-Control; neither is sent",
			origin: static("Cache-Control", "no-store", "CDN-Cache-Control", "no-store",
				"Edge-Cache-Control", "max-age=60"),
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1,
					check: sent("CDN-Cache-Control", "", "Edge-Cache-Control", "", "Cache-Control", "no-store")},
				{wantCS: "edge; hit", wantOrigin: 1, check: sent("CDN-Cache-Control", "", "Edge-Cache-Control", "")},
			},
		},
		{
			name:   "an invalid Edge-Cache-Control falls to CDN-Cache-Control",
			origin: static("Edge-Cache-Control", "max-age=60,", "CDN-Cache-Control", "no-store", "Cache-Control", "max-age=60"),
			steps:  []step{{wantCS: "edge; fwd=miss; detail=no-store", wantOrigin: 1}},
		},
		{
			name:   "KeepCDNCacheControl relays CDN-Cache-Control, never Edge-Cache-Control",
			origin: static("CDN-Cache-Control", "max-age=60", "Edge-Cache-Control", "max-age=30"),
			policy: Policy{KeepCDNCacheControl: true},
			steps: []step{
				{wantCS: "edge; fwd=miss; stored", wantOrigin: 1,
					check: sent("CDN-Cache-Control", "max-age=60", "Edge-Cache-Control", "")},
				{advance: 20 * time.Second, wantCS: "edge; hit", wantOrigin: 1,
					check: sent("CDN-Cache-Control", "max-age=60", "Edge-Cache-Control", "")},
				{advance: 11 * time.Second, wantCS: "edge; fwd=miss; stored", wantOrigin: 2}, // Edge's 30 s governed
			},
		},
		{
			name:   "KeepCDNCacheControl on a response not stored",
			origin: static("CDN-Cache-Control", "no-store"),
			policy: Policy{KeepCDNCacheControl: true},
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=no-store", wantOrigin: 1, check: sent("CDN-Cache-Control", "no-store")},
			},
		},
		{
			name:   "Surrogate-Control is not honoured, and not sent",
			origin: static("Cache-Control", "no-store", "Surrogate-Control", "max-age=60"),
			steps: []step{
				{wantCS: "edge; fwd=miss; detail=no-store", wantOrigin: 1, check: sent("Surrogate-Control", "")},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runSteps(t, clk, tc.origin, tc.policy, tc.steps)
		})
	}
}

func TestParseTargeted(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want cacheControl
	}{
		{"max-age=60", true, cacheControl{maxAge: time.Minute, sMaxAge: -1, swr: -1, sie: -1, any: true}},
		{"  max-age=60 ,\tprivate ", true, cacheControl{maxAge: time.Minute, sMaxAge: -1, swr: -1, sie: -1, private: true, any: true}},
		{"no-store=?0, public;x=1", true, cacheControl{maxAge: -1, sMaxAge: -1, swr: -1, sie: -1, public: true, any: true}},
		{`no-cache=("set-cookie"), s-maxage=10`, true, cacheControl{maxAge: -1, sMaxAge: 10 * time.Second, swr: -1, sie: -1, noCache: true, any: true}},
		{"max-age=10, max-age=20", true, cacheControl{maxAge: 20 * time.Second, sMaxAge: -1, swr: -1, sie: -1, any: true}}, // last wins
		{`max-age="60"`, true, cacheControl{maxAge: 0, sMaxAge: -1, swr: -1, sie: -1, any: true}},
		{"stale-if-error=-1", true, cacheControl{maxAge: -1, sMaxAge: -1, swr: -1, sie: -1, any: true}},
		{"Max-Age=60", false, cacheControl{}},
		{"max-age=60,", false, cacheControl{}},
		{"max-age=60;", false, cacheControl{}},
		{"max-age=1234567890123456", false, cacheControl{}},
		{`no-cache="a`, false, cacheControl{}},
		{"", false, cacheControl{}},
	} {
		got, ok := parseTargeted([]string{tc.in})
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("%q = %+v %v, want %+v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseTargeted: no input panics, leading and trailing spaces do not
// matter (RFC 8941 section 4.2), and splitting a valid value over two
// field lines at a member boundary means the same.
func FuzzParseTargeted(f *testing.F) {
	for _, s := range []string{"max-age=60", "no-store, max-age=1;a=?1", `no-cache=("a" b);q=1.5, private`, "*x=:AAA=:", "max-age=60,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseTargeted([]string{s})
		got2, ok2 := parseTargeted([]string{"  " + s + " "})
		if strings.TrimLeft(s, " ") == s && strings.TrimRight(s, " ") == s && (ok != ok2 || got != got2) {
			t.Fatalf("%q: %+v %v, padded %+v %v", s, got, ok, got2, ok2)
		}
		if ok && !strings.ContainsAny(s, `"()`) {
			if a, b, cut := strings.Cut(s, ","); cut {
				if split, ok3 := parseTargeted([]string{a, b}); !ok3 || split != got {
					t.Fatalf("%q split: %+v %v, want %+v", s, split, ok3, got)
				}
			}
		}
	})
}
