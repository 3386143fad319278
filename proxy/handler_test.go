package proxy

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
	"github.com/edgeproxy/edge/scripts/testkit"
)

func TestRoutingAndLicenses(t *testing.T) {
	var hits atomic.Int64
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprintf(w, "origin saw host=%s path=%s", r.Host, r.URL.RequestURI())
	})
	active := tenant("shop.example", o.URL, "www.shop.example")
	suspended := tenant("suspended.example", o.URL)
	suspended.License.Status = tenantcfg.LicenseSuspended
	expired := tenant("expired.example", o.URL)
	expired.License.ExpiresAt = time.Now().Add(-time.Minute)
	future := tenant("future.example", o.URL)
	future.License.ExpiresAt = time.Now().Add(time.Hour)
	odd := tenant("odd.example", o.URL)
	odd.License.Status = "trial-ended"
	redirect := tenant("secure.example", o.URL)
	redirect.HTTPSRedirect = true
	p := startProxy(t, routesOf(active, suspended, expired, future, odd, redirect), proxyOpts{})

	tests := []struct {
		host, path string
		code       int
		body       string // prefix
		reachesOrg bool
	}{
		{"shop.example", "/a?b=1", 200, "origin saw host=" + strings.TrimPrefix(o.URL, "http://") + " path=/a?b=1", true},
		{"SHOP.example.:8080", "/", 200, "origin saw", true},
		{"www.shop.example", "/", 200, "origin saw", true},
		{"future.example", "/", 200, "origin saw", true},
		{"nope.example", "/", 403, "edge: unknown domain nope.example\n", false},
		{"Nope.Example:80", "/", 403, "edge: unknown domain nope.example\n", false},
		{"suspended.example", "/", 403, "edge: license suspended for suspended.example\n", false},
		{"expired.example", "/", 403, "edge: license expired for expired.example\n", false},
		{"odd.example", "/", 403, "edge: license not active for odd.example\n", false},
		{"secure.example", "/x?y", 308, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			before := hits.Load()
			resp := p.do(t, "GET", tt.host, tt.path, "", nil)
			body := readAll(t, resp)
			if resp.StatusCode != tt.code || !strings.HasPrefix(body, tt.body) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tt.code, tt.body)
			}
			if got := hits.Load() != before; got != tt.reachesOrg {
				t.Fatalf("origin reached = %v, want %v", got, tt.reachesOrg)
			}
			if resp.Header.Get("X-Total-Time") == "" || resp.Header.Get("Server-Timing") == "" {
				t.Fatalf("timing headers missing: %v", resp.Header)
			}
			if tt.code == 308 && resp.Header.Get("Location") != "https://secure.example/x?y" {
				t.Fatalf("Location = %q", resp.Header.Get("Location"))
			}
		})
	}
}

func TestRouteChangeTakesEffectOnNextRequest(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var view atomic.Pointer[mapRoutes]
	empty := mapRoutes{}
	view.Store(&empty)
	p := startProxy(t, routesFunc(func(h string) *tenantcfg.Tenant { return (*view.Load())[h] }), proxyOpts{})
	if resp := p.do(t, "GET", "shop.example", "/", "", nil); resp.StatusCode != 403 {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	next := routesOf(tenant("shop.example", o.URL))
	view.Store(&next)
	if resp := p.do(t, "GET", "shop.example", "/", "", nil); resp.StatusCode != 200 {
		t.Fatalf("after: %d", resp.StatusCode)
	}
}

type routesFunc func(string) *tenantcfg.Tenant

func (f routesFunc) Lookup(h string) *tenantcfg.Tenant { return f(h) }

func TestMissingAndBadHost(t *testing.T) {
	p := startProxy(t, mapRoutes{}, proxyOpts{})
	for _, tc := range []struct{ req, status, body string }{
		{"GET / HTTP/1.0\r\n\r\n", "400", "edge: missing Host header\n"},
		{"GET / HTTP/1.0\r\nHost: a..b\r\n\r\n", "400", "edge: invalid Host header\n"},
		// net/http itself rejects HTTP/1.1 without Host and bytes that are
		// never valid in a Host.
		{"GET / HTTP/1.1\r\n\r\n", "400", ""},
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "400", ""},
	} {
		c, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, tc.req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.req, err)
		}
		body := readAll(t, resp)
		c.Close()
		if !strings.HasPrefix(resp.Status, tc.status) || !strings.HasPrefix(body, tc.body) {
			t.Errorf("%q: got %s %q, want %s %q", tc.req, resp.Status, body, tc.status, tc.body)
		}
	}
}

