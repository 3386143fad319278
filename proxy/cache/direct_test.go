package cache

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
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
				if r.Header.Get("If-None-Match") == `"v1"` {
					w.WriteHeader(http.StatusNotModified)
					return
				}
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
// passer hands it those alone, as the proxy's direct path does.
var passedFields = []string{"Cache-Control", "Expires", "Date", "Last-Modified", "Etag", "Set-Cookie", "Vary", "Content-Encoding"}

// directMode is what a directPass does when Serve offers it a request.
type directMode int

const (
	noDirect       directMode = iota // Request.Pass is a plain PassFetcher: Serve's own pass-through
	directRelay                      // fetch, decide with Passed, write the response itself (GET only, as the proxy)
	directDecline                    // handled false, nothing fetched
	directPrefetch                   // fetch, then hand the response back as the fallback
	directFail                       // handled, no response: an origin error
	directTruncate                   // handled, the origin breaks off mid-body
)

func (m directMode) String() string {
	return [...]string{"no-direct", "relay", "decline", "prefetch", "fail", "truncate"}[m]
}

// errRefused is the origin failure directFail reports.
var errRefused = errors.New("origin refused the connection")

// directPass is a Request.Pass that also implements DirectPasser, bound
// to one client's ResponseWriter as the proxy's per-request state is.
type directPass struct {
	passTo
	w    http.ResponseWriter
	mode directMode

	offered   bool
	method    string // of the request offered
	fetchPass int    // FetchPass calls
}

var _ DirectPasser = (*directPass)(nil)

func (p *directPass) FetchPass(r *http.Request) (*http.Response, error) {
	p.fetchPass++
	return p.passTo.FetchPass(r)
}

func (p *directPass) PassDirect(r *http.Request, m PassMark) DirectOutcome {
	p.offered, p.method = true, r.Method
	switch p.mode {
	case directDecline:
		return DirectOutcome{}
	case directFail:
		return DirectOutcome{Handled: true, Result: Result{CacheStatus: m.Status()}, Err: fmt.Errorf("%w: %w", ErrOrigin, errRefused)}
	case directRelay:
		if r.Method != http.MethodGet {
			return DirectOutcome{}
		}
	}
	resp, err := p.passTo.FetchPass(r)
	if err != nil {
		return DirectOutcome{Handled: true, Result: Result{CacheStatus: m.Status()}, Err: fmt.Errorf("%w: %w", ErrOrigin, err)}
	}
	if p.mode == directPrefetch {
		resp.Header.Set("X-Prefetched", "1") // tells the client's response apart
		return DirectOutcome{Fallback: resp, FallbackDuration: time.Millisecond}
	}
	defer resp.Body.Close()
	h := http.Header{}
	for _, k := range passedFields {
		if v, ok := resp.Header[k]; ok {
			h[k] = v
		}
	}
	status := m.Passed(resp.StatusCode, h, resp.ContentLength, r.Header.Get("Authorization") != "")
	out := p.w.Header()
	for k, v := range resp.Header {
		out[k] = v
	}
	out.Set("Cache-Status", status)
	// Outcome is left wrong on purpose: Serve classifies CacheStatus.
	res := Result{CacheStatus: status, StatusCode: resp.StatusCode, Outcome: OutcomeHit}
	if p.mode == directTruncate {
		out.Set("Content-Length", "4")
		p.w.WriteHeader(resp.StatusCode)
		_, _ = io.WriteString(p.w, "bo")
		// Out on the wire, as a relay's writes are: an abort before
		// any byte is sent would have the client retry the GET.
		_ = http.NewResponseController(p.w).Flush()
		return DirectOutcome{Handled: true, Result: res, Err: fmt.Errorf("%w: %w", ErrTruncated, io.ErrUnexpectedEOF)}
	}
	p.w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(p.w, resp.Body); err != nil {
		return DirectOutcome{Handled: true, Result: res, Err: fmt.Errorf("%w: %w", ErrTruncated, err)}
	}
	return DirectOutcome{Handled: true, Result: res}
}

