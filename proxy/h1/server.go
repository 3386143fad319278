package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Buffer sizes per connection. A header block that does not fit in
// readBufSize goes to the fallback, which allows up to its own
// MaxHeaderBytes.
const (
	readBufSize  = 8 << 10
	writeBufSize = 4 << 10
)

// Defaults for the zero Server fields.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
)

// Server serves HTTP/1.1 connections with Handler, handing the ones it
// does not serve to Fallback. The zero value needs Handler and Fallback.
type Server struct {
	// Handler serves every request this server parses.
	Handler http.Handler
	// Fallback receives a connection, with the bytes read so far replayed,
	// when a request is not one this server handles. Use Handoff.Offer
	// with a net/http server serving the Handoff. nil closes them.
	Fallback func(net.Conn)
	// ReadHeaderTimeout bounds the reading of a request's header once its
	// first byte has arrived, and the wait for a connection's first
	// request.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long (less
	// up to an eighth of it, at most a second: the deadline is not moved
	// for every request).
	IdleTimeout time.Duration
	// MaxHeaderBytes, when below the read buffer, hands larger header
	// blocks to the fallback earlier (so its limit applies).
	MaxHeaderBytes int
	// ConnState, if set, is called with StateNew and StateClosed (and
	// StateHijacked... never: upgrades go to the fallback).
	ConnState func(net.Conn, http.ConnState)
	// Logger receives handler panics. nil discards.
	Logger *slog.Logger

	date       dateCache
	inShutdown atomic.Bool
	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	conns      map[*conn]struct{}
	sweepOnce  sync.Once
	sweepTick  atomic.Int64  // rounds of the watch sweep so far
	sweepStop  chan struct{} // closes to end the watch sweep; guarded by mu
}

var (
	errHandoff  = errors.New("h1: hand over")
	errShutdown = errors.New("h1: shutting down")
)

// newConnGrace is how long Shutdown leaves a connection that has not sent
// its first request, as net/http does: a client that just connected is
// about to send one, and closing it would fail that request.
const newConnGrace = 5 * time.Second

// Connection states, as Shutdown sees them.
const (
	stateActive = iota // reading or serving a request
	stateIdle          // waiting for a request after serving one
	stateNew           // waiting for its first request
)

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}
)

// Serve accepts connections on l until Shutdown or Close; it then
// returns http.ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		rwc, err := l.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c := s.newConn(rwc)
		if c == nil {
			return http.ErrServerClosed
		}
		go c.serve()
	}
}

func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc, start: time.Now()}
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		rwc.Close()
		return nil
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	if s.ConnState != nil {
		s.ConnState(rwc, http.StateNew)
	}
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting, closes idle connections, lets the others
// finish their current request and waits for them, or for ctx. A new
// connection gets newConnGrace to send its first request.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			if st := c.state.Load(); st == stateIdle || st == stateNew && time.Since(c.start) > newConnGrace {
				c.rwc.SetReadDeadline(aLongTimeAgo) // wakes its read
			}
		}
		s.mu.Unlock()
		if n == 0 {
			s.stopSweep()
			return nil
		}
		select {
		case <-ctx.Done():
			s.stopSweep()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners and every connection now.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.stopSweep()
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.rwc.Close()
	}
	return nil
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// conn is one client connection.
type conn struct {
	srv    *Server
	rwc    net.Conn
	remote string
	br     *bufio.Reader
	bw     *bufio.Writer
	w      response

	// peek holds a byte the watch goroutine read: the first byte of a
	// pipelined request, given to br before anything else.
	peek   [1]byte
	peeked bool
	// The watch of the current request (context.go): the request armed
	// last, and a token the watch goroutine sends when it returns.
	watched     atomic.Pointer[requestContext]
	watchExited chan struct{}
	// deadline is the read deadline last set for an idle wait; zero when
	// another deadline replaced it.
	deadline time.Time
	start    time.Time // accepted; set before serve, then only read
	served   bool      // a request was served
	// state is stateActive, or stateIdle/stateNew while the connection
	// waits for a request.
	state atomic.Int32
}

// Read feeds br: a byte the watcher took first, then the connection.
func (c *conn) Read(p []byte) (int, error) {
	if c.peeked && len(p) > 0 {
		c.peeked = false
		p[0] = c.peek[0]
		return 1, nil
	}
	return c.rwc.Read(p)
}

func (c *conn) serve() {
	s := c.srv
	c.remote = c.rwc.RemoteAddr().String()
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(c.rwc)
	c.w = response{c: c, bw: c.bw, hdr: make(http.Header, 16)}
	c.watchExited = make(chan struct{}, 1)
	limit := readBufSize
	if s.MaxHeaderBytes > 0 && s.MaxHeaderBytes < limit {
		limit = s.MaxHeaderBytes
	}

	handedOver := false
	lingering := false
	defer func() {
		if !handedOver {
			c.bw.Flush()
			if lingering {
				if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
					time.Sleep(500 * time.Millisecond) // let the client read before an RST
				}
			}
			c.rwc.Close()
			if s.ConnState != nil {
				s.ConnState(c.rwc, http.StateClosed)
			}
		}
		s.forget(c)
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
	}()

	for {
		block, err := c.readHeader(limit)
		if err == nil {
			p, closeAfter, ok := parseRequest(block, c.remote)
			if ok {
				c.br.Discard(len(block))
				c.served = true
				if !c.serveOne(p, closeAfter) {
					lingering = c.br.Buffered() > 0
					return
				}
				continue
			}
			if msg := framingConflict(block); msg != "" {
				c.reject(msg)
				lingering = true
				return
			}
			err = errHandoff
		}
		if errors.Is(err, errHandoff) {
			handedOver = true
			c.handOver()
		}
		return
	}
}

