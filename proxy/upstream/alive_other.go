//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package upstream

import "net"

// alive cannot peek here; a dead connection shows when it is used.
func alive(net.Conn) bool { return true }
