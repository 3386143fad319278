package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/edgeproxy/edge/proxy/rawconn"
)

// maxResponseHeaderBytes bounds the bytes read from an origin before its
// response headers are complete (like http.Transport.MaxResponseHeaderBytes).
const maxResponseHeaderBytes = 1 << 20

var errHeaderTooLarge = errors.New("response headers exceed 1 MiB")

// leanPool is the HTTP/1.1 client of a plain-http pool. It does the whole
// exchange on the caller's goroutine: take an idle keep-alive connection
// (or dial one), write the request, read the response (leanwire.go, or
// http.ReadResponse for anything unusual) and hand back a body that returns
// the connection to the idle stack when it has been read to EOF.
// http.Transport needs two goroutines per connection and a hand-off
// between them and the caller for every request; on busy cores those
// wake-ups, not the parsing, set the throughput.
type leanPool struct {
	p    *Pools
	pl   *pool
	addr string
	dial DialFunc

	mu      sync.Mutex
	idle    []*leanConn // oldest first; reuse takes the newest
	sweeper *time.Timer // closes connections idle longer than IdleConnTimeout
	retired bool
}

// leanConn is one origin connection with its buffers. It is the io.Reader
// under br: it counts the bytes of the current exchange and bounds the
// response header.
type leanConn struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool  // taken from the idle stack
	nread  int64 // bytes read in the current exchange
	budget int64 // > 0 while reading headers: bytes still allowed
	// closeConn closes conn; a cancelled request context calls it.
	closeConn func()

	// raw waits for the response without a read that would find nothing
	// (sendThenWait); nil when conn exposes no descriptor.
	raw     syscall.RawConn
	idleFor time.Duration // how long it sat in the idle stack before this exchange
	sent    bool          // sendThenWait's state, kept here so the
	sendErr error         // callback (afterSend, made once) allocates nothing
	// afterSend is c.sendOnce as a func value, made once per connection.
	afterSend func(uintptr) bool

	// idle looks at the TCP socket (under TLS too) before reuse.
	idle peeker
}

// peeker tells whether a connection's socket has anything to read, with
// one non-blocking recv(MSG_PEEK) and no allocation.
type peeker struct {
	sock     syscall.RawConn // nil: no descriptor, never pending
	fn       func(uintptr)   // p.peek, made once
	readable bool
	buf      [1]byte
}

func (p *peeker) init(sock syscall.RawConn) {
	p.sock = sock
	p.fn = p.peek
}

// pending reports whether the peer has sent bytes not yet read, or
// closed the connection. Control, unlike Read, ignores the read deadline
// (a past one would fail the peek) and takes no lock.
func (p *peeker) pending() bool {
	if p.sock == nil {
		return false
	}
	p.readable = false
	if err := p.sock.Control(p.fn); err != nil {
		return true
	}
	return p.readable
}

// clean reports whether an idle connection may carry a new exchange:
// the origin has sent nothing on it since the last response and has not
// closed it. Bytes there belong to no request: a late second response,
// the body of a HEAD answer, a close. Delivered to the next exchange
// they would be read as its response, however much later it comes and
// whichever tenant it serves (pools are shared by origin), and the
// connection would stay out of step. One non-blocking recv(MSG_PEEK).
func (c *leanConn) clean() bool { return !c.idle.pending() }

// parkFirstMaxIdle bounds how long a connection may have sat idle and
// still skip the read before the wait. See sendThenWait.
const parkFirstMaxIdle = time.Second

// sendThenWait flushes the request and waits until the origin's answer
// is readable, without the read that finds nothing yet. A plain Read
// right after the write almost always fails with EAGAIN before the
// goroutine parks: one wasted system call per exchange. Here the flush
// runs inside RawConn.Read, after it has cleared the descriptor's stale
// readiness and before it parks, so whatever the origin sends after the
// request wakes it. Bytes that arrived before the request (an origin
// that closed the idle connection) wake it too: writing to a closed
// socket draws a reset. The one case that waits for the deadline instead
// is an origin that half-closed an idle connection and kept reading; a
// connection idle longer than parkFirstMaxIdle takes the plain path.
// sendErr is the flush's error, waitErr the wait's (deadline, closed).
func (c *leanConn) sendThenWait() (sendErr, waitErr error) {
	c.sent, c.sendErr = false, nil
	waitErr = c.raw.Read(c.afterSend)
	sendErr, c.sendErr = c.sendErr, nil
	return sendErr, waitErr
}

// sendOnce is sendThenWait's callback: the first call flushes and asks
// to wait (unless the flush failed); the next, on readiness, ends it.
func (c *leanConn) sendOnce(uintptr) bool {
	if c.sent {
		return true
	}
	c.sent = true
	c.sendErr = c.bw.Flush()
	return c.sendErr != nil
}

