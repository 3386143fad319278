package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeproxy/edge/proxy/accesslog"
	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
	"github.com/edgeproxy/edge/scripts/testkit"
)

func TestValidRequestID(t *testing.T) {
	for _, s := range []string{"a", "abc-123", "0f8fad5b-d9cb-469f-a165-70867728950e", "Root=1-5759e988:bd862e3f+/=", strings.Repeat("x", 128)} {
		if !validRequestID(s) {
			t.Errorf("%q rejected", s)
		}
	}
	for _, s := range []string{"", " ", "a b", `a"b`, "a,b", "a\nb", "a\x00", "é", "<script>", strings.Repeat("x", 129)} {
		if validRequestID(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestRequestIDsAreUnique takes IDs from concurrent goroutines across many
// blocks: no ID twice, all of the generated shape.
func TestRequestIDsAreUnique(t *testing.T) {
	g, err := newRequestIDs()
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 10 * idsPerBlock
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			ids := make([]string, each)
			for i := range ids {
				ids[i] = g.next()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if seen[id] || !generatedID.MatchString(id) {
					t.Errorf("ID %q repeated or malformed", id)
				}
				seen[id] = true
			}
		})
	}
	wg.Wait()
	if h, _ := newRequestIDs(); h.prefix == g.prefix {
		t.Errorf("two generators share the prefix %q", g.prefix)
	}
}

