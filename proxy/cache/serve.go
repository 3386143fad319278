package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy is a tenant's caching policy (edgectl tenant add/update flags).
type Policy struct {
	// DefaultTTL is the freshness lifetime of responses without explicit
	// freshness (max-age, s-maxage, Expires); 0 falls back to the
	// Last-Modified heuristic of RFC 9111 section 4.2.2.
	DefaultTTL time.Duration
	// OverrideTTL makes DefaultTTL replace the origin's lifetime.
	// no-store, private and no-cache are still honoured.
	OverrideTTL bool
	// CacheSetCookie allows storing responses with Set-Cookie. The cookie
	// itself is never stored or replayed to other clients.
	CacheSetCookie bool
	// CacheAuthorized lets requests with Authorization use the cache
	// (RFC 9111 section 3.5): they are answered from stored objects, and
	// their responses are stored (and then served to every client, with
	// or without credentials) only when the origin marked them shareable
	// with public, s-maxage or must-revalidate. Without it such requests
	// bypass the cache entirely.
	CacheAuthorized bool
	// StaleIfError serves stale content for this long past expiry when the
	// origin fails, even if the origin sent no stale-if-error
	// (--cache-stale-if-error). Like the directive it yields to
	// must-revalidate, proxy-revalidate and a bare s-maxage.
	StaleIfError time.Duration
	// StaleWhileRevalidate serves stale content for this long past expiry
	// while one background fetch refreshes it, when the origin sent no
	// stale-while-revalidate (--cache-stale-while-revalidate).
	StaleWhileRevalidate time.Duration
	// KeepCDNCacheControl relays CDN-Cache-Control to clients, for a
	// tenant with another CDN in front of Edge; by default it is dropped
	// (it targeted Edge). Edge-Cache-Control is always dropped.
	KeepCDNCacheControl bool
	// ClientNoCache makes a request with Cache-Control: no-cache or
	// max-age=0 (or Pragma: no-cache without Cache-Control) revalidate a
	// fresh stored object with the origin (Cache-Status fwd=request)
	// instead of being answered from it. Off by default: a shared cache
	// may ignore it, and one client should not be able to force origin
	// traffic (a reload storm, or a bot).
	ClientNoCache bool
}

// Request describes what the proxy knows about a request beyond the
// *http.Request itself.
type Request struct {
	Tenant string // the tenant the host routes to
	// Generation is the tenant's incarnation, part of the key: a tenant
	// removed and added again, or whose origin changed, gets a new one,
	// so nothing stored for the old owner or origin is reachable (on any
	// tier) afterwards. The proxy uses raftstore's Tenant.OriginIndex,
	// which every node agrees on. 0 keys as before generations existed.
	Generation uint64
	Scheme     string // "http" or "https"; empty: from r.TLS
	Host       string // lower-case host; empty: r.Host
	Variant    string // transform variant (e.g. "fr" for a translated page), part of the key
	Policy     Policy
	// Persist also uses L3 (S3): for expensive variants worth keeping.
	Persist bool
	// BeforeWrite, when set, is called right before the response header is
	// written, with the header map and the outcome so far: the place to add
	// timing headers such as X-Origin-Time. It is an interface so that a
	// per-request value (a pointer) can implement it without allocating.
	BeforeWrite BeforeWriter
	// Pass, when set, fetches for a key marked uncacheable (hit-for-miss):
	// the client's request as it is (its own Accept-Encoding, Range and
	// conditionals), with no rewriting and no decoding, bound to the
	// client. Nil fetches such keys with the Fetcher, as for a miss.
	Pass PassFetcher
	// Context, when set, is what the fetches made for this client derive
	// from instead of r's context (the miss it leads, its own fetch after
	// an unshareable collapsed one, a pass): it must carry r's context's
	// values and cancellation. Background revalidations keep r's.
	Context context.Context

	fwdRequest bool // a stored object is revalidated because the client asked (ClientNoCache)
}

// fetchContext is Request.Context, or r's.
func (req *Request) fetchContext(r *http.Request) context.Context {
	if req.Context != nil {
		return req.Context
	}
	return r.Context()
}

// PassFetcher is the hook of Request.Pass.
type PassFetcher interface {
	FetchPass(r *http.Request) (*http.Response, error)
}

// BeforeWriter is the hook of Request.BeforeWrite.
type BeforeWriter interface {
	BeforeWrite(h http.Header, res Result)
}

