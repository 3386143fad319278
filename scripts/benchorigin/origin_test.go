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
	resp, err := http.Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if s.Total != 3 || s.Paths["/small"] != 1 || s.Paths["/page.html"] != 1 {
		t.Fatalf("stats %+v, want 3 requests, one per object", s)
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
