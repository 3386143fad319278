package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestForwardedHeadersMatchCacheKey is issue 14's finding: a page the
// origin built from X-Forwarded-Host for "Host: a.test:1337" was stored
// under the key of "a.test" (the cache keys on the normalised host) and
// served to plain "Host: a.test" requests with the :1337 links. What the
// proxy forwards about host and scheme must be what the cache keys on,
// and a client's own Forwarded / X-Forwarded-* (port, prefix, host…) must
// not reach the origin: nothing keys on them.
func TestForwardedHeadersMatchCacheKey(t *testing.T) {
	reflected := []string{"X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Server", "Forwarded"}
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "text/plain")
		for _, k := range reflected {
			io.WriteString(w, k+"="+strings.Join(r.Header[k], ",")+"\n")
		}
	})
	p := startCachedProxy(t, routesOf(tenant("a.test", o.url)), Config{})

	do := func(host string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", p.url+"/page", nil)
		req.Host = host
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, readAll(t, resp)
	}
	resp, first := do("A.Test:1337",
		"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https", "X-Forwarded-Port", "666",
		"X-Forwarded-Prefix", "/evil", "X-Forwarded-Server", "evil", "Forwarded", "host=evil.example;proto=https")
	wantCacheStatus(t, resp, 200, "edge; fwd=miss; stored")
	want := "X-Forwarded-Host=a.test\nX-Forwarded-Proto=http\nX-Forwarded-Port=\nX-Forwarded-Prefix=\nX-Forwarded-Server=\nForwarded=\n"
	if first != want {
		t.Fatalf("the origin saw\n%s\nwant\n%s", first, want)
	}
	resp, second := do("a.test")
	wantCacheStatus(t, resp, 200, "edge; hit")
	if second != first {
		t.Fatalf("hit %q differs from what a.test itself would get %q", second, first)
	}
}