// writeWatcher records whether anything was written to a ResponseWriter.
type writeWatcher struct {
	http.ResponseWriter
	wrote bool
}

func (w *writeWatcher) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *writeWatcher) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *writeWatcher) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// served is what the front saw of one Serve call.
type served struct {
	res       Result
	err       error
	wrote     bool // something was written before Serve returned
	offered   bool // PassDirect was called
	method    string
	fetchPass int
}

// passFront serves through the cache with a per-request Request.Pass in
// mode, and reports each Serve call on done.
type passFront struct {
	srv    *httptest.Server
	client *http.Client
	done   chan served
}

func newPassFront(t testing.TB, c *Cache, o *origin, req Request, mode directMode) *passFront {
	t.Helper()
	base, _ := url.Parse(o.srv.URL)
	return newPassFrontTo(t, c, o.srv.URL, base, req, mode)
}

// newPassFrontTo fills from originURL and passes to passBase.
func newPassFrontTo(t testing.TB, c *Cache, originURL string, passBase *url.URL, req Request, mode directMode) *passFront {
	t.Helper()
	pt := passTo{base: passBase, tr: &http.Transport{DisableCompression: true}}
	t.Cleanup(pt.tr.CloseIdleConnections)
	fetch := fetcherTo(originURL)
	// Room for more reports than a test reads, so that a handler called
	// more often than expected (a client retry) fails the test in try
	// rather than hang the server's Close.
	f := &passFront{done: make(chan served, 8)}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := &writeWatcher{ResponseWriter: w}
		req := req
		var p *directPass
		if mode == noDirect {
			req.Pass = pt
		} else {
			p = &directPass{passTo: pt, w: ww, mode: mode}
			req.Pass = p
		}
		res, err := c.Serve(ww, r, req, fetch)
		s := served{res: res, err: err, wrote: ww.wrote}
		if p != nil {
			s.offered, s.method, s.fetchPass = p.offered, p.method, p.fetchPass
		}
		f.done <- s
		if errors.Is(err, ErrTruncated) {
			panic(http.ErrAbortHandler)
		}
		if err != nil {
			http.Error(w, "bad gateway: "+err.Error(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(f.srv.Close)
	f.client = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	return f
}

// try sends one request and returns the response, what Serve did, and
// the error reading the response, if any.
func (f *passFront) try(t testing.TB, method, path string, hdr ...string) (response, served, error) {
	t.Helper()
	var r response
	resp, err := f.client.Do(frontRequest(t, f.srv.URL, method, path, hdr...))
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		r = response{code: resp.StatusCode, header: resp.Header, body: string(b)}
	}
	select {
	case s := <-f.done:
		if n := len(f.done); n > 0 {
			t.Fatalf("%s %s: Serve ran %d more times than requests were sent", method, path, n)
		}
		return r, s, err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s %s: the handler never finished (client error %v)", method, path, err)
		return r, served{}, err
	}
}

func (f *passFront) do(t testing.TB, method, path string, hdr ...string) (response, served) {
	t.Helper()
	r, s, err := f.try(t, method, path, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r, s
}

func (f *passFront) get(t testing.TB, path string, hdr ...string) (response, served) {
	t.Helper()
	return f.do(t, http.MethodGet, path, hdr...)
}

// wantOffered checks whether Serve offered a request to PassDirect.
func wantOffered(t testing.TB, what string, s served, want bool) {
	t.Helper()
	if s.offered != want {
		t.Fatalf("%s: offered to PassDirect %v, want %v (Cache-Status %q)", what, s.offered, want, s.res.CacheStatus)
	}
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

// TestPassDirectOffered: Serve offers a request to PassDirect exactly
// when it passes it under a live hit-for-miss mark.
func TestPassDirectOffered(t *testing.T) {
	var storable atomic.Bool
	o := passOrigin(t, &storable)
	c := newCache(t, Config{})
	t1 := Request{Tenant: "t1"}
	d := newPassFront(t, c, o, t1, directRelay)

	r, s := d.get(t, "/nostore")
	wantStatus(t, r, 200, "edge; fwd=miss; detail=no-store")
	wantOffered(t, "the fill", s, false)
	if n := c.Stats().HitForMiss; n != 1 {
		t.Fatalf("HitForMiss %d after a no-store fill", n)
	}
	r, s = d.get(t, "/nostore")
	wantStatus(t, r, 200, "edge; fwd=miss; detail=no-store")
	wantOffered(t, "GET under the mark", s, true)
	if s.method != http.MethodGet || s.fetchPass != 0 || r.body != "body" {
		t.Fatalf("GET under the mark: offered %s, FetchPass %d, body %q", s.method, s.fetchPass, r.body)
	}

	t.Run("HEAD", func(t *testing.T) {
		// HEAD reads the GET entry, so it is passed under the GET's mark
		// and offered; the relay declines it as the proxy does, and
		// FetchPass sends the client's HEAD.
		r, s := d.do(t, http.MethodHead, "/nostore")
		wantStatus(t, r, 200, "edge; fwd=miss; detail=no-store")
		wantOffered(t, "HEAD", s, true)
		if s.method != http.MethodHead || s.fetchPass != 1 || r.body != "" {
			t.Fatalf("HEAD: offered %s, FetchPass %d, body %q", s.method, s.fetchPass, r.body)
		}
		if m := o.lastRequest().Method; m != http.MethodHead {
			t.Fatalf("the origin saw %s, want HEAD", m)
		}
	})

	t.Run("OPTIONS", func(t *testing.T) {
		r, s := d.do(t, http.MethodOptions, "/nostore")
		wantStatus(t, r, 200, "edge; fwd=method")
		wantOffered(t, "OPTIONS", s, false)
		_, s = d.get(t, "/nostore")
		wantOffered(t, "GET after OPTIONS", s, true)
	})

	t.Run("authorization bypassed", func(t *testing.T) {
		r, s := d.get(t, "/nostore", "Authorization", "Bearer x")
		wantStatus(t, r, 200, "edge; fwd=bypass; detail=authorization")
		wantOffered(t, "authorized", s, false)
	})

	t.Run("authorization cached", func(t *testing.T) {
		authOK := t1
		authOK.Policy.CacheAuthorized = true
		da := newPassFront(t, c, o, authOK, directRelay)
		pa := newPassFront(t, c, o, authOK, noDirect)
		r, s := da.get(t, "/nostore", "Authorization", "Bearer x")
		wantOffered(t, "authorized under CacheAuthorized", s, true)
		pr, _ := pa.get(t, "/nostore", "Authorization", "Bearer x")
		wantStatus(t, pr, 200, "edge; fwd=miss; detail=no-store")
		if cs, want := r.header.Get("Cache-Status"), pr.header.Get("Cache-Status"); cs != want {
			t.Fatalf("authorized: direct Cache-Status %q, Serve %q", cs, want)
		}
	})

	t.Run("POST", func(t *testing.T) {
		// A successful unsafe request invalidates the key: the mark
		// goes with it, so the next GET fills (and marks) again.
		r, s := d.do(t, http.MethodPost, "/nostore")
		wantStatus(t, r, 200, "edge; fwd=method")
		wantOffered(t, "POST", s, false)
		r, s = d.get(t, "/nostore")
		wantStatus(t, r, 200, "edge; fwd=miss; detail=no-store")
		wantOffered(t, "GET after POST", s, false)
		_, s = d.get(t, "/nostore")
		wantOffered(t, "GET after the refill", s, true)
	})

	for name, tc := range map[string]struct {
		req  Request
		path string
	}{
		"another path":    {t1, "/other"},
		"another query":   {t1, "/nostore?a=1"},
		"another tenant":  {Request{Tenant: "t2"}, "/nostore"},
		"another host":    {Request{Tenant: "t1", Host: "other.example.com"}, "/nostore"},
		"another variant": {Request{Tenant: "t1", Variant: "fr"}, "/nostore"},
		"https":           {Request{Tenant: "t1", Scheme: "https"}, "/nostore"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newPassFront(t, c, o, tc.req, directRelay)
			_, s := f.get(t, tc.path)
			wantOffered(t, "first request", s, false)
			_, s = f.get(t, tc.path)
			wantOffered(t, "second request", s, true)
		})
	}

	t.Run("stored", func(t *testing.T) {
		storable.Store(true)
		r, s := d.get(t, "/flip")
		wantStatus(t, r, 200, "edge; fwd=miss; stored")
		wantOffered(t, "fill", s, false)
		r, s = d.get(t, "/flip")
		wantStatus(t, r, 200, "edge; hit")
		wantOffered(t, "hit", s, false)
	})
}

// TestPassDirectFollowsVary: a mark under a varied key is found through
// the Vary marker, as Serve finds it; an expired marker is not followed.
func TestPassDirectFollowsVary(t *testing.T) {
	clk := newFakeClock()
	o := passOrigin(t, new(atomic.Bool))
	c := newCache(t, Config{Now: clk.Now})
	d := newPassFront(t, c, o, Request{Tenant: "t1"}, directRelay)
	get := func(lang string, offered bool, status string) {
		t.Helper()
		r, s := d.get(t, "/vary", "Accept-Language", lang)
		wantOffered(t, lang, s, offered)
		if cs := r.header.Get("Cache-Status"); r.code != 200 || cs != status {
			t.Fatalf("%s: %d %q, want 200 %q", lang, r.code, cs, status)
		}
	}
	get("en", false, "edge; fwd=miss; stored")
	get("fr", false, "edge; fwd=miss; detail=no-store") // marked under fr's varied key
	get("fr", true, "edge; fwd=miss; detail=no-store")
	get("en", false, "edge; hit")
	get("de", false, "edge; fwd=miss; detail=no-store")
	get("de", true, "edge; fwd=miss; detail=no-store")
	get("fr", true, "edge; fwd=miss; detail=no-store")

	clk.Advance(11 * time.Second) // past en's max-age=10: the marker is dead, fr's mark is not
	before := countersOf(c)
	get("fr", false, "edge; fwd=miss; detail=no-store") // a fill under the primary key
	if n := countersOf(c).minus(before).HitForMiss; n != 1 {
		t.Fatalf("the fill after the marker's end set %d marks, want 1", n)
	}
	// That mark is under the primary key: it holds for every language,
	// and a storable answer drops it.
	get("fr", true, "edge; fwd=miss; detail=no-store")
	get("en", true, "edge; fwd=miss")
	get("en", false, "edge; fwd=miss; stored")
}

// TestPassDirectMatchesServe: for the origin answers a hit-for-miss key
// gets, a DirectPasser that relays, declines, or fetches and hands over
// gives the client what Serve's own pass-through gives, and moves the
// same counters.
func TestPassDirectMatchesServe(t *testing.T) {
	for _, tc := range []struct {
		path   string
		hdr    []string
		code   int
		status string
		body   string
	}{
		{"/nostore", nil, 200, "edge; fwd=miss; detail=no-store", "body"},
		{"/private", nil, 200, "edge; fwd=miss; detail=private", "body"},
		{"/cookie", nil, 200, "edge; fwd=miss; detail=set-cookie", "body"},
		{"/404", nil, 404, "edge; fwd=miss; fwd-status=404; detail=no-store", "body"},
		{"/nostore", []string{"Range", "bytes=0-1"}, 206, "edge; fwd=miss; fwd-status=206; detail=status", "bo"},
	} {
		for _, mode := range []directMode{directRelay, directDecline, directPrefetch} {
			t.Run(fmt.Sprintf("%s%v/%v", tc.path, tc.hdr, mode), func(t *testing.T) {
				o := passOrigin(t, new(atomic.Bool))
				c := newCache(t, Config{})
				req := Request{Tenant: "t1"}
				d := newPassFront(t, c, o, req, mode)
				p := newPassFront(t, c, o, req, noDirect)
				p.get(t, tc.path) // the fill sets the mark

				before, hits := countersOf(c), o.hits.Load()
				dr, ds := d.get(t, tc.path, tc.hdr...)
				direct, dhits := countersOf(c).minus(before), o.hits.Load()-hits
				before, hits = countersOf(c), o.hits.Load()
				pr, ps := p.get(t, tc.path, tc.hdr...)
				plain, phits := countersOf(c).minus(before), o.hits.Load()-hits

				wantOffered(t, "direct", ds, true)
				if dcs, pcs := dr.header.Get("Cache-Status"), pr.header.Get("Cache-Status"); dcs != tc.status || pcs != tc.status {
					t.Fatalf("Cache-Status: direct %q, Serve %q, want %q", dcs, pcs, tc.status)
				}
				if dr.code != tc.code || pr.code != tc.code || dr.body != tc.body || pr.body != tc.body {
					t.Fatalf("direct %d %q, Serve %d %q, want %d %q", dr.code, dr.body, pr.code, pr.body, tc.code, tc.body)
				}
				if dc, pc := dr.header.Get("Set-Cookie"), pr.header.Get("Set-Cookie"); dc != pc {
					t.Fatalf("Set-Cookie: direct %q, Serve %q", dc, pc)
				}
				for name, s := range map[string]served{"direct": ds, "Serve": ps} {
					res := s.res
					if s.err != nil || res.CacheStatus != tc.status || res.Outcome != OutcomeMiss ||
						res.StatusCode != tc.code || res.Stored || res.Tier != "" {
						t.Fatalf("%s: Serve returned %+v, %v", name, res, s.err)
					}
				}
				if direct != plain {
					t.Fatalf("counters moved with the DirectPasser %+v, without %+v", direct, plain)
				}
				if direct.Fetches != 1 || direct.L1.Misses != 1 || direct.HitForMiss != 0 {
					t.Fatalf("the pass counted %+v", direct)
				}
				if dhits != 1 || phits != 1 {
					t.Fatalf("origin requests: %d with the DirectPasser, %d without, want 1", dhits, phits)
				}
				// A fallback response is relayed in place of FetchPass's.
				wantFetchPass := map[directMode]int{directRelay: 0, directDecline: 1, directPrefetch: 0}[mode]
				if ds.fetchPass != wantFetchPass {
					t.Fatalf("FetchPass called %d times, want %d", ds.fetchPass, wantFetchPass)
				}
				// Handed back as the outcome's fallback, the prefetched
				// response is the one the client gets, with the origin
				// time the passer measured.
				if got, want := dr.header.Get("X-Prefetched") == "1", mode == directPrefetch; got != want {
					t.Fatalf("the client got the prefetched response: %v, want %v", got, want)
				}
				if mode == directPrefetch && ds.res.OriginDuration != time.Millisecond {
					t.Fatalf("OriginDuration %v, want the fallback's %v", ds.res.OriginDuration, time.Millisecond)
				}
				_, s := d.get(t, tc.path)
				wantOffered(t, "the next request (the mark stays)", s, true)
			})
		}
	}
}

// TestPassDirectDropsMarkWhenStorable: once the origin allows storing,
// Passed drops the mark as Serve does: the next request fills, the one
// after is served from the cache.
func TestPassDirectDropsMarkWhenStorable(t *testing.T) {
	for _, path := range []string{"/flip", "/etag"} {
		for _, mode := range []directMode{noDirect, directRelay, directPrefetch} {
			t.Run(fmt.Sprintf("%s/%v", path, mode), func(t *testing.T) {
				var storable atomic.Bool
				o := passOrigin(t, &storable)
				c := newCache(t, Config{})
				f := newPassFront(t, c, o, Request{Tenant: "t1"}, mode)
				d := newPassFront(t, c, o, Request{Tenant: "t1"}, directRelay) // tells marked keys
				r, _ := f.get(t, path)
				wantStatus(t, r, 200, "edge; fwd=miss; detail=no-store")
				storable.Store(true)
				r, s := f.get(t, path)
				if cs := r.header.Get("Cache-Status"); cs != "edge; fwd=miss" || s.res.Stored {
					t.Fatalf("Cache-Status %q (stored %v) once storable, want edge; fwd=miss, not stored", cs, s.res.Stored)
				}
				if mode != noDirect {
					wantOffered(t, "the storable pass", s, true)
				}
				r, s = d.get(t, path)
				wantOffered(t, "after the storable pass", s, false)
				wantStatus(t, r, 200, "edge; fwd=miss; stored")
				r, s = d.get(t, path)
				wantOffered(t, "stored", s, false)
				if path == "/flip" {
					wantStatus(t, r, 200, "edge; hit")
				} else {
					wantStatus(t, r, 200, "edge; fwd=stale; fwd-status=304; stored")
				}
			})
		}
	}
}

// TestPassDirectRenewsMark: a mark past half its life is renewed by a
// pass, as Serve renews it; a younger one is not, and expires.
func TestPassDirectRenewsMark(t *testing.T) {
	for _, mode := range []directMode{directRelay, noDirect} {
		t.Run(mode.String(), func(t *testing.T) {
			clk := newFakeClock()
			o := passOrigin(t, new(atomic.Bool))
			c := newCache(t, Config{Now: clk.Now})
			f := newPassFront(t, c, o, Request{Tenant: "t1"}, mode)
			d := newPassFront(t, c, o, Request{Tenant: "t1"}, directRelay)
			pass := func(path string) {
				t.Helper()
				r, s := f.get(t, path)
				wantStatus(t, r, 200, "edge; fwd=miss; detail=no-store")
				if mode != noDirect {
					wantOffered(t, path, s, true)
				}
			}
			f.get(t, "/nostore")
			f.get(t, "/young")
			if n := c.Stats().HitForMiss; n != 2 {
				t.Fatalf("HitForMiss %d after two fills", n)
			}
			clk.Advance(hitForMissTTL / 4)
			pass("/young") // not past half its life: kept as it is
			pass("/nostore")
			if n := c.Stats().HitForMiss; n != 2 {
				t.Fatalf("HitForMiss %d, want 2 (no renewal before half-life)", n)
			}
			clk.Advance(hitForMissTTL/4 + time.Second)
			pass("/nostore") // past half its life: renewed
			if n := c.Stats().HitForMiss; n != 3 {
				t.Fatalf("HitForMiss %d, want 3 (renewed)", n)
			}
			clk.Advance(hitForMissTTL / 2) // past the first marks' end
			_, s := d.get(t, "/nostore")
			wantOffered(t, "the renewed mark", s, true)
			_, s = d.get(t, "/young")
			wantOffered(t, "a mark past hitForMissTTL", s, false)
		})
	}
}

// deadOrigin is a loopback address nothing listens on.
func deadOrigin(t *testing.T) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	ln.Close()
	return u
}

// TestPassDirectError: a DirectPasser that got no response returns an
// ErrOrigin with m.Status(); Serve hands both back, nothing written, as
// its own pass-through does when the origin is down; the mark stays.
func TestPassDirectError(t *testing.T) {
	o := passOrigin(t, new(atomic.Bool))
	c := newCache(t, Config{})
	req := Request{Tenant: "t1"}
	fail := newPassFront(t, c, o, req, directFail)
	down := newPassFrontTo(t, c, o.srv.URL, deadOrigin(t), req, noDirect)
	d := newPassFront(t, c, o, req, directRelay)
	d.get(t, "/nostore") // the fill sets the mark

	before, hits := countersOf(c), o.hits.Load()
	fr, fs := fail.get(t, "/nostore")
	failed, fhits := countersOf(c).minus(before), o.hits.Load()-hits
	before = countersOf(c)
	dr, ds := down.get(t, "/nostore")
	wentDown := countersOf(c).minus(before)

	wantOffered(t, "failing", fs, true)
	if !errors.Is(fs.err, ErrOrigin) || !errors.Is(fs.err, errRefused) {
		t.Fatalf("Serve returned %v, want an ErrOrigin wrapping the passer's error", fs.err)
	}
	if !errors.Is(ds.err, ErrOrigin) {
		t.Fatalf("Serve without a DirectPasser returned %v for a dead origin", ds.err)
	}
	for name, s := range map[string]served{"DirectPasser": fs, "Serve": ds} {
		if s.wrote {
			t.Fatalf("%s: something was written before Serve returned its error", name)
		}
		if s.res.CacheStatus != "edge; fwd=miss" || s.res.Outcome != OutcomeMiss || s.res.StatusCode != 0 {
			t.Fatalf("%s: Serve returned %+v", name, s.res)
		}
	}
	if fr.code != http.StatusBadGateway || dr.code != http.StatusBadGateway {
		t.Fatalf("clients got %d and %d, want the front's 502", fr.code, dr.code)
	}
	if failed != wentDown || failed.Fetches != 1 || failed.L1.Misses != 1 {
		t.Fatalf("counters moved with the DirectPasser %+v, without %+v", failed, wentDown)
	}
	if fhits != 0 {
		t.Fatalf("the origin saw %d requests from a passer that did not fetch", fhits)
	}
	_, s := d.get(t, "/nostore")
	wantOffered(t, "after the failure (the mark stays)", s, true)
}

// TestPassDirectTruncated: a DirectPasser whose origin breaks off mid-body
// returns ErrTruncated, which Serve hands back for the caller to abort
// the response.
func TestPassDirectTruncated(t *testing.T) {
	o := passOrigin(t, new(atomic.Bool))
	c := newCache(t, Config{})
	req := Request{Tenant: "t1"}
	f := newPassFront(t, c, o, req, directTruncate)
	f.get(t, "/nostore") // the fill sets the mark
	_, s, err := f.try(t, http.MethodGet, "/nostore")
	wantOffered(t, "truncating", s, true)
	if !errors.Is(s.err, ErrTruncated) || !s.wrote {
		t.Fatalf("Serve returned %v (wrote %v), want ErrTruncated after writing", s.err, s.wrote)
	}
	if s.res.CacheStatus != "edge; fwd=miss; detail=no-store" || s.res.Outcome != OutcomeMiss {
		t.Fatalf("Serve returned %+v", s.res)
	}
	if err == nil {
		t.Fatal("the client took an aborted response for a complete one")
	}
}

// TestPassDirectCountersWithTiers: with L2 and L3 configured, a pass
// offered to a DirectPasser counts what Serve's own pass-through counts:
// the lookup's misses (L2 always, L3 for a request that persists) and
// one origin fetch.
func TestPassDirectCountersWithTiers(t *testing.T) {
	redisAddr, _ := testkit.Redis(t)
	endpoint, bucket, ak, sk := testkit.S3(t)
	o := passOrigin(t, new(atomic.Bool))
	c := newCache(t, Config{
		Redis: &RedisConfig{Addr: redisAddr, Timeout: time.Second},
		S3:    &S3Config{Bucket: bucket, Endpoint: endpoint, PathStyle: true, AccessKey: ak, SecretKey: sk, Timeout: time.Second},
	})
	for _, persist := range []bool{false, true} {
		for _, mode := range []directMode{directRelay, directDecline, directPrefetch, directFail} {
			t.Run(fmt.Sprintf("persist=%v/%v", persist, mode), func(t *testing.T) {
				req := Request{Tenant: "t1", Variant: "v", Persist: persist}
				d := newPassFront(t, c, o, req, mode)
				p := newPassFront(t, c, o, req, noDirect)
				path := fmt.Sprintf("/nostore?persist=%v&mode=%d", persist, mode)
				r, s := p.get(t, path)
				wantStatus(t, r, 200, "edge; fwd=miss; detail=no-store")
				if s.res.Tier != "" {
					t.Fatalf("the fill came from tier %q", s.res.Tier)
				}

				before := countersOf(c)
				_, s = d.get(t, path)
				direct := countersOf(c).minus(before)
				wantOffered(t, "direct", s, true)
				before = countersOf(c)
				r, _ = p.get(t, path)
				plain := countersOf(c).minus(before)
				wantStatus(t, r, 200, "edge; fwd=miss; detail=no-store")

				want := counters{L1: TierStats{Misses: 1}, L2: TierStats{Misses: 1}, Fetches: 1}
				if persist {
					want.L3.Misses = 1
				}
				if direct != want || plain != want {
					t.Fatalf("counters moved with the DirectPasser %+v, without %+v, want %+v", direct, plain, want)
				}
			})
		}
	}
}
