//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package upstream

import (
	"net"
	"syscall"
)

// alive cannot peek here; a dead connection shows when it is used.
func alive(net.Conn) bool { return true }

// rawConn: waiting for readability first is left to the unix platforms.
func rawConn(net.Conn) syscall.RawConn { return nil }