// BeforeWriteFunc adapts a function to BeforeWriter.
type BeforeWriteFunc func(h http.Header, res Result)

// BeforeWrite calls f.
func (f BeforeWriteFunc) BeforeWrite(h http.Header, res Result) { f(h, res) }

// Result is the outcome of Serve.
type Result struct {
	CacheStatus    string        // the Cache-Status value sent (RFC 9211)
	Outcome        Outcome       // CacheStatus classified for logs and metrics
	Tier           string        // "l1", "l2" or "l3" when served from a tier, else ""
	StatusCode     int           // status sent to the client
	Stored         bool          // the response was stored
	OriginDuration time.Duration // origin round-trip (to response headers) this response waited for
}

// Fetcher does the origin round-trip. It gets a request prepared by the
// cache (method GET for cacheable requests, conditional headers for
// revalidation, Accept-Encoding chosen by the cache; RequestURI is empty)
// and must bound its own time: the context of a collapsed fetch is
// detached from the first client so others waiting on it are not failed
// when that client leaves.
type Fetcher func(ctx context.Context, r *http.Request) (*http.Response, error)

// ErrOrigin wraps origin failures returned by Serve when nothing was written.
var ErrOrigin = errors.New("origin fetch failed")

// ErrTruncated is returned by Serve when the origin broke off while its
// body was being streamed to the client: the header is out, so the caller
// must abort the response (panic(http.ErrAbortHandler)) rather than let it
// look complete.
var ErrTruncated = errors.New("origin body truncated")

// Outcome is a Result classified into a small fixed set, for log fields
// and metric labels (Cache-Status itself has unbounded detail).
type Outcome uint8

// Outcomes, in String form: "hit", "stale", "revalidated", "miss", "bypass".
const (
	OutcomeMiss        Outcome = iota // went to the origin (stored or not, collapsed or not, or failed)
	OutcomeHit                        // fresh object from a tier
	OutcomeStale                      // stale object: stale-while-revalidate, soft purge, stale-if-error
	OutcomeRevalidated                // stale object confirmed by a 304 from the origin
	OutcomeBypass                     // the cache was not consulted (method, Authorization)
)

var outcomeNames = [...]string{"miss", "hit", "stale", "revalidated", "bypass"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// outcomeOf classifies a Cache-Status value written by this package.
func outcomeOf(status string) Outcome {
	switch {
	case status == statusHit:
		return OutcomeHit
	case status == statusHitStale, strings.Contains(status, "detail=stale-if-error"):
		// Not "fwd=miss; detail=stale": that is a fresh fetch whose
		// response was already stale and so not stored — a miss.
		return OutcomeStale
	case strings.Contains(status, "fwd-status=304"):
		return OutcomeRevalidated
	case strings.HasPrefix(status, cacheName+"; fwd=bypass"), strings.HasPrefix(status, cacheName+"; fwd=method"):
		return OutcomeBypass
	}
	return OutcomeMiss
}

const cacheName = "edge"

// Serve answers r from the cache or through fetch. It returns an error
// when nothing was written to w (the origin failed and no stale response
// could stand in; the caller maps it to a status: 502, 504), or one
// wrapping ErrTruncated when the origin broke off mid-body (the caller
// aborts the response).
func (c *Cache) Serve(w http.ResponseWriter, r *http.Request, req Request, fetch Fetcher) (Result, error) {
	res, err := c.serve(w, r, req, fetch)
	res.Outcome = outcomeOf(res.CacheStatus)
	return res, err
}

func (c *Cache) serve(w http.ResponseWriter, r *http.Request, req Request, fetch Fetcher) (Result, error) {
	if req.Scheme == "" {
		req.Scheme = "http"
		if r.TLS != nil {
			req.Scheme = "https"
		}
	}
	if req.Host == "" {
		req.Host = strings.ToLower(r.Host)
	}
	pq := pathQuery(r)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	default:
		res, err := c.pass(w, r, &req, fetch, cacheName+"; fwd=method")
		if err == nil && res.StatusCode < 400 && unsafeMethod(r.Method) {
			// RFC 9111 section 4.4: a successful unsafe request invalidates.
			c.invalidate(cacheKey(req.Tenant, req.Generation, req.Scheme, req.Host, pq, req.Variant))
		}
		return res, err
	}
	if !req.Policy.CacheAuthorized && headerValue(r.Header, "Authorization") != "" {
		return c.pass(w, r, &req, fetch, cacheName+"; fwd=bypass; detail=authorization")
	}
	base := cacheKey(req.Tenant, req.Generation, req.Scheme, req.Host, pq, req.Variant)
	now := c.now() // one clock read for the lookup, freshness and Age
	o, key, tier, soft := c.lookup(r.Context(), base, r, req.Persist, now)
	if o != nil && o.pass {
		return c.fetchPass(w, r, &req, fetch, base, key, o, pq)
	}
	if o != nil && !(req.Policy.ClientNoCache && clientNoCache(r)) {
		age := o.age(now)
		if !soft && !o.noCache && age < o.lifetime {
			return c.serveObjectAt(w, r, &req, o, Result{CacheStatus: statusHit, Tier: tierNames[tier]}, now)
		}
		if !o.mustReval && !o.noCache && (soft || age-o.lifetime < o.swr) {
			c.revalidateAsync(r, req, fetch, base, key, o, pq)
			c.stats.stale.Add(1)
			return c.serveObjectAt(w, r, &req, o, Result{CacheStatus: statusHitStale, Tier: tierNames[tier]}, now)
		}
	}
	if o != nil && req.Policy.ClientNoCache && clientNoCache(r) {
		req.fwdRequest = true
	}
	return c.fill(w, r, &req, fetch, base, key, o, pq)
}

