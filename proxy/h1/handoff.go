package h1

import (
	"net"
	"sync"
)

// Handoff is a net.Listener whose connections come from a Server's
// fallback: give Offer as Server.Fallback and serve the Handoff with a
// net/http server. Each connection replays the bytes the Server had read
// before it gave up, so net/http sees the request from its first byte.
type Handoff struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// NewHandoff returns a Handoff reporting addr as its address.
func NewHandoff(addr net.Addr) *Handoff {
	return &Handoff{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Offer hands c to whoever is accepting; after Close it closes c.
func (h *Handoff) Offer(c net.Conn) {
	select {
	case h.ch <- c:
	case <-h.done:
		c.Close()
	}
}

// Accept implements net.Listener.
func (h *Handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener; later offers close their connection.
func (h *Handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

// Addr implements net.Listener.
func (h *Handoff) Addr() net.Addr { return h.addr }

// replayConn reads buf before reading from the connection.
type replayConn struct {
	net.Conn
	buf []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close a TCP connection before closing it.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// HandedOver reports whether c came from a Server's fallback; a ConnState
// hook shared by both servers uses it not to count a connection twice.
func HandedOver(c net.Conn) bool {
	_, ok := c.(*replayConn)
	return ok
}