func (c *leanConn) Read(p []byte) (int, error) {
	if c.budget > 0 && int64(len(p)) > c.budget {
		p = p[:c.budget]
	}
	n, err := c.conn.Read(p)
	c.nread += int64(n)
	if c.budget > 0 {
		if c.budget -= int64(n); c.budget == 0 && err == nil {
			err = errHeaderTooLarge
		}
	}
	return n, err
}

func (p *Pools) newLeanPool(pl *pool, addr string, dial DialFunc) *leanPool {
	return &leanPool{p: p, pl: pl, addr: addr, dial: dial}
}

// retryable: a request that may be sent again on a fresh connection when a
// reused one failed before any response byte. Only idempotent methods
// without a body; never POST, PUT, PATCH, DELETE.
func retryable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

func (lp *leanPool) roundTrip(req *http.Request, in Interim) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		c, err := lp.conn(ctx, attempt > 0)
		if err != nil {
			if !errors.Is(err, errOriginH2) { // that request goes to http.Transport, body and all
				closeReqBody(req)
			}
			return nil, err
		}
		resp, err := lp.exchange(ctx, c, req, nil, in)
		if err == nil {
			return resp, nil
		}
		var oe *opError
		if attempt == 0 && c.reused && c.nread == 0 && ctx.Err() == nil &&
			!errors.As(err, &oe) && retryable(req) {
			continue // the origin closed a kept-alive connection: it saw nothing
		}
		closeReqBody(req)
		return nil, err
	}
}

func closeReqBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// conn returns an idle connection (unless fresh) or dials a new one.
// Every idle connection is peeked before reuse (clean): one the origin
// has closed or sent anything on is closed and the next one tried. This
// is what nginx and HAProxy do for an idle upstream connection that
// becomes readable, and what http.Transport's background read gives it.
// It also spares requests that are never replayed (POST, …) the usual
// race with an origin's keep-alive timeout.
func (lp *leanPool) conn(ctx context.Context, fresh bool) (*leanConn, error) {
	for !fresh {
		lp.mu.Lock()
		n := len(lp.idle)
		if n == 0 {
			lp.mu.Unlock()
			break
		}
		c := lp.idle[n-1]
		lp.idle[n-1] = nil
		lp.idle = lp.idle[:n-1]
		lp.mu.Unlock()
		if c.idleFor = time.Since(c.idleAt); c.idleFor >= lp.p.cfg.IdleConnTimeout {
			// The newest is stale: so are all below it.
			lp.closeConn(c)
			lp.closeIdle()
			break
		}
		if c.clean() {
			c.reused = true
			return c, nil
		}
		lp.closeConn(c)
	}
	nc, err := lp.dial(ctx, "tcp", lp.addr)
	if err != nil {
		return nil, err
	}
	raw := rawConn(nc)
	if raw != nil {
		// Reads and writes as raw system calls (proxy/rawconn); nc keeps
		// Close (and its gauge) and the deadlines.
		if rc := rawconn.New(nc, raw); rc != nil {
			nc = rc
		}
	}
	c := &leanConn{conn: nc, raw: raw}
	if raw != nil {
		c.idle.init(raw)
	} else {
		c.idle.init(socketOf(nc)) // under TLS
	}
	c.closeConn = func() { nc.Close() } // made once: AfterFunc takes it per exchange
	c.afterSend = c.sendOnce
	if br, ok := lp.p.readers.Get().(*bufio.Reader); ok {
		br.Reset(c)
		c.br = br
	} else {
		c.br = bufio.NewReader(c)
	}
	if bw, ok := lp.p.writers.Get().(*bufio.Writer); ok {
		bw.Reset(nc)
		c.bw = bw
	} else {
		c.bw = bufio.NewWriter(nc)
	}
	return c, nil
}