func TestForwardingHeaders(t *testing.T) {
	type seen struct {
		Host   string
		URI    string
		Header http.Header
	}
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Thing", "1")
		w.Header().Set("X-Kept", "yes")
		json.NewEncoder(w).Encode(seen{r.Host, r.RequestURI, r.Header})
	})
	plain := tenant("shop.example", o.URL+"/base/")
	override := tenant("override.example", o.URL)
	override.Origin.HostHeader = "internal.shop"
	p := startProxy(t, routesOf(plain, override), proxyOpts{})

	resp := p.do(t, "GET", "shop.example:8080", "/x/y?z=1", "", http.Header{
		"Connection":          {"X-Custom, keep-alive"},
		"X-Custom":            {"drop me"},
		"Keep-Alive":          {"timeout=1"},
		"Proxy-Authorization": {"Basic x"},
		"Proxy-Connection":    {"keep-alive"},
		"Upgrade":             {"h2c"},
		"X-Forwarded-For":     {"10.0.0.1"},
		"Via":                 {"1.1 cdn"},
		"X-App":               {"kept"},
	})
	var s seen
	if err := json.Unmarshal([]byte(readAll(t, resp)), &s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"X-Custom", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade"} {
		if v, ok := s.Header[k]; ok {
			t.Errorf("origin received hop-by-hop %s: %q", k, v)
		}
	}
	want := map[string]string{
		"X-Forwarded-For":   "10.0.0.1, 127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "shop.example", // normalised, as the cache keys on it
		"Via":               "1.1 cdn, 1.1 edge",
		"X-App":             "kept",
	}
	for k, v := range want {
		if got := strings.Join(s.Header[k], ", "); got != v {
			t.Errorf("origin %s = %q, want %q", k, got, v)
		}
	}
	if originHost := strings.TrimPrefix(o.URL, "http://"); s.Host != originHost {
		t.Errorf("origin Host = %q, want %q", s.Host, originHost)
	}
	if s.URI != "/base/x/y?z=1" {
		t.Errorf("origin URI = %q, want /base/x/y?z=1", s.URI)
	}
	for _, k := range []string{"X-Resp-Hop", "Keep-Alive", "Proxy-Thing"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("client received hop-by-hop %s: %q", k, v)
		}
	}
	if resp.Header.Get("X-Kept") != "yes" {
		t.Errorf("end-to-end response header lost: %v", resp.Header)
	}

	resp = p.do(t, "GET", "override.example", "/", "", nil)
	if err := json.Unmarshal([]byte(readAll(t, resp)), &s); err != nil {
		t.Fatal(err)
	}
	if s.Host != "internal.shop" {
		t.Errorf("origin Host with override = %q", s.Host)
	}
	if got := s.Header.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For without prior = %q", got)
	}
}

func TestTimingHeaders(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server-Timing", "app;dur=1")
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "ok")
	})
	hit := func(next FetchFunc) FetchFunc {
		return func(x *Exchange) (*http.Response, error) {
			if x.Request.URL.Path != "/hit" {
				return next(x)
			}
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("cached")), ContentLength: 6}, nil
		}
	}
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{cfg: Config{Stages: []Stage{hit}}})
	ms := regexp.MustCompile(`^(\d+\.\d{2})ms$`)
	st := regexp.MustCompile(`^origin;dur=(\d+\.\d{2}), total;dur=(\d+\.\d{2})$`)
	var total, org float64
	check := func(resp *http.Response) {
		t.Helper()
		readAll(t, resp)
		om := ms.FindStringSubmatch(resp.Header.Get("X-Origin-Time"))
		tm := ms.FindStringSubmatch(resp.Header.Get("X-Total-Time"))
		vals := resp.Header.Values("Server-Timing")
		if om == nil || tm == nil || len(vals) == 0 || !st.MatchString(vals[len(vals)-1]) {
			t.Fatalf("bad timing headers: %q %q %q", resp.Header.Get("X-Origin-Time"), resp.Header.Get("X-Total-Time"), vals)
		}
		fmt.Sscan(om[1], &org)
		fmt.Sscan(tm[1], &total)
		if total < org {
			t.Fatalf("total %v < origin %v", total, org)
		}
	}
	resp := p.do(t, "GET", "shop.example", "/", "", nil)
	check(resp)
	if org < 20 {
		t.Errorf("origin time %vms, origin slept 20ms", org)
	}
	if vals := resp.Header.Values("Server-Timing"); len(vals) != 2 || vals[0] != "app;dur=1" {
		t.Errorf("origin Server-Timing not kept first: %q", vals)
	}
	check(p.do(t, "GET", "shop.example", "/hit", "", nil))
	if org != 0 {
		t.Errorf("cache hit origin time %v, want 0", org)
	}
	check(p.do(t, "GET", "unknown.example", "/", "", nil))
	if org != 0 {
		t.Errorf("403 origin time %v, want 0", org)
	}
}