// clientNoCache reports whether a request asks not to be answered from
// the cache without revalidation (RFC 9111 sections 5.2.1.1, 5.2.1.4
// and 5.4). Only consulted under Policy.ClientNoCache.
func clientNoCache(r *http.Request) bool {
	if lines := r.Header["Cache-Control"]; len(lines) > 0 {
		cc := parseDirectives(lines)
		return cc.noCache || cc.maxAge == 0
	}
	for _, v := range r.Header["Pragma"] {
		if strings.Contains(strings.ToLower(v), "no-cache") {
			return true
		}
	}
	return false
}

const (
	statusHit      = cacheName + "; hit"
	statusHitStale = cacheName + "; hit; detail=stale"
)

// cacheKey is the primary key; vary values extend it for varying responses.
// Only GET is stored (HEAD reads the GET entry), so the method is constant.
// A generation other than 0 follows the tenant ("t\x007\x00GET…"); 0 keeps
// the key generations did not have, so objects in L2/L3 stored before
// them stay reachable. Either way the key is one allocation.
func cacheKey(tenant string, gen uint64, scheme, host, pq, variant string) string {
	if gen == 0 {
		return tenant + "\x00GET\x00" + scheme + "\x00" + host + "\x00" + pq + "\x00" + variant
	}
	var nb [20]byte
	g := strconv.AppendUint(nb[:0], gen, 10)
	var b strings.Builder
	b.Grow(len(tenant) + 1 + len(g) + len("\x00GET\x00") + len(scheme) + 1 + len(host) + 1 + len(pq) + 1 + len(variant))
	b.WriteString(tenant)
	b.WriteByte(0)
	b.Write(g)
	b.WriteString("\x00GET\x00")
	b.WriteString(scheme)
	b.WriteByte(0)
	b.WriteString(host)
	b.WriteByte(0)
	b.WriteString(pq)
	b.WriteByte(0)
	b.WriteString(variant)
	return b.String()
}

func varyKey(base, vals string) string { return base + "\x01" + vals }

