package cache

import "net/http"

// DirectPasser is implemented by a Request.Pass that can answer a request
// passed under a hit-for-miss mark itself, by direct relay (the proxy's
// direct path, which relays the origin's header lines as bytes): Serve
// offers it the request before FetchPass. It reports handled false,
// having written nothing, when it leaves the request to FetchPass and the
// cache's own pass (it may have fetched the response already and hand it
// over through FetchPass). When it handles the request, res and err are
// what Serve returns: an error wrapping ErrOrigin when nothing was
// written, one wrapping ErrTruncated when the origin broke off mid-body.
type DirectPasser interface {
	PassDirect(r *http.Request, m PassMark) (res Result, handled bool, err error)
}

// PassMark is the hit-for-miss mark a request is passed under, for a
// DirectPasser to decide on the origin's answer as Serve would.
type PassMark struct {
	q    request // a copy: a pointer to Serve's would move it to the heap on every call
	mark *object
}

// Passed decides on the origin's answer to a request passed under m as
// Serve's own pass does (the mark is dropped when the origin allows
// storing again, renewed past half its life) and returns the
// Cache-Status to send. h needs only the fields caching decisions read:
// Cache-Control, Expires, Date, Last-Modified, ETag, Set-Cookie, Vary and
// Content-Encoding.
func (m PassMark) Passed(code int, h http.Header, contentLength int64, authorized bool) string {
	return m.q.passed(m.mark, code, h, contentLength, authorized)
}

// Status is the Cache-Status of a request passed under m that got no
// response from the origin.
func (m PassMark) Status() string { return statusPassed }
