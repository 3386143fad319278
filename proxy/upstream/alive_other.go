//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package upstream

import (
	"net"
	"syscall"
)

// socketOf: no peek here; stray bytes show when the connection is used.
func socketOf(net.Conn) syscall.RawConn { return nil }

func (p *peeker) peek(uintptr) {}

// rawConn: waiting for readability first is left to the unix platforms.
func rawConn(net.Conn) syscall.RawConn { return nil }