func pathQuery(r *http.Request) string {
	if u := r.RequestURI; u != "" && u[0] == '/' {
		return u
	}
	return r.URL.RequestURI()
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// lookup finds the object for r: L1, then L2, then (when persist) L3,
// following a Vary marker to the varied key. It returns the key the object
// lives under (the flight key for a miss) and whether a soft purge applies.
// now is the request's clock reading.
func (c *Cache) lookup(ctx context.Context, base string, r *http.Request, persist bool, now time.Time) (o *object, key string, tier int, soft bool) {
	key = base
	o, tier, soft = c.get(ctx, base, persist, now)
	if o != nil && o.marker {
		key = varyKey(base, varyValues(r, o.vary))
		o, tier, soft = c.get(ctx, key, persist, now)
	}
	t := &c.stats.tiers
	if o == nil || o.pass {
		t[tierL1].misses.Add(1)
		if c.l2 != nil {
			t[tierL2].misses.Add(1)
		}
		if persist && c.l3 != nil {
			t[tierL3].misses.Add(1)
		}
		return o, key, 0, false
	}
	t[tier].hits.Add(1)
	for i := tierL1; i < tier; i++ {
		if i == tierL1 || i == tierL2 && c.l2 != nil {
			t[i].misses.Add(1)
		}
	}
	return o, key, tier, soft
}

// get reads one key through the tiers, dropping unusable and hard-purged
// objects, and promotes lower-tier hits into the tiers above.
func (c *Cache) get(ctx context.Context, key string, persist bool, now time.Time) (*object, int, bool) {
	if o, ok := c.l1.GetIfPresent(key); ok {
		if o, soft := c.check(key, o, now); o != nil {
			return o, tierL1, soft
		}
	}
	if c.l2 != nil {
		if o := c.l2.get(ctx, key); o != nil {
			if o, soft := c.check("", o, now); o != nil {
				c.promote(o)
				c.l1.Set(key, o)
				return o, tierL2, soft
			}
		}
	}
	if persist && c.l3 != nil {
		if o := c.l3.get(ctx, key); o != nil {
			if o, soft := c.check("", o, now); o != nil {
				c.promote(o)
				c.l1.Set(key, o)
				if c.l2 != nil {
					c.l2.putAsync(key, o, o.usableUntil().Sub(c.now()))
				}
				return o, tierL3, soft
			}
		}
	}
	return nil, 0, false
}

// promote prepares an object decoded from L2 or L3 for L1: the identity
// copy of a small gzip body is not stored in the lower tiers.
func (c *Cache) promote(o *object) {
	if o.gzipped && o.ident == nil && !o.marker {
		c.gz.withIdentity(o, nil)
		o.finish()
	}
}

// check applies expiry and purge records to o; key, when set, is its L1
// key, from which a dead object is removed.
func (c *Cache) check(key string, o *object, now time.Time) (*object, bool) {
	if now.After(o.usableUntil()) {
		if key != "" {
			c.l1.Invalidate(key)
		}
		return nil, false
	}
	if o.marker || o.pass {
		return o, false
	}
	switch c.purges.effect(o) {
	case purgeHard:
		if key != "" {
			c.l1.Invalidate(key)
		}
		return nil, false
	case purgeSoft:
		return o, true
	}
	return o, false
}

// flight is one origin fetch that concurrent requests for a key share.
type flight struct {
	done chan struct{}
	out  outcome
}

// outcome is the result of an origin fetch: an object to serve (stored or
// stale), a response to stream to one client only, or an error.
type outcome struct {
	obj    *object
	resp   *http.Response
	prefix []byte // body bytes already read from resp
	status string
	stored bool
	err    error
	dur    time.Duration
	pass   string // why the response was not stored, when the next one likely will not be either
	// setCookie is the origin's Set-Cookie for the client whose request
	// fetched a stored response (Policy.CacheSetCookie): the stored copy
	// has none, and land does not hand it to collapsed waiters.
	setCookie []string
}

func (c *Cache) join(key string) (*flight, bool) {
	c.flightMu.Lock()
	defer c.flightMu.Unlock()
	if f, ok := c.flights[key]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	c.flights[key] = f
	return f, true
}

func (c *Cache) land(key string, f *flight, out outcome) {
	f.out = outcome{obj: out.obj, status: out.status, stored: out.stored, err: out.err, dur: out.dur}
	c.flightMu.Lock()
	delete(c.flights, key)
	c.flightMu.Unlock()
	close(f.done)
}

// fill fetches key from the origin once for all concurrent requests.
func (c *Cache) fill(w http.ResponseWriter, r *http.Request, req *Request, fetch Fetcher, base, key string, stale *object, pq string) (Result, error) {
	f, leader := c.join(key)
	if leader {
		// The fetch is detached from this client, but whether the client
		// is still there decides its status (499) afterwards: ask for Done
		// so a server that watches the connection lazily (proxy/h1) starts.
		_ = r.Context().Done()
		ctx := context.WithoutCancel(req.fetchContext(r))
		out := c.fetchOrigin(ctx, r, req, fetch, base, stale, pq)
		if out.pass != "" && stale == nil {
			c.markPass(key, req, pq, out.pass)
		}
		c.land(key, f, out)
		return c.writeOutcome(w, r, req, out)
	}
	c.stats.coalesced.Add(1)
	select {
	case <-f.done:
	case <-r.Context().Done():
		return Result{}, fmt.Errorf("waiting for a collapsed fetch: %w", context.Cause(r.Context()))
	}
	out := f.out
	switch {
	case out.err != nil:
		if stale != nil && c.staleIfError(stale) {
			c.stats.stale.Add(1)
			return c.serveObject(w, r, req, stale, Result{CacheStatus: cacheName + "; fwd=stale; collapsed; detail=stale-if-error"})
		}
		return Result{OriginDuration: out.dur}, out.err
	case out.obj != nil && (len(out.obj.vary) == 0 || out.obj.varyVals == varyValues(r, out.obj.vary)):
		return c.serveObject(w, r, req, out.obj, Result{CacheStatus: out.status + "; collapsed", OriginDuration: out.dur})
	}
	// The leader's response was not shareable: fetch for this client.
	out = c.fetchOrigin(context.WithoutCancel(req.fetchContext(r)), r, req, fetch, base, stale, pq)
	return c.writeOutcome(w, r, req, out)
}

// hitForMissTTL is how long a key whose response could not be stored
// (no-store, private, Set-Cookie, too large…) skips request collapsing.
// Collapsing such a key makes every concurrent request wait for the one
// in flight and then fetch again for itself: two origin round trips in a
// row, and a queue under load. Varnish keeps its hit-for-miss objects for
// 120 s by default; so does Edge. A storable response replaces the mark
// at once, so a key that becomes cacheable is cached on its next miss.
const hitForMissTTL = 2 * time.Minute

// markPass records in L1 that key's last response was not storable.
func (c *Cache) markPass(key string, req *Request, pq, reason string) {
	m := &object{
		pass: true, passReason: reason,
		tenant: req.Tenant, host: req.Host, pathQuery: pq,
		responseTime: c.now(), lifetime: hitForMissTTL,
	}
	m.finish()
	c.l1.Set(key, m)
	c.stats.hitForMiss.Add(1)
}

// fetchPass answers a key marked hit-for-miss: its own origin fetch,
// bound to the client's context, with no collapsing. The response is
// stored if it now can be, which replaces the mark; a mark past half its
// life is renewed.
func (c *Cache) fetchPass(w http.ResponseWriter, r *http.Request, req *Request, fetch Fetcher, base, key string, mark *object, pq string) (Result, error) {
	if req.Pass != nil {
		return c.passThrough(w, r, req, key, mark, pq)
	}
	out := c.fetchOrigin(r.Context(), r, req, fetch, base, nil, pq)
	if out.pass != "" && c.now().Sub(mark.responseTime) > hitForMissTTL/2 {
		c.markPass(key, req, pq, out.pass)
	}
	return c.writeOutcome(w, r, req, out)
}

// passThrough answers a key marked hit-for-miss with Request.Pass: the
// client's own request, streamed back, nothing stored. It is the cheap
// path for URLs that are never cacheable (about a fifth of the CPU of a
// miss through fetchOrigin, which rewrites the request for storing). When
// the origin allows storing again, the mark is dropped so that the next
// request fills the cache; a mark past half its life is renewed.
func (c *Cache) passThrough(w http.ResponseWriter, r *http.Request, req *Request, key string, mark *object, pq string) (Result, error) {
	c.stats.originFetch.Add(1)
	var resp *http.Response
	var dur time.Duration
	if dp, ok := req.Pass.(DirectPasser); ok {
		o := dp.PassDirect(r, PassMark{c: c, req: *req, key: key, pq: pq, mark: mark})
		if o.Handled {
			return o.Result, o.Err
		}
		resp, dur = o.Fallback, o.FallbackDuration
	}
	if resp == nil {
		start := time.Now()
		var err error
		resp, err = req.Pass.FetchPass(r)
		dur = time.Since(start)
		if err != nil {
			return Result{CacheStatus: cacheName + "; fwd=miss", OriginDuration: dur}, fmt.Errorf("%w: %w", ErrOrigin, err)
		}
	}
	status := c.passed(key, req, mark, pq, resp.StatusCode, resp.Header, resp.ContentLength,
		headerValue(r.Header, "Authorization") != "")
	return c.writeOutcome(w, r, req, outcome{resp: resp, status: status, dur: dur})
}

// passed decides on the origin's answer to a request passed under a
// hit-for-miss mark and returns its Cache-Status: when the origin allows
// storing again the mark is dropped (the next request fills the cache); a
// mark past half its life is renewed.
func (c *Cache) passed(key string, req *Request, mark *object, pq string, code int, h http.Header, contentLength int64, authorized bool) string {
	status := cacheName + "; fwd=miss"
	if code != http.StatusOK {
		status += "; fwd-status=" + strconv.Itoa(code)
	}
	now := c.now()
	fr := decide(code, h, req.Policy, authorized, now)
	c.checkStorable(h, contentLength, &fr)
	switch {
	case fr.storable:
		c.l1.Invalidate(key)
	case fr.reason != "":
		if ps, ok := passStatuses[fr.reason]; ok && code == http.StatusOK {
			status = ps // the usual case, without building the string
		} else {
			status += "; detail=" + fr.reason
		}
		if passReason(fr.reason) && now.Sub(mark.responseTime) > hitForMissTTL/2 {
			c.markPass(key, req, pq, fr.reason)
		}
	}
	return status
}

// checkStorable adds what the cache itself cannot store to a storable
// freshness decision: a content coding it cannot serve, or a body over
// MaxObjectBytes.
func (c *Cache) checkStorable(h http.Header, contentLength int64, fr *freshness) {
	if !fr.storable {
		return
	}
	switch ce := strings.ToLower(h.Get("Content-Encoding")); {
	case ce != "" && ce != "gzip" && ce != "identity":
		fr.storable, fr.reason = false, "encoding"
	case contentLength > c.cfg.MaxObjectBytes:
		fr.storable, fr.reason = false, "too-large"
	}
}

// passStatuses holds the reasons not to store that are properties of the
// response, with the Cache-Status of a 200 passed for each.
var passStatuses = func() map[string]string {
	m := map[string]string{}
	for _, r := range []string{"no-store", "private", "set-cookie", "vary", "stale", "no-freshness", "encoding", "too-large"} {
		m[r] = cacheName + "; fwd=miss; detail=" + r
	}
	return m
}()

// passReason reports whether a reason not to store is a property of the
// response, worth a hit-for-miss mark, rather than of this request or a
// passing error ("status", "authorization").
func passReason(reason string) bool {
	_, ok := passStatuses[reason]
	return ok
}

// revalidateAsync refreshes a stale object in the background, at most once
// per key at a time; r is cloned before Serve returns.
func (c *Cache) revalidateAsync(r *http.Request, req Request, fetch Fetcher, base, key string, stale *object, pq string) {
	c.flightMu.Lock()
	select {
	case <-c.closed:
		c.flightMu.Unlock()
		return
	default:
	}
	if _, busy := c.flights[key]; busy {
		c.flightMu.Unlock()
		return
	}
	f := &flight{done: make(chan struct{})}
	c.flights[key] = f
	c.bg.Add(1)
	c.flightMu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), c.cfg.RevalidateTimeout)
	rr := r.Clone(ctx)
	req.BeforeWrite = nil
	go func() {
		defer c.bg.Done()
		defer cancel()
		out := c.fetchOrigin(ctx, rr, &req, fetch, base, stale, pq)
		c.land(key, f, out)
		if out.resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(out.resp.Body, 1<<20))
			out.resp.Body.Close()
		}
	}()
}

