package cache

import (
	"net/http"
	"strings"
)

// PassMark is a hit-for-miss mark found by PassMarked: the request goes
// to the origin and nothing is stored, as Serve would do with it, but the
// caller relays the response itself (the proxy's direct path, which
// edits the origin's header lines without building an http.Header).
type PassMark struct {
	c    *Cache
	req  Request
	key  string
	pq   string
	mark *object
}

// PassMarked reports whether Serve would pass the GET request r straight
// to the origin under a hit-for-miss mark. It reads L1 alone (marks live
// only there) and counts nothing; when it reports false the caller
// serves r through Serve, which does the full lookup. req is as for
// Serve; a request with Authorization the policy does not cache is never
// reported (Serve bypasses it with its own Cache-Status).
func (c *Cache) PassMarked(r *http.Request, req Request) (PassMark, bool) {
	if r.Method != http.MethodGet {
		return PassMark{}, false
	}
	if !req.Policy.CacheAuthorized && headerValue(r.Header, "Authorization") != "" {
		return PassMark{}, false
	}
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
	key := cacheKey(req.Tenant, req.Scheme, req.Host, pq, req.Variant)
	now := c.now()
	o, ok := c.l1.GetIfPresent(key)
	if ok && o.marker {
		if now.After(o.usableUntil()) {
			return PassMark{}, false // Serve drops it and fills under key
		}
		key = varyKey(key, varyValues(r, o.vary))
		o, ok = c.l1.GetIfPresent(key)
	}
	if !ok || !o.pass || now.After(o.usableUntil()) {
		return PassMark{}, false
	}
	return PassMark{c: c, req: req, key: key, pq: pq, mark: o}, true
}

// Fetching counts a request passed under m as Serve would (the lookup's
// misses and the origin fetch); call it once, before the fetch.
func (m *PassMark) Fetching() {
	c := m.c
	t := &c.stats.tiers
	t[tierL1].misses.Add(1)
	if c.l2 != nil {
		t[tierL2].misses.Add(1)
	}
	if m.req.Persist && c.l3 != nil {
		t[tierL3].misses.Add(1)
	}
	c.stats.originFetch.Add(1)
}

// Passed decides on the origin's answer to a request passed under m as
// Serve's pass-through does (the mark is dropped when the origin allows
// storing again, renewed past half its life) and returns the
// Cache-Status to send. h needs only the fields caching decisions read:
// Cache-Control, Expires, Date, Last-Modified, ETag, Set-Cookie, Vary and
// Content-Encoding.
func (m *PassMark) Passed(code int, h http.Header, contentLength int64, authorized bool) string {
	return m.c.passed(m.key, &m.req, m.mark, m.pq, code, h, contentLength, authorized)
}