// exchange writes req on c and reads the response headers. On error c is
// closed.
// exchange sends req on c and reads the response head. With d set, a
// response peekDirect accepts is handed back through d (its head left in
// c's buffer) and exchange returns a nil response. in, when set, gets
// the informational responses before the final one.
func (lp *leanPool) exchange(ctx context.Context, c *leanConn, req *http.Request, d *directResponse, in Interim) (*http.Response, error) {
	c.nread = 0
	stop := closeOnDone(ctx, c.closeConn)
	fail := func(err error) (*http.Response, error) {
		stop.stop()
		lp.closeConn(c)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("upstream %s: %w", lp.addr, context.Cause(ctx))
		}
		return nil, err
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	rht := lp.p.cfg.ResponseHeaderTimeout
	if !hasBody {
		// A bodiless request fits in the socket's send buffer, so the
		// write cannot block: only the wait for the response is bounded.
		c.conn.SetReadDeadline(time.Now().Add(rht))
	}
	var err error
	if !writeRequest(c.bw, req) {
		err = req.Write(c.bw) // closes req.Body
	}
	if err == nil {
		if !hasBody && c.raw != nil && c.idleFor < parkFirstMaxIdle {
			var waitErr error
			if err, waitErr = c.sendThenWait(); err == nil && waitErr != nil {
				return fail(lp.readError(ctx, waitErr))
			}
		} else {
			err = c.bw.Flush()
		}
	}
	if err != nil {
		werr := fmt.Errorf("upstream %s: write request: %w", lp.addr, err)
		if !hasBody || ctx.Err() != nil {
			return fail(werr)
		}
		// The origin may have answered (413, 401) and stopped reading:
		// take its response if it is there, without keeping the connection.
		c.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		resp, rerr := lp.readResponse(c, req, in)
		if rerr != nil {
			return fail(werr)
		}
		resp.Close = true
		c.conn.SetReadDeadline(time.Time{})
		return lp.wrap(c, resp, stop), nil
	}
	if hasBody {
		c.conn.SetReadDeadline(time.Now().Add(rht))
	}
	if d != nil {
		ok, err := peekDirect(c, d)
		if err != nil {
			return fail(lp.readError(ctx, err))
		}
		if ok {
			if d.d.ContentLength > int64(c.br.Buffered()) {
				c.conn.SetReadDeadline(time.Time{})
			}
			lp.wrapDirect(c, d, stop)
			return nil, nil
		}
	}
	resp, err := lp.readResponse(c, req, in)
	if err != nil {
		return fail(lp.readError(ctx, err))
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Upgrade requests never come here; a 101 to anything else is
		// a broken origin.
		return fail(fmt.Errorf("upstream %s: 101 Switching Protocols to a request without Upgrade", lp.addr))
	}
	// The body is read without a deadline (it may be long); when it is
	// already buffered whole, the connection is not read again before the
	// next exchange sets its own deadline, so the clear is skipped (conn
	// clears it before its liveness peek).
	if resp.ContentLength < 0 || resp.ContentLength > int64(c.br.Buffered()) {
		c.conn.SetReadDeadline(time.Time{})
	}
	return lp.wrap(c, resp, stop), nil
}

// readError names a failure to read the response head: a deadline is a
// response-header timeout (→ 504), unless the context ended.
func (lp *leanPool) readError(ctx context.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
		return &opError{op: "response header", addr: lp.addr, err: err, timeout: true}
	}
	return fmt.Errorf("upstream %s: read response: %w", lp.addr, err)
}

// afterFuncer is a context with its own AfterFunc method, the interface
// the context package documents for contexts that schedule functions
// themselves. context.AfterFunc would still allocate a child context and
// two closures around it; the lean client calls the method directly.
type afterFuncer interface {
	AfterFunc(f func()) (stop func() bool)
}

// afterRegistry is an afterFuncer that also registers a function under a
// number and stops it by that number, so not even AfterFunc's stop
// closure is allocated: proxy/h1's request context. RegisterAfter's ok
// is false when it cannot hold f itself; AfterFunc then can.
type afterRegistry interface {
	afterFuncer
	RegisterAfter(f func()) (n uint64, ok bool)
	StopAfter(n uint64) bool
}

// stopper undoes closeOnDone's registration. The zero value has nothing
// to undo.
type stopper struct {
	reg afterRegistry // with n, or
	n   uint64
	fn  func() bool // an AfterFunc's stop
}

// stop unregisters the function; false means it has run (or will).
func (s stopper) stop() bool {
	switch {
	case s.reg != nil:
		return s.reg.StopAfter(s.n)
	case s.fn != nil:
		return s.fn()
	}
	return true
}

// closeOnDone arranges for f (closing the connection) to run when ctx
// ends, by the cheapest means ctx offers.
func closeOnDone(ctx context.Context, f func()) stopper {
	switch a := ctx.(type) {
	case afterRegistry:
		if n, ok := a.RegisterAfter(f); ok {
			return stopper{reg: a, n: n}
		}
		return stopper{fn: a.AfterFunc(f)}
	case afterFuncer:
		return stopper{fn: a.AfterFunc(f)}
	}
	if ctx.Done() != nil {
		return stopper{fn: context.AfterFunc(ctx, f)}
	}
	return stopper{}
}