// staleIfError reports whether o may stand in for a failed origin.
func (c *Cache) staleIfError(o *object) bool {
	if o.mustReval {
		return false
	}
	return o.age(c.now())-o.lifetime < o.sie
}

// originRequest prepares the request the Fetcher sends for a cacheable
// request: always GET, no client conditionals or ranges (the cache answers
// those itself), gzip asked for when the client takes it, and the stored
// validators when revalidating.
func originRequest(ctx context.Context, r *http.Request, stale *object) *http.Request {
	// A shallow copy with its own header map and URL: a GET without a
	// body has nothing else to deep-copy.
	o := r.WithContext(ctx)
	o.Header = r.Header.Clone()
	u := *r.URL
	o.URL = &u
	o.Trailer = nil
	o.Method = http.MethodGet
	o.RequestURI = ""
	o.Body = http.NoBody
	o.ContentLength = 0
	for _, h := range []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		o.Header.Del(h)
	}
	if acceptsGzip(r) {
		o.Header.Set("Accept-Encoding", "gzip")
	} else {
		o.Header.Del("Accept-Encoding")
	}
	if stale != nil {
		if stale.etag != "" {
			o.Header.Set("If-None-Match", stale.etag)
		}
		if lm := stale.header.Get("Last-Modified"); lm != "" {
			o.Header.Set("If-Modified-Since", lm)
		}
	}
	return o
}

