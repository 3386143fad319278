package cache

import (
	"net/http"
	"testing"
)

// TestCacheAuthorizedNotShared is issue 14's finding: with
// Policy.CacheAuthorized, a max-age=3600 response fetched with
// "Authorization: Bearer alice" was a hit for a request without
// Authorization and for Bearer bob. RFC 9111 section 3.5: it may be stored
// only when the origin marked it shareable; then everyone may have it.
func TestCacheAuthorizedNotShared(t *testing.T) {
	for _, tc := range []struct {
		cacheControl string
		shared       bool
	}{
		{"max-age=3600", false},
		{"private, max-age=3600", false},
		{"public, max-age=3600", true},
		{"s-maxage=3600", true},
		{"max-age=3600, must-revalidate", true},
	} {
		t.Run(tc.cacheControl, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request, _ int64) {
				w.Header().Set("Cache-Control", tc.cacheControl)
				w.Write([]byte("page for " + r.Header.Get("Authorization")))
			})
			f := newFront(t, newCache(t, Config{}), o.srv.URL, Request{Tenant: "t", Policy: Policy{CacheAuthorized: true}})
			if r := f.get(t, "/me", "Authorization", "Bearer alice"); r.body != "page for Bearer alice" {
				t.Fatalf("alice got %q", r.body)
			}
			for _, who := range []string{"", "Bearer bob"} {
				var r response
				if who == "" {
					r = f.get(t, "/me")
				} else {
					r = f.get(t, "/me", "Authorization", who)
				}
				switch {
				case tc.shared && r.body != "page for Bearer alice":
					t.Errorf("%q: a shareable response was not shared: %q (Cache-Status %q)", who, r.body, r.header.Get("Cache-Status"))
				case !tc.shared && r.body == "page for Bearer alice":
					t.Errorf("%q got %q (Cache-Status %q): alice's private response was shared", who, r.body, r.header.Get("Cache-Status"))
				}
			}
		})
	}
}
