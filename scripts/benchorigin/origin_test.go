package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestOriginObjectsAndCounter(t *testing.T) {
	srv := httptest.NewServer(newOrigin())
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		path, cc, ctype string
		min, max        int
	}{
		{"/small", "public, max-age=3600", "text/plain", 1024, 1024},
		{"/nostore", "no-store", "text/plain", 1024, 1024},
		{"/page.html", "public, max-age=3600", "text/html", 38 * 1024, 42 * 1024},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != tc.cc || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) {
			t.Errorf("%s: %d %q %q", tc.path, resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Type"))
		}
		if len(body) < tc.min || len(body) > tc.max {
			t.Errorf("%s: %d bytes, want %d..%d", tc.path, len(body), tc.min, tc.max)
		}
	}
	s, _ := getStats(t, srv.URL)
	if s.Total != 3 || s.Paths["/small"] != 1 || s.Paths["/page.html"] != 1 {
		t.Fatalf("stats %+v, want 3 requests, one per object", s)
	}
	if s.Forwarded["/small"] != 0 || s.Forwarded["/nostore"] != 0 || s.Forwarded["/page.html"] != 0 {
		t.Fatalf("stats %+v, want no forwarded requests: none sent X-Forwarded-For", s)
	}
	if s.TLS["/small"] != 0 || s.TLS["/nostore"] != 0 || s.TLS["/page.html"] != 0 {
		t.Fatalf("stats %+v, want no requests over TLS", s)
	}
}

// TestOriginCountsForwarded checks /stats's "forwarded" map: per path, the
// requests that carried X-Forwarded-For, while "paths" still counts all of
// them. scripts/bench reads both with grep, so the raw JSON is checked too.
func TestOriginCountsForwarded(t *testing.T) {
	srv := httptest.NewServer(newOrigin())
	t.Cleanup(srv.Close)

	get := func(path, xff string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
	}
	get("/nostore", "127.0.0.1")
	get("/nostore", "10.0.0.1, 127.0.0.1")
	get("/nostore", "")
	get("/small", "")
	get("/page.html", "127.0.0.1")

	s, raw := getStats(t, srv.URL)
	wantPaths := map[string]int64{"/nostore": 3, "/small": 1, "/page.html": 1}
	wantFwd := map[string]int64{"/nostore": 2, "/small": 0, "/page.html": 1}
	for p, n := range wantPaths {
		if s.Paths[p] != n {
			t.Errorf("paths[%s] = %d, want %d", p, s.Paths[p], n)
		}
	}
	for p, n := range wantFwd {
		if s.Forwarded[p] != n {
			t.Errorf("forwarded[%s] = %d, want %d", p, s.Forwarded[p], n)
		}
	}
	if s.Total != 5 {
		t.Errorf("total = %d, want 5", s.Total)
	}
	// The script picks each map out by its key and reads one path's count
	// from it: both maps must be present under these names, flat.
	for _, want := range []string{`"paths":{"/nostore":3,`, `"forwarded":{"/nostore":2,`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("/stats body %s lacks %s", raw, want)
		}
	}
}

func TestHoldConns(t *testing.T) {
	srv := httptest.NewServer(newOrigin())
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	c := connsConfig{Addr: srv.Listener.Addr().String(), Host: "x", Path: "/small", N: 50, Parallel: 10, Hold: time.Millisecond}
	if err := holdConns(t.Context(), c, strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "ready 50 ") {
		t.Fatalf("output %q", out.String())
	}
}

// getStats fetches base/stats and returns it decoded and raw (scripts/bench
// greps the raw JSON).
func getStats(t *testing.T, base string) (stats, []byte) {
	t.Helper()
	resp, err := http.Get(base + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var s stats
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("/stats %s: %v", raw, err)
	}
	return s, raw
}
