package cache

import (
	"net/http"
	"time"
)

// DirectPasser is implemented by a Request.Pass that can answer a request
// passed under a hit-for-miss mark itself, by direct relay (the proxy's
// direct path, which relays the origin's header lines as bytes): Serve
// offers it the request before FetchPass, and what it did comes back as a
// DirectOutcome.
type DirectPasser interface {
	PassDirect(r *http.Request, m PassMark) DirectOutcome
}

// DirectOutcome is what a DirectPasser did with a request. Its zero value
// declines: nothing fetched, nothing written, the cache's own pass
// (FetchPass) answers.
type DirectOutcome struct {
	// Handled: the passer answered, or failed having written nothing.
	// Result and Err are then what Serve returns: an error wrapping
	// ErrOrigin when nothing was written, one wrapping ErrTruncated
	// when the origin broke off mid-body.
	Handled bool
	Result  Result
	Err     error

	// Fallback, when not Handled, is the origin's response the passer
	// fetched but leaves to the cache's own pass, as FetchPass would
	// have returned it: Serve relays it instead of calling FetchPass, so
	// the origin is not asked twice. FallbackDuration is the time the
	// origin took to answer with headers.
	Fallback         *http.Response
	FallbackDuration time.Duration
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