// TestTimingFormat checks the "12.34ms" format of the timing headers:
// hundredths of a millisecond, rounded half up, never negative.
func TestTimingFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "0.00ms",
		-time.Second:            "0.00ms",
		4999:                    "0.00ms",
		5000:                    "0.01ms",
		1500 * time.Microsecond: "1.50ms",
		12_344_999:              "12.34ms",
		12_345_000:              "12.35ms",
		2*time.Second + 5:       "2000.00ms",
	} {
		if got := string(appendMillis(nil, d)) + "ms"; got != want {
			t.Errorf("appendMillis(%d) = %q, want %q", d, got, want)
		}
	}
}

// TestStreamsLargeBody sends 64 MB of unknown length through the proxy
// and checks that the first MB arrives while the origin is still blocked.
func TestStreamsLargeBody(t *testing.T) {
	const total = 64 << 20
	release := make(chan struct{})
	gen := func(i int) []byte { // deterministic content
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = byte(i*7 + j)
		}
		return b
	}
	want := sha256.New()
	for i := range total >> 20 {
		want.Write(gen(i))
	}
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(gen(0))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		for i := 1; i < total>>20; i++ {
			if _, err := w.Write(gen(i)); err != nil {
				return
			}
		}
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{})
	resp := p.do(t, "GET", "shop.example", "/big", "", nil)
	defer resp.Body.Close()
	if resp.ContentLength != -1 {
		t.Fatalf("ContentLength %d, want unknown", resp.ContentLength)
	}
	got := sha256.New()
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("first MB did not arrive while the origin was blocked: %v", err)
	}
	got.Write(first)
	close(release)
	n, err := io.Copy(got, resp.Body)
	if err != nil || n+int64(len(first)) != total {
		t.Fatalf("read %d bytes, err %v; want %d", n+int64(len(first)), err, total)
	}
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatal("body differs from what the origin sent")
	}
}

func TestRequestBodyStreamsToOrigin(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{})
	body := strings.Repeat("0123456789abcdef", 1<<18) // 4 MB
	sum := sha256.Sum256([]byte(body))
	resp := p.do(t, "POST", "shop.example", "/upload", body, nil)
	if got, want := readAll(t, resp), fmt.Sprintf("%d %x", len(body), sum); got != want {
		t.Fatalf("origin got %q, want %q", got, want)
	}
}

func TestDeadOrigin502(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	p := startProxy(t, routesOf(tenant("shop.example", dead)), proxyOpts{})
	start := time.Now()
	resp := p.do(t, "GET", "shop.example", "/", "", nil)
	body := readAll(t, resp)
	if resp.StatusCode != 502 || body != "edge: origin unreachable\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("502 took %v", d)
	}
	if resp.Header.Get("X-Total-Time") == "" {
		t.Error("no timing headers on 502")
	}
	logs := p.logs.String()
	if !strings.Contains(logs, `"msg":"origin fetch failed","tenant":"shop.example"`) || !strings.Contains(logs, "connection refused") {
		t.Errorf("error log does not name tenant and reason:\n%s", logs)
	}
}

