package proxy

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// DefaultClientBodyTimeout is Config.ClientBodyTimeout's default, as
// nginx's client_body_timeout.
const DefaultClientBodyTimeout = 60 * time.Second

// ClientBodyError is a failure to read the client's request body while
// it was being sent to the origin: malformed framing (a chunk size that
// is not hex or overflows, a bare LF in a chunk extension, a body
// shorter than its Content-Length) or a read that waited longer than
// Config.ClientBodyTimeout. It is the client's error, not the
// origin's: the handler answers 400 (408 for the timeout), closes the
// connection and logs it at Info, not as an origin failure.
type ClientBodyError struct {
	Err error
	// Timeout: no byte of the body came for ClientBodyTimeout.
	Timeout bool
}

func (e *ClientBodyError) Error() string { return "read client request body: " + e.Err.Error() }
func (e *ClientBodyError) Unwrap() error { return e.Err }

// clientBody is the request body as the fetch chain reads it: each read
// waits at most the body timeout for the client (a read deadline on the
// client connection, moved when it has drifted by an eighth of the
// timeout, not per read), and a failure is kept as a ClientBodyError.
// The handler consults err because the error the origin client returns
// does not always wrap the body's (net/http's request writer hides it).
type clientBody struct {
	rw      http.ResponseWriter // set by ServeHTTP for a request with a body
	timeout time.Duration       // 0: none

	rc    io.ReadCloser
	ctl   *http.ResponseController // nil: no deadline
	moved time.Time                // when the deadline was last set

	mu  sync.Mutex // err is read by the handler, set by the origin client's reader
	err *ClientBodyError
}

// wrap makes b the reader of rc (the client's body) and returns it; rc
// is returned as is for a request ServeHTTP saw no body in.
func (b *clientBody) wrap(rc io.ReadCloser) io.ReadCloser {
	if b.rw == nil {
		return rc
	}
	b.rc = rc
	if b.timeout > 0 {
		b.ctl = http.NewResponseController(b.rw)
	}
	return b
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.ctl != nil {
		if now := time.Now(); now.Sub(b.moved) > b.timeout/8 {
			if b.ctl.SetReadDeadline(now.Add(b.timeout)) != nil {
				b.ctl = nil // the connection cannot: go without
			} else {
				b.moved = now
			}
		}
	}
	n, err := b.rc.Read(p)
	switch {
	case err == nil:
	case err == io.EOF:
		// Done: the server reads on (its background read, the next
		// request) with deadlines of its own.
		b.clearDeadline()
	default:
		be := &ClientBodyError{Err: err, Timeout: errors.Is(err, os.ErrDeadlineExceeded)}
		b.mu.Lock()
		b.err = be
		b.mu.Unlock()
		return n, be
	}
	return n, err
}

// Close does not close the server's body: net/http does that after the
// handler, and its Close reads up to 256 KiB of what is left, which the
// origin client would then wait for on a slow client (a pool that
// refuses the request, a dial that fails) before the answer goes out.
func (b *clientBody) Close() error { return nil }

func (b *clientBody) clearDeadline() {
	if b.ctl != nil {
		b.ctl.SetReadDeadline(time.Time{})
		b.ctl = nil
	}
}

// failed returns the body's read error, if any.
func (b *clientBody) failed() *ClientBodyError {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
