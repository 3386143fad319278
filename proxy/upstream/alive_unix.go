//go:build linux || darwin || freebsd || netbsd || openbsd

package upstream

import (
	"crypto/tls"
	"net"
	"syscall"
)

// socketOf is the descriptor under nc that the readability peek looks
// at: the TCP socket, under TLS too (nil when there is none).
func socketOf(nc net.Conn) syscall.RawConn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	return rawConn(nc)
}

// peek is pending's callback: one non-blocking recv(MSG_PEEK) of a
// byte. Anything but EAGAIN (a byte, end of stream, an error) means
// something is pending.
func (p *peeker) peek(fd uintptr) {
	n, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	p.readable = !(n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK))
}

// rawConn is nc's descriptor for waiting on it without reading (nil when
// it exposes none).
func rawConn(nc net.Conn) syscall.RawConn {
	if cc, ok := nc.(*countedConn); ok {
		nc = cc.Conn
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
