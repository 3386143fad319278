package cache

// Serve and its API (Request, Policy, Result, the hooks), the state one
// request carries through the cache (request), and the switch that sends
// it one way: bypass, hit, stale hit, pass, or fill. Cache keys.

import (
	"context"
	"errors"
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
	// Pass, when set, fetches for a key under a hit-for-miss mark (a
	// "pass", see docs/cache.md, "Vocabulary"): the client's request as
	// it is (its own Accept-Encoding, Range and conditionals), with no
	// rewriting and no decoding, bound to the client. Nil fetches such
	// keys with the Fetcher, as for a miss.
	Pass PassFetcher
	// Context, when set, is what the fetches made for this client derive
	// from instead of r's context (the miss it leads, its own fetch after
	// an unshareable collapsed one, a bypass): it must carry r's context's
	// values and cancellation. Background revalidations keep r's.
	Context context.Context
}

// fetchContext is Request.Context, or r's.
func (req *Request) fetchContext(r *http.Request) context.Context {
	if req.Context != nil {
		return req.Context
	}
	return r.Context()
}

// PassFetcher is the hook of Request.Pass: it fetches a request passed
// under a hit-for-miss mark.
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
	OutcomeBypass                     // the cache was not consulted (method, Authorization): bypass.go
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
	case strings.HasPrefix(status, statusBypass), strings.HasPrefix(status, statusBypassMethod):
		return OutcomeBypass
	}
	return OutcomeMiss
}

const cacheName = "edge"

// Cache-Status values written as they are. They, and the classes
// outcomeOf finds in them, are a user-visible contract.
const (
	statusHit                 = cacheName + "; hit"
	statusHitStale            = cacheName + "; hit; detail=stale"
	statusBypass              = cacheName + "; fwd=bypass"
	statusBypassAuthorization = statusBypass + "; detail=authorization"
	statusBypassMethod        = cacheName + "; fwd=method"
)

// Serve answers r from the cache or through fetch. It returns an error
// when nothing was written to w (the origin failed and no stale response
// could stand in; the caller maps it to a status: 502, 504), or one
// wrapping ErrTruncated when the origin broke off mid-body (the caller
// aborts the response).
func (c *Cache) Serve(w http.ResponseWriter, r *http.Request, req Request, fetch Fetcher) (Result, error) {
	// Field by field: a composite literal is built in a temporary and
	// copied again, and this is on every hit.
	var q request
	q.Request, q.c, q.w, q.r, q.fetch = req, c, w, r, fetch
	res, err := q.serve()
	res.Outcome = outcomeOf(res.CacheStatus)
	return res, err
}

// request is one request's way through Serve: what the caller said
// (Request), the client's request and writer, the Fetcher, and what
// Serve derives once (path and query, keys, the clock reading). The
// paths a request can take are its methods, in the files named after
// them:
//
//	lookup.go      lookup through L1, L2, L3 (and a Vary marker)
//	write.go       writing a stored object (hit) or a fetched response
//	fill.go        miss: one collapsed origin fetch per key, then store
//	store.go       building and storing objects
//	revalidate.go  stale objects: background refresh, 304, stale-if-error
//	hitformiss.go  keys under a hit-for-miss mark: pass (and direct.go)
//	bypass.go      requests the cache does not handle (method, Authorization)
//
// It lives on Serve's stack: nothing may keep a pointer to it. A
// background revalidation and a PassMark take copies.
type request struct {
	Request
	c     *Cache
	w     http.ResponseWriter
	r     *http.Request
	fetch Fetcher

	pq   string    // path and query, as in the key
	base string    // the primary key
	key  string    // the key the object lives under: base, or its Vary key; a miss's flight key
	now  time.Time // one clock read for the lookup, freshness and Age of a hit

	// fwdRequest: a stored object is revalidated because the client asked
	// (Policy.ClientNoCache); Cache-Status says fwd=request.
	fwdRequest bool
}

// serve sorts the request: bypass, hit, stale hit, pass under a
// hit-for-miss mark, or miss (fill).
func (q *request) serve() (Result, error) {
	r := q.r
	if q.Scheme == "" {
		q.Scheme = "http"
		if r.TLS != nil {
			q.Scheme = "https"
		}
	}
	if q.Host == "" {
		q.Host = strings.ToLower(r.Host)
	}
	q.pq = pathQuery(r)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	default:
		return q.bypassMethod()
	}
	if !q.Policy.CacheAuthorized && q.authorized() {
		return q.bypass(statusBypassAuthorization)
	}
	q.base = q.primaryKey()
	q.now = q.c.now()
	o, tier, soft := q.lookup()
	if o != nil && o.hitForMiss {
		return q.serveMarked(o)
	}
	if o != nil && !(q.Policy.ClientNoCache && clientNoCache(r)) {
		age := o.age(q.now)
		if !soft && !o.noCache && age < o.lifetime {
			return q.serveObjectAt(o, Result{CacheStatus: statusHit, Tier: tierNames[tier]}, q.now)
		}
		if !o.mustReval && !o.noCache && (soft || age-o.lifetime < o.swr) {
			q.revalidateAsync(o)
			q.c.stats.stale.Add(1)
			return q.serveObjectAt(o, Result{CacheStatus: statusHitStale, Tier: tierNames[tier]}, q.now)
		}
	}
	if o != nil && q.Policy.ClientNoCache && clientNoCache(r) {
		q.fwdRequest = true
	}
	return q.fill(o)
}

// authorized reports whether the client's request carries credentials
// (RFC 9111 section 3.5 then limits what is stored).
func (q *request) authorized() bool {
	return headerValue(q.r.Header, "Authorization") != ""
}

// primaryKey is the request's primary key (cacheKey).
func (q *request) primaryKey() string {
	return cacheKey(q.Tenant, q.Generation, q.Scheme, q.Host, q.pq, q.Variant)
}

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
