package cache

// Hit-for-miss: a key whose last response could not be stored keeps a
// small mark in L1, and the requests that find it skip collapsing. Each
// is passed: sent to the origin on its own, bound to its client, as the
// client's own request when Request.Pass is set (then possibly answered
// by the proxy's direct relay, direct.go). What the origin answers
// decides whether the mark is dropped or renewed.

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// hitForMissTTL is how long a key whose response could not be stored
// (no-store, private, Set-Cookie, too large…) skips request collapsing.
// Collapsing such a key makes every concurrent request wait for the one
// in flight and then fetch again for itself: two origin round trips in a
// row, and a queue under load. Varnish keeps its hit-for-miss objects for
// 120 s by default; so does Edge. A storable response replaces the mark
// at once, so a key that becomes cacheable is cached on its next miss.
const hitForMissTTL = 2 * time.Minute

// markHitForMiss records in L1 that q.key's last response was not
// storable, for reason.
func (q *request) markHitForMiss(reason string) {
	c := q.c
	m := &object{
		hitForMiss: true, markReason: reason,
		tenant: q.Tenant, host: q.Host, pathQuery: q.pq,
		responseTime: c.now(), lifetime: hitForMissTTL,
	}
	m.finish()
	c.l1.Set(q.key, m)
	c.stats.hitForMiss.Add(1)
}

// serveMarked answers a key under a hit-for-miss mark: its own origin
// fetch, bound to the client's context, with no collapsing. With
// Request.Pass the request is passed as it is (pass); without, it is
// fetched as for a miss, and the response is stored if it now can be,
// which replaces the mark. A mark past half its life is renewed.
func (q *request) serveMarked(mark *object) (Result, error) {
	if q.Pass != nil {
		return q.pass(mark)
	}
	out := q.fetchOrigin(q.r.Context(), nil)
	if out.markReason != "" && q.c.now().Sub(mark.responseTime) > hitForMissTTL/2 {
		q.markHitForMiss(out.markReason)
	}
	return q.writeOutcome(out)
}

// pass answers a key under a hit-for-miss mark with Request.Pass: the
// client's own request, streamed back, nothing stored. It is the cheap
// path for URLs that are never cacheable (about a fifth of the CPU of a
// miss through fetchOrigin, which rewrites the request for storing). A
// DirectPasser is offered the request first. When the origin allows
// storing again, the mark is dropped so that the next request fills the
// cache; a mark past half its life is renewed.
func (q *request) pass(mark *object) (Result, error) {
	q.c.stats.originFetch.Add(1)
	var resp *http.Response
	var dur time.Duration
	if dp, ok := q.Pass.(DirectPasser); ok {
		o := dp.PassDirect(q.r, PassMark{q: *q, mark: mark})
		if o.Handled {
			return o.Result, o.Err
		}
		resp, dur = o.Fallback, o.FallbackDuration
	}
	if resp == nil {
		start := time.Now()
		var err error
		resp, err = q.Pass.FetchPass(q.r)
		dur = time.Since(start)
		if err != nil {
			return Result{CacheStatus: statusPassed, OriginDuration: dur}, fmt.Errorf("%w: %w", ErrOrigin, err)
		}
	}
	status := q.passed(mark, resp.StatusCode, resp.Header, resp.ContentLength, q.authorized())
	return q.writeOutcome(outcome{resp: resp, status: status, dur: dur})
}

// statusPassed is the Cache-Status of a passed request before the
// origin's answer adds to it: a pass is a miss to the client.
const statusPassed = cacheName + "; fwd=miss"

// passed decides on the origin's answer to a request passed under a
// hit-for-miss mark and returns its Cache-Status: when the origin allows
// storing again the mark is dropped (the next request fills the cache); a
// mark past half its life is renewed.
func (q *request) passed(mark *object, code int, h http.Header, contentLength int64, authorized bool) string {
	c := q.c
	status := statusPassed
	if code != http.StatusOK {
		status += "; fwd-status=" + strconv.Itoa(code)
	}
	now := c.now()
	fr := decide(code, h, q.Policy, authorized, now)
	c.checkStorable(h, contentLength, &fr)
	switch {
	case fr.storable:
		c.l1.Invalidate(q.key)
	case fr.reason != "":
		if ms, ok := markStatuses[fr.reason]; ok && code == http.StatusOK {
			status = ms // the usual case, without building the string
		} else {
			status += "; detail=" + fr.reason
		}
		if markable(fr.reason) && now.Sub(mark.responseTime) > hitForMissTTL/2 {
			q.markHitForMiss(fr.reason)
		}
	}
	return status
}

// markStatuses holds the reasons not to store that are properties of the
// response, with the Cache-Status of a 200 passed for each.
var markStatuses = func() map[string]string {
	m := map[string]string{}
	for _, r := range []string{"no-store", "private", "set-cookie", "vary", "stale", "no-freshness", "encoding", "too-large"} {
		m[r] = statusPassed + "; detail=" + r
	}
	return m
}()

// markable reports whether a reason not to store is a property of the
// response, worth a hit-for-miss mark, rather than of this request or a
// passing error ("status", "authorization").
func markable(reason string) bool {
	_, ok := markStatuses[reason]
	return ok
}