// TestRequestIDThroughServer runs requests through the real server (the
// lean h1 listener with the direct path, and the net/http TLS listener)
// against a raw origin and checks, for each path a request can take, that
// the origin got the request's ID, the client got it back and the access
// line carries it with the client's IP and User-Agent.
func TestRequestIDThroughServer(t *testing.T) {
	script := func(path string, n int) originAct {
		if strings.HasPrefix(path, "/hit") {
			return originAct{raw: originResp("200 OK", []string{"Content-Type: text/plain", "Cache-Control: max-age=60",
				"X-Request-Id: origin-own-id"}, []byte("cached"))}
		}
		return originAct{raw: originResp("200 OK", []string{"Content-Type: text/plain", "Cache-Control: no-store",
			"X-Request-Id: origin-own-id"}, []byte("passed"))}
	}
	org := startScriptedOrigin(t, script)
	access := &testkit.SyncBuffer{}
	al, err := accesslog.New(accesslog.Config{Out: access})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = al.Close(context.Background()) })
	c, comp := newCacheCompressor(t, cache.Config{MaxBytes: 64 << 20})
	cfg := Config{
		Upstreams: newPools(t, upstream.Config{}), Cache: c,
		WrapWriter: CompressWriter(comp), DecodeOrigin: CompressDecoder(comp),
		IsTimeout: upstream.IsTimeout, ErrorReason: upstream.Reason, AccessLog: al,
		Direct: &DirectConfig{Untransformed: func(*tenantcfg.Tenant) bool { return true }, Compressor: comp},
	}
	p := startProxy(t, routesOf(tenant("shop.example", "http://"+org.addr)), proxyOpts{cfg: cfg, tls: true})

	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "shop.example"}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	type step struct {
		name, base, path, sentID string
		keep                     bool   // the sent ID is kept
		cacheStatus              string // prefix of Cache-Status
		originSees               bool
	}
	long := strings.Repeat("a", maxRequestIDLen+1)
	steps := []step{
		{name: "miss kept", base: p.url, path: "/pass/1", sentID: "trace-42.a:b", keep: true, cacheStatus: "edge; fwd=miss", originSees: true},
		{name: "direct generated", base: p.url, path: "/pass/1", cacheStatus: "edge; fwd=miss", originSees: true},
		{name: "direct kept", base: p.url, path: "/pass/1", sentID: "0f8fad5b-d9cb-469f-a165-70867728950e", keep: true, cacheStatus: "edge; fwd=miss", originSees: true},
		{name: "malformed replaced", base: p.url, path: "/pass/1", sentID: `x" y`, cacheStatus: "edge; fwd=miss", originSees: true},
		{name: "too long replaced", base: p.url, path: "/pass/1", sentID: long, cacheStatus: "edge; fwd=miss", originSees: true},
		{name: "fill", base: p.url, path: "/hit/1", sentID: "fill-1", keep: true, cacheStatus: "edge; fwd=miss", originSees: true},
		{name: "hit generated", base: p.url, path: "/hit/1", cacheStatus: "edge; hit"},
		{name: "hit kept", base: p.url, path: "/hit/1", sentID: "hit-2", keep: true, cacheStatus: "edge; hit"},
		{name: "tls pass", base: p.tlsURL, path: "/pass/2", sentID: "tls-1", keep: true, cacheStatus: "edge; fwd=miss", originSees: true},
		{name: "tls fill", base: p.tlsURL, path: "/hit/2", sentID: "tls-2", keep: true, cacheStatus: "edge; fwd=miss", originSees: true},
		{name: "tls hit generated", base: p.tlsURL, path: "/hit/2", cacheStatus: "edge; hit"},
		{name: "unknown host", base: p.url, path: "/x", sentID: "nope-1", keep: true},
	}
	var ids []string
	for _, s := range steps {
		req, err := http.NewRequest("GET", s.base+s.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "shop.example"
		if s.name == "unknown host" {
			req.Host = "nope.example"
		}
		req.Header.Set("User-Agent", "edge-test/"+strings.ReplaceAll(s.name, " ", "-"))
		if s.sentID != "" {
			req.Header.Set("X-Request-Id", s.sentID)
		}
		before := len(org.requests(s.path))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		readAll(t, resp)
		got := resp.Header.Values("X-Request-Id")
		if len(got) != 1 {
			t.Fatalf("%s: X-Request-Id %q, want one value", s.name, got)
		}
		id := got[0]
		switch {
		case s.keep && id != s.sentID:
			t.Errorf("%s: echoed %q, want the client's %q", s.name, id, s.sentID)
		case !s.keep && !generatedID.MatchString(id):
			t.Errorf("%s: echoed %q, want a generated ID", s.name, id)
		}
		if cs := resp.Header.Get("Cache-Status"); !strings.HasPrefix(cs, s.cacheStatus) {
			t.Errorf("%s: Cache-Status %q, want %q", s.name, cs, s.cacheStatus)
		}
		heads := org.requests(s.path)
		switch {
		case s.originSees && len(heads) != before+1:
			t.Errorf("%s: origin saw %d requests, want 1", s.name, len(heads)-before)
		case s.originSees:
			if sent := headField(heads[len(heads)-1], "X-Request-Id"); len(sent) != 1 || sent[0] != id {
				t.Errorf("%s: origin got X-Request-Id %q, client got %q", s.name, sent, id)
			}
		case len(heads) != before:
			t.Errorf("%s: origin asked", s.name)
		}
		ids = append(ids, id)
	}
	if n := gatherCounters(t, p.reg)["edge_direct_responses_total"]; n < 2 {
		t.Errorf("%v responses on the direct path, want at least 2 (steps 2 and 3)", n)
	}

	// The access lines: one per step, in order, with the same ID.
	var lines []map[string]any
	testkit.Eventually(t, 5*time.Second, "the access lines", func() bool {
		lines = lines[:0]
		for l := range strings.SplitSeq(access.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
				lines = append(lines, m)
			}
		}
		return len(lines) >= len(steps)
	})
	for i, s := range steps {
		m := lines[i]
		if m["request_id"] != ids[i] || m["client_ip"] != "127.0.0.1" ||
			m["user_agent"] != "edge-test/"+strings.ReplaceAll(s.name, " ", "-") {
			t.Errorf("%s: access line %v, want request_id %q, client_ip 127.0.0.1 and the client's user_agent", s.name, m, ids[i])
		}
	}
}

// headField returns the values of field k in a raw request head.
func headField(head, k string) []string {
	var vs []string
	for ln := range strings.SplitSeq(head, "\r\n") {
		name, v, ok := strings.Cut(ln, ":")
		if ok && textproto.CanonicalMIMEHeaderKey(name) == k {
			vs = append(vs, strings.TrimSpace(v))
		}
	}
	return vs
}
