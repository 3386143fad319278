package cache

// Bypass: requests the cache does not handle at all. Methods other than
// GET and HEAD (Cache-Status fwd=method), and requests with Authorization
// unless Policy.CacheAuthorized (fwd=bypass; detail=authorization), go to
// the origin unchanged; nothing is looked up or stored. A successful
// unsafe method invalidates its URL (RFC 9111 section 4.4).

import (
	"fmt"
	"net/http"
	"time"
)

// bypassMethod bypasses a request whose method the cache does not store,
// and invalidates the URL when an unsafe one succeeded.
func (q *request) bypassMethod() (Result, error) {
	res, err := q.bypass(statusBypassMethod)
	if err == nil && res.StatusCode < 400 && unsafeMethod(q.r.Method) {
		q.c.invalidate(q.primaryKey())
	}
	return res, err
}

// bypass forwards the client's request unchanged and streams the answer,
// with status as its Cache-Status; nothing is stored.
func (q *request) bypass(status string) (Result, error) {
	r := q.r
	q.c.stats.originFetch.Add(1)
	o := r.Clone(r.Context())
	o.RequestURI = ""
	start := time.Now()
	resp, err := q.fetch(q.fetchContext(r), o)
	dur := time.Since(start)
	if err != nil {
		return Result{CacheStatus: status, OriginDuration: dur}, fmt.Errorf("%w: %w", ErrOrigin, err)
	}
	return q.writeOutcome(outcome{resp: resp, status: status, dur: dur})
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}