func TestSlowOrigin504(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{
		transport: func(tr *http.Transport) { tr.ResponseHeaderTimeout = 200 * time.Millisecond },
	})
	start := time.Now()
	resp := p.do(t, "GET", "shop.example", "/", "", nil)
	body := readAll(t, resp)
	if resp.StatusCode != 504 || body != "edge: origin timed out\n" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("504 took %v", d)
	}
	if !strings.Contains(p.logs.String(), `"status":504`) {
		t.Errorf("no 504 in logs:\n%s", p.logs)
	}
}

func TestClientGoneLogged499(t *testing.T) {
	arrived := make(chan struct{})
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{})
	c, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n")
	<-arrived
	c.Close()
	testkit.Eventually(t, 5*time.Second, "a 499 access log line", func() bool {
		return strings.Contains(p.logs.String(), `"msg":"request","tenant":"shop.example"`) &&
			strings.Contains(p.logs.String(), `"status":499`)
	})
}

func TestPostNotRetried(t *testing.T) {
	var posts atomic.Int64
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" {
			io.WriteString(w, "ok")
			return
		}
		posts.Add(1)
		io.Copy(io.Discard, r.Body)
		c, _, _ := http.NewResponseController(w).Hijack()
		c.Close() // no response at all
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{})
	readAll(t, p.do(t, "GET", "shop.example", "/", "", nil)) // warm a keep-alive connection
	resp := p.do(t, "POST", "shop.example", "/order", "item=1", nil)
	readAll(t, resp)
	if resp.StatusCode != 502 {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if n := posts.Load(); n != 1 {
		t.Fatalf("origin saw %d POSTs, want 1", n)
	}
}

func TestPanicRecovered(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	boom := func(next FetchFunc) FetchFunc {
		return func(x *Exchange) (*http.Response, error) {
			if x.Request.URL.Path == "/panic" {
				panic("stage bug")
			}
			return next(x)
		}
	}
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{cfg: Config{Stages: []Stage{boom}}})
	c, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i, path := range []string{"/panic", "/", "/panic", "/"} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: shop.example\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on the same connection: %v", i, err)
		}
		body := readAll(t, resp)
		want, code := "ok", 200
		if path == "/panic" {
			want, code = "edge: internal error\n", 500
		}
		if resp.StatusCode != code || body != want {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
	}
	if !strings.Contains(p.logs.String(), "stage bug") {
		t.Error("panic not logged")
	}
}

func TestMetricsAndAccessLog(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{})
	readAll(t, p.do(t, "GET", "shop.example", "/a", "", nil))
	readAll(t, p.do(t, "GET", "nope.example", "/", "", nil))
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetValue() + "}"
			}
			switch {
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			case m.Histogram != nil:
				got[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	for k, v := range map[string]float64{
		"edge_requests_total{none}{2xx}":  1,
		"edge_requests_total{none}{4xx}":  1,
		"edge_request_duration_seconds":   2,
		"edge_origin_duration_seconds":    1,
		"edge_added_latency_seconds":      1,
		"edge_connections_accepted_total": 2,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	var line map[string]any
	for l := range strings.SplitSeq(p.logs.String(), "\n") {
		if strings.Contains(l, `"path":"/a"`) {
			json.Unmarshal([]byte(l), &line)
		}
	}
	for _, k := range []string{"tenant", "host", "method", "path", "status", "bytes", "origin_ms", "total_ms"} {
		if _, ok := line[k]; !ok {
			t.Errorf("access log misses %s: %v", k, line)
		}
	}
	if line["bytes"] != float64(5) || line["status"] != float64(200) || line["tenant"] != "shop.example" {
		t.Errorf("access log: %v", line)
	}
}

func TestOriginBreaksOffMidBody(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		c, _, _ := http.NewResponseController(w).Hijack()
		c.Close()
	})
	p := startProxy(t, routesOf(tenant("shop.example", o.URL)), proxyOpts{})
	// Depending on buffering the client sees the abort before or after
	// the headers; either way it must not see a complete response.
	req, _ := http.NewRequest("GET", p.url+"/", nil)
	req.Host = "shop.example"
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		n, rerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Fatalf("truncated origin body read as complete (%d bytes)", n)
		}
	}
	testkit.Eventually(t, 5*time.Second, "the origin failure in the log", func() bool {
		return strings.Contains(p.logs.String(), `"msg":"origin body failed","tenant":"shop.example"`)
	})
}