// serveOne runs the handler for one request; false closes the connection.
func (c *conn) serveOne(p *parsed, closeAfter bool) bool {
	s := c.srv
	p.ctx.c = c
	// WithContext is the one way to set a request's context. Inlined,
	// its copy stays on the stack: the request keeps living in p.
	p.req = *p.req.WithContext(&p.ctx)
	r := &p.req
	c.w.reset(r.Method == http.MethodHead, closeAfter)
	ok := c.runHandler(r)
	p.ctx.finish()
	if !ok {
		return false
	}
	c.w.finish()
	if c.w.closeAfter || s.inShutdown.Load() {
		return false
	}
	// Flushed even when the next pipelined request is already buffered:
	// its handler may be slow, and this response is complete.
	if err := c.bw.Flush(); err != nil {
		return false
	}
	return true
}

func (c *conn) runHandler(r *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			ok = false
			if p == http.ErrAbortHandler { //nolint:errorlint // sentinel panic value
				return
			}
			c.srv.logger().LogAttrs(r.Context(), slog.LevelError, "panic serving request",
				slog.String("host", r.Host), slog.String("path", r.URL.Path),
				slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		}
	}()
	c.srv.Handler.ServeHTTP(&c.w, r)
	return true
}

// readHeader returns the next request's header block (through CRLF CRLF),
// still buffered in br. It flushes pending responses before it blocks.
// A block over limit is handed over, whether or not it came in one read.
func (c *conn) readHeader(limit int) ([]byte, error) {
	s := c.srv
	br := c.br
	if br.Buffered() == 0 {
		if c.bw.Buffered() > 0 {
			if err := c.bw.Flush(); err != nil {
				return nil, err
			}
		}
		st := int32(stateIdle)
		if c.served {
			c.idleDeadline()
		} else {
			// As net/http: a connection that sends nothing is dropped
			// after ReadHeaderTimeout, not kept for IdleTimeout.
			st = stateNew
			c.rwc.SetReadDeadline(time.Now().Add(s.readHeaderTimeout()))
			c.deadline = time.Time{}
		}
		c.state.Store(st)
		if st == stateIdle && s.inShutdown.Load() {
			return nil, errShutdown
		}
		_, err := br.Peek(1)
		c.state.Store(stateActive)
		if err != nil {
			return nil, err
		}
	}
	slow := false
	scanned := 0 // buf[:scanned] holds no end of header
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf[scanned:], crlf2); i >= 0 {
			if end := scanned + i + 4; end <= limit {
				return buf[:end], nil
			}
			return nil, errHandoff
		}
		// Lines ended by a bare LF (which net/http accepts) never make a
		// CRLF CRLF: hand the request over once its blank line is in,
		// rather than wait for the header timeout.
		if bytes.Contains(buf[scanned:], lflf) || bytes.Contains(buf[scanned:], lfcrlf) {
			return nil, errHandoff
		}
		if len(buf) >= limit || len(buf) >= br.Size() {
			return nil, errHandoff
		}
		scanned = max(0, len(buf)-3) // an end may straddle the next read
		if c.bw.Buffered() > 0 {
			if err := c.bw.Flush(); err != nil {
				return nil, err
			}
		}
		if !slow { // the header did not come in one read: bound the rest
			slow = true
			c.rwc.SetReadDeadline(time.Now().Add(s.readHeaderTimeout()))
			c.deadline = time.Time{}
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return nil, err
		}
	}
}

// idleDeadline sets the read deadline for the wait for a request, when
// the one set before has drifted more than an eighth of the timeout (at
// most a second) from it: a busy connection moves it about once a second.
func (c *conn) idleDeadline() {
	idle := c.srv.idleTimeout()
	now := time.Now()
	if c.deadline.IsZero() || now.Add(idle).Sub(c.deadline) > min(idle/8, time.Second) {
		c.deadline = now.Add(idle)
		c.rwc.SetReadDeadline(c.deadline)
	}
}

// reject answers a request whose body framing is ambiguous with 400 and
// closes the connection (the caller lingers so the client reads it).
func (c *conn) reject(msg string) {
	c.srv.logger().LogAttrs(context.Background(), slog.LevelDebug, "request rejected",
		slog.String("remote", c.remote), slog.String("reason", msg))
	body := "edge: " + msg + "\n"
	c.bw.WriteString("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"X-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// handOver passes the connection and its unread bytes to the fallback.
func (c *conn) handOver() {
	c.bw.Flush()
	buf, _ := c.br.Peek(c.br.Buffered())
	c.rwc.SetReadDeadline(time.Time{})
	rc := &replayConn{Conn: c.rwc, buf: bytes.Clone(buf)}
	if c.srv.Fallback == nil {
		rc.Close()
		if c.srv.ConnState != nil {
			c.srv.ConnState(c.rwc, http.StateClosed)
		}
		return
	}
	c.srv.Fallback(rc)
}

func (s *Server) readHeaderTimeout() time.Duration {
	if s.ReadHeaderTimeout > 0 {
		return s.ReadHeaderTimeout
	}
	return DefaultReadHeaderTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}