// fetchOrigin does one origin fetch for a cacheable request and decides
// what to do with the response.
func (c *Cache) fetchOrigin(ctx context.Context, r *http.Request, req *Request, fetch Fetcher, base string, stale *object, pq string) outcome {
	c.stats.originFetch.Add(1)
	stamp := c.purges.latest.Load()
	reqTime := c.now()
	start := time.Now()
	resp, err := fetch(ctx, originRequest(ctx, r, stale))
	dur := time.Since(start)
	respTime := c.now()
	fwd := "; fwd=miss"
	switch {
	case req.fwdRequest:
		fwd = "; fwd=request"
	case stale != nil:
		fwd = "; fwd=stale"
	}
	if err != nil {
		if stale != nil && c.staleIfError(stale) {
			c.stats.stale.Add(1)
			return outcome{obj: stale, status: cacheName + fwd + "; detail=stale-if-error", dur: dur}
		}
		return outcome{err: fmt.Errorf("%w: %w", ErrOrigin, err), dur: dur}
	}
	code := resp.StatusCode
	if stale != nil && code == http.StatusNotModified {
		resp.Body.Close()
		status := cacheName + fwd + "; fwd-status=304"
		cookies := resp.Header["Set-Cookie"]
		if o := c.refresh(stale, resp.Header, req.Policy, headerValue(r.Header, "Authorization") != "", reqTime, respTime, stamp); o != nil {
			c.store(base, o, req.Persist)
			return outcome{obj: o, status: status + "; stored", stored: true, dur: dur, setCookie: cookies}
		}
		return outcome{obj: stale, status: status, dur: dur, setCookie: cookies}
	}
	if stale != nil && code >= 500 && c.staleIfError(stale) {
		resp.Body.Close()
		c.stats.stale.Add(1)
		return outcome{obj: stale, status: cacheName + fwd + "; fwd-status=" + strconv.Itoa(code) + "; detail=stale-if-error", dur: dur}
	}
	status := cacheName + fwd
	if code != http.StatusOK {
		status += "; fwd-status=" + strconv.Itoa(code)
	}
	fr := decide(code, resp.Header, req.Policy, headerValue(r.Header, "Authorization") != "", respTime)
	c.checkStorable(resp.Header, resp.ContentLength, &fr)
	if !fr.storable {
		out := outcome{resp: resp, status: status + "; detail=" + fr.reason, dur: dur}
		if passReason(fr.reason) {
			out.pass = fr.reason
		}
		return out
	}
	body, err := readUpTo(resp.Body, c.cfg.MaxObjectBytes, resp.ContentLength)
	if err != nil {
		resp.Body.Close()
		return outcome{err: fmt.Errorf("%w: read body: %w", ErrOrigin, err), dur: dur}
	}
	if int64(len(body)) > c.cfg.MaxObjectBytes {
		return outcome{resp: resp, prefix: body, status: status + "; detail=too-large", dur: dur, pass: "too-large"}
	}
	resp.Body.Close()
	o, err := c.build(r, req, resp, body, fr, stamp, reqTime, respTime, pq)
	if err != nil {
		c.log.Warn("cache: not storing an undecodable response", "host", req.Host, "path", pq, "err", err)
		resp.Body = http.NoBody
		return outcome{resp: resp, prefix: body, status: status + "; detail=encoding", dur: dur}
	}
	c.store(base, o, req.Persist)
	return outcome{obj: o, status: status + "; stored", stored: true, dur: dur, setCookie: resp.Header["Set-Cookie"]}
}

