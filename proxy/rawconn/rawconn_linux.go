package rawconn

import (
	"syscall"
	"unsafe"
)

const supported = true

// maxRW caps one call, as internal/poll does: some kernels fail larger
// ones.
const maxRW = 1 << 30

// read is the RawConn callback of Read: true when it has a result (bytes,
// end of stream or an error), false to wait until the socket is readable.
func (c *Conn) read(fd uintptr) bool {
	p := c.rp
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			c.rn = int(r)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rerr = e
		return true
	}
}

// write is the RawConn callback of Write: it writes until all of wp is
// out (true), the socket is full (false: wait until it is writable, then
// go on from wn) or an error stops it (true, werr set).
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wp) {
		p := c.wp[c.wn:]
		if len(p) > maxRW {
			p = p[:maxRW]
		}
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			if r == 0 {
				c.wzero = true
				return true
			}
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}