// readResponse reads the final response, skipping 1xx (other than 101),
// each of which in (when set) is given first.
func (lp *leanPool) readResponse(c *leanConn, req *http.Request, in Interim) (*http.Response, error) {
	c.budget = maxResponseHeaderBytes
	defer func() { c.budget = 0 }()
	if resp, err := readResponseFast(c.br, req); resp != nil || err != nil {
		return resp, err
	}
	for {
		conn := connectionFields(c.br)
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		if resp.Close && resp.Header["Connection"] == nil && conn != nil {
			resp.Header["Connection"] = conn // net/http consumed it
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if in != nil {
			in.Interim(resp.StatusCode, resp.Header)
		}
	}
}

// wrap makes resp's body give c back when read to EOF. A bodiless
// response gives it back now.
func (lp *leanPool) wrap(c *leanConn, resp *http.Response, stop stopper) *http.Response {
	keep := !resp.Close && !resp.Request.Close
	if resp.Body == http.NoBody {
		lp.release(c, stop.stop() && keep)
		return resp
	}
	var b *leanBody
	if cl, ok := resp.Body.(*clBody); ok && cl.lr != nil {
		b = &cl.lr.lean
	} else {
		b = new(leanBody)
	}
	b.lp, b.c, b.body, b.stop, b.keep, b.ctx = lp, c, resp.Body, stop, keep, resp.Request.Context()
	resp.Body = b
	return resp
}

// release returns c to the idle stack, or closes it.
func (lp *leanPool) release(c *leanConn, keep bool) {
	if !keep || c.br.Buffered() > 0 { // bytes beyond the response: not reusable
		lp.closeConn(c)
		return
	}
	c.idleAt = time.Now()
	lp.mu.Lock()
	if lp.retired || len(lp.idle) >= lp.p.cfg.MaxIdleConnsPerHost {
		lp.mu.Unlock()
		lp.closeConn(c)
		return
	}
	lp.idle = append(lp.idle, c)
	if lp.sweeper == nil {
		lp.sweeper = time.AfterFunc(lp.p.cfg.IdleConnTimeout, lp.sweep)
	}
	lp.mu.Unlock()
}

// sweep closes the connections idle longer than IdleConnTimeout and
// schedules itself for the next one to expire.
func (lp *leanPool) sweep() {
	timeout := lp.p.cfg.IdleConnTimeout
	var stale []*leanConn
	lp.mu.Lock()
	now := time.Now()
	n := 0
	for n < len(lp.idle) && now.Sub(lp.idle[n].idleAt) >= timeout {
		n++
	}
	if n > 0 {
		stale = append(stale, lp.idle[:n]...)
		rest := copy(lp.idle, lp.idle[n:])
		clear(lp.idle[rest:])
		lp.idle = lp.idle[:rest]
	}
	if len(lp.idle) > 0 && !lp.retired {
		lp.sweeper.Reset(lp.idle[0].idleAt.Add(timeout).Sub(now))
	} else {
		lp.sweeper = nil
	}
	lp.mu.Unlock()
	for _, c := range stale {
		lp.closeConn(c)
	}
}

// closeIdle closes every idle connection.
func (lp *leanPool) closeIdle() {
	lp.mu.Lock()
	idle := lp.idle
	lp.idle = nil
	lp.mu.Unlock()
	for _, c := range idle {
		lp.closeConn(c)
	}
}

// retire closes the idle connections; busy ones close when released.
func (lp *leanPool) retire() {
	lp.mu.Lock()
	lp.retired = true
	lp.mu.Unlock()
	lp.closeIdle()
}

// closeConn closes c and recycles its buffers. Only c's owner calls it.
func (lp *leanPool) closeConn(c *leanConn) {
	c.conn.Close()
	c.br.Reset(nil)
	c.bw.Reset(nil)
	lp.p.readers.Put(c.br)
	lp.p.writers.Put(c.bw)
	c.br, c.bw = nil, nil
}

// leanBody is a response body on a lean connection. Read to EOF, it gives
// the connection back for reuse; closed early, after an error or a
// cancellation, the connection is closed. Close waits for a Read in
// progress; to abort a blocked Read, cancel the request's context.
type leanBody struct {
	lp   *leanPool
	body io.ReadCloser
	stop stopper
	ctx  context.Context
	keep bool

	mu   sync.Mutex
	c    *leanConn // nil once released
	rerr error     // returned by Read after release
}

func (b *leanBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == nil {
		return 0, b.rerr
	}
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		b.finish(b.keep, io.EOF)
	case err != nil:
		if b.ctx.Err() != nil {
			err = fmt.Errorf("upstream %s: %w", b.lp.addr, context.Cause(b.ctx))
		}
		b.finish(false, err)
	}
	return n, err
}

// Close ends the response. Before EOF the connection is closed, not
// drained: the rest of the body may be large or endless.
func (b *leanBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		b.finish(false, errBodyClosed)
	}
	return nil
}

var errBodyClosed = errors.New("upstream: read on closed response body")

// finish releases the connection. b.mu is held.
func (b *leanBody) finish(keep bool, rerr error) {
	c := b.c
	b.c, b.rerr = nil, rerr
	if !b.stop.stop() { // the context ended: the AfterFunc closes c
		keep = false
	}
	b.lp.release(c, keep)
}
