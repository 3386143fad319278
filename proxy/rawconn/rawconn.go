// Package rawconn reads and writes a TCP connection with system calls the
// Go scheduler does not see.
//
// # Why
//
// A Read or Write on a *net.TCPConn tells the runtime it is entering a
// system call. While a thread is in one, the runtime's monitor thread
// (sysmon) checks it every 20 µs, and takes its P away for another thread
// when the call outlasts a check and other goroutines are waiting. A
// socket call on loopback does the receiver's whole TCP input inline and
// may be preempted on its way out by the task it woke, so under load on
// two cores the monitor retakes a P a few hundred times a second. Each
// retake resets its back-off, so it keeps waking every 20 µs, about 4,000
// times a second: in edged under pass-through load that alone was 5% of
// the CPU (perf: the context switches of its nanosleep), plus the threads
// started and parked for the Ps it hands over.
//
// The socket is non-blocking (every net connection is), so a read or a
// write returns at once: it is work on the CPU like any other, and the P
// may as well stay with it. Conn makes them as raw system calls inside
// syscall.RawConn's callbacks, which keep the net package's locking,
// deadlines and waiting for readiness: EAGAIN parks the goroutine on the
// poller exactly as net does. Measured with edged under wrk pass-through
// load: sysmon's nanosleeps went from 0.125 to 0.006 per request and
// edged's CPU per request fell about 10%.
//
// Only Linux takes the raw path; elsewhere Wrap returns its argument.
package rawconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Conn is a TCP connection whose Read and Write are raw system calls.
// Every other method is the wrapped connection's. It is safe for
// concurrent use like any net.Conn: one read and one write may run at the
// same time; concurrent reads (or writes) take turns.
type Conn struct {
	net.Conn
	rc syscall.RawConn

	rmu     sync.Mutex // guards the read state below
	rp      []byte
	rn      int
	rerr    syscall.Errno
	readFn  func(uintptr) bool // c.read, made once
	wmu     sync.Mutex         // guards the write state below
	wp      []byte
	wn      int
	werr    syscall.Errno
	wzero   bool               // a write took nothing, as internal/poll reports it
	writeFn func(uintptr) bool // c.write, made once
}

// Wrap returns nc reading and writing with raw system calls when it is a
// *net.TCPConn on Linux, and nc itself otherwise.
func Wrap(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	if c := New(nc, rc); c != nil {
		return c
	}
	return nc
}

// New returns a Conn that reads and writes rc's descriptor and leaves
// every other method (Close, deadlines, addresses) to nc, which must be
// the connection rc belongs to or a wrapper of it. It returns nil where
// raw calls are not supported.
func New(nc net.Conn, rc syscall.RawConn) *Conn {
	if !supported {
		return nil
	}
	c := &Conn{Conn: nc, rc: rc}
	c.readFn = c.read
	c.writeFn = c.write
	return c
}

// Read reads like net.Conn's Read: io.EOF when the peer has closed, a
// *net.OpError otherwise.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rp, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerr
	c.rp = nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p unless an error stops it, like net.Conn's Write.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	c.wp, c.wn, c.werr, c.wzero = p, 0, 0, false
	err := c.rc.Write(c.writeFn)
	n, errno, zero := c.wn, c.werr, c.wzero
	c.wp = nil
	c.wmu.Unlock()
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	case zero:
		return n, c.opError("write", io.ErrUnexpectedEOF)
	}
	return n, nil
}

// SyscallConn returns the descriptor's RawConn.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// CloseWrite half-closes the connection when the wrapped one can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: syscall.EOPNOTSUPP}
}

// opError gives err the shape net's own errors have. The RawConn's errors
// (deadline, closed connection) already are *net.OpError, named after
// the raw call; they get the caller's name.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
		return oe
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
