package upstream

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
)

// DefaultMaxUploadsPerOrigin is Config.MaxUploadsPerOrigin's default.
const DefaultMaxUploadsPerOrigin = 128

// ErrUploadsBusy is returned, before anything is sent, for a request
// with a body when its pool already has Config.MaxUploadsPerOrigin
// request bodies streaming. The proxy answers 503.
var ErrUploadsBusy = errors.New("upstream: too many request bodies streaming to this origin")

// uploads bounds the request bodies a pool streams at once. Request
// bodies are relayed as they arrive, so a client that sends slowly
// holds an origin connection (and, at most origins, a worker) for as
// long as it likes; nginx avoids this by buffering the body before it
// connects, which costs disk and latency. A slot is taken before a
// connection is and given back when the body has been read to its end
// (or failed, or was closed): a fast POST holds it for microseconds, a
// trickling upload for its whole length. With all slots taken the
// request fails at once (ErrUploadsBusy → 503) rather than queueing:
// waiting would hold the client as long, and tell it nothing.
type uploads struct {
	max int64 // <= 0: unbounded
	n   atomic.Int64
}

func (u *uploads) acquire() bool {
	if u.max <= 0 {
		return true
	}
	if u.n.Add(1) > u.max {
		u.n.Add(-1)
		return false
	}
	return true
}

func (u *uploads) release() {
	if u.max > 0 {
		u.n.Add(-1)
	}
}

// uploadBody gives its pool's upload slot back once, at the body's end,
// its first read error, or Close.
type uploadBody struct {
	io.ReadCloser
	u    *uploads
	done atomic.Bool
}

func (b *uploadBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.release()
	}
	return n, err
}

func (b *uploadBody) Close() error {
	b.release()
	return b.ReadCloser.Close()
}

func (b *uploadBody) release() {
	if b.done.CompareAndSwap(false, true) {
		b.u.release()
	}
}

// withUploadSlot returns req with its body holding an upload slot, or
// ErrUploadsBusy (with req's body closed). A bodiless request passes.
func (u *uploads) withUploadSlot(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody || u.max <= 0 {
		return req, nil
	}
	if !u.acquire() {
		req.Body.Close()
		return nil, ErrUploadsBusy
	}
	r2 := new(http.Request)
	*r2 = *req
	r2.Body = &uploadBody{ReadCloser: req.Body, u: u}
	return r2, nil
}
