//go:build linux || darwin || freebsd || netbsd || openbsd

package upstream

import (
	"crypto/tls"
	"net"
	"syscall"
)

// alive reports whether an idle connection still looks usable: the origin
// has not closed it and sent nothing on it. One non-blocking MSG_PEEK.
// Connections that expose no file descriptor are assumed alive.
func alive(nc net.Conn) bool {
	if tc, ok := nc.(*tls.Conn); ok {
		// The socket under TLS: any record the origin sent on an idle
		// connection (close_notify, a late ticket) counts as not alive,
		// which costs at most a redial.
		nc = tc.NetConn()
	}
	rc := rawConn(nc)
	if rc == nil {
		return true
	}
	live := true
	var b [1]byte
	err := rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		live = n < 0 && (rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && live
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