// readUpTo reads body until EOF or until it holds more than limit bytes.
// With a length hint the buffer is allocated at exactly that size (it is
// what L1 keeps: hint+1, to see EOF, would round 1 KiB up to the 1152-byte
// size class); a last read into a small array confirms the end.
func readUpTo(body io.Reader, limit, hint int64) ([]byte, error) {
	size := int64(512)
	if hint > 0 {
		size = min(hint, limit+1)
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if hint > 0 && int64(len(buf)) == hint {
				var one [1]byte
				n, err := io.ReadFull(body, one[:])
				if n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
					return buf, nil
				}
				if err != nil && n == 0 {
					return nil, err
				}
				buf = append(buf, one[0]) // longer than announced: read on
				hint = 0
				continue
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, nil
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// build makes an object from an origin response and its body.
func (c *Cache) build(r *http.Request, req *Request, resp *http.Response, body []byte, fr freshness, stamp uint64, reqTime, respTime time.Time, pq string) (*object, error) {
	h := storedHeader(resp.Header)
	// The host and path may be slices of the request's header block
	// (proxy/h1): copies keep the object from holding that block.
	host, pq := strings.Clone(req.Host), strings.Clone(pq)
	o := &object{
		tenant: req.Tenant, host: host, pathQuery: pq,
		tags:   tagsOf(resp.Header, req.Tenant, host),
		stamp:  stamp,
		vary:   varyNames(resp.Header),
		status: resp.StatusCode, header: h,
		responseTime: respTime, initialAge: initialAge(resp.Header, reqTime, respTime),
		lifetime: fr.lifetime, swr: fr.swr, sie: fr.sie, mustReval: fr.mustRevalidate, noCache: fr.noCache,
	}
	if len(o.vary) > 0 {
		o.varyVals = varyValues(r, o.vary)
	}
	var ident []byte // the identity body, when at hand
	switch {
	case strings.EqualFold(h.Get("Content-Encoding"), "gzip"):
		n, err := c.gz.gzipLen(body)
		if err != nil {
			return nil, fmt.Errorf("origin gzip body: %w", err)
		}
		o.body, o.gzipped, o.identLen = body, true, n
	case compressible(h, len(body)):
		o.body, o.identLen = body, int64(len(body))
		if z, err := c.gz.compress(body); err == nil && len(z) < len(body)*9/10 {
			o.body, o.gzipped = z, true
			ident = body
		}
	default:
		o.body, o.identLen = body, int64(len(body))
	}
	c.gz.withIdentity(o, ident)
	delete(h, "Content-Encoding")
	o.finish()
	return o, nil
}

// refresh applies a 304's headers to a stored object (RFC 9111 section
// 4.3.4) and recomputes its freshness; nil means it is no longer storable.
// authorized says the 304 answered a request with Authorization: the
// merged response must then be shareable by section 3.5.
func (c *Cache) refresh(old *object, h304 http.Header, p Policy, authorized bool, reqTime, respTime time.Time, stamp uint64) *object {
	upd := storedHeader(h304)
	delete(upd, "Content-Encoding")
	delete(upd, "Content-Type")
	h := old.header.Clone()
	for k, v := range upd {
		h[k] = v
	}
	fr := decide(old.status, h, p, authorized, respTime)
	if !fr.storable {
		return nil
	}
	o := *old
	o.header = h
	o.stamp = stamp
	o.responseTime = respTime
	o.initialAge = initialAge(h304, reqTime, respTime)
	o.lifetime, o.swr, o.sie, o.mustReval, o.noCache = fr.lifetime, fr.swr, fr.sie, fr.mustRevalidate, fr.noCache
	o.finish()
	return &o
}

// store writes o to L1 and queues it for L2 (and L3 when persist); a
// varying response also gets a marker under the primary key.
func (c *Cache) store(base string, o *object, persist bool) {
	key := base
	if len(o.vary) > 0 {
		key = varyKey(base, o.varyVals)
		m := &object{
			marker: true, vary: o.vary, tenant: o.tenant, host: o.host, pathQuery: o.pathQuery,
			responseTime: o.responseTime, lifetime: o.usableUntil().Sub(o.responseTime),
		}
		m.finish()
		c.put(base, m, persist)
	}
	c.put(key, o, persist)
}

func (c *Cache) put(key string, o *object, persist bool) {
	c.l1.Set(key, o)
	c.stats.tiers[tierL1].stores.Add(1)
	ttl := o.usableUntil().Sub(c.now())
	if ttl <= 0 {
		return
	}
	if c.l2 != nil {
		c.l2.putAsync(key, o, ttl)
	}
	if persist && c.l3 != nil {
		c.l3.putAsync(key, o, ttl)
	}
}

// invalidate removes a primary key from every tier.
func (c *Cache) invalidate(keys ...string) {
	for _, k := range keys {
		c.l1.Invalidate(k)
	}
	if c.l2 != nil {
		c.l2.delAsync(keys)
	}
	if c.l3 != nil {
		c.l3.delAsync(keys)
	}
}

// pass forwards r unchanged and streams the answer; nothing is stored.
func (c *Cache) pass(w http.ResponseWriter, r *http.Request, req *Request, fetch Fetcher, status string) (Result, error) {
	c.stats.originFetch.Add(1)
	o := r.Clone(r.Context())
	o.RequestURI = ""
	start := time.Now()
	resp, err := fetch(req.fetchContext(r), o)
	dur := time.Since(start)
	if err != nil {
		return Result{CacheStatus: status, OriginDuration: dur}, fmt.Errorf("%w: %w", ErrOrigin, err)
	}
	return c.writeOutcome(w, r, req, outcome{resp: resp, status: status, dur: dur})
}
