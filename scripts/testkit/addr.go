package testkit

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// handedOut is every port FreePort returned in this test process. Tests
// often need an address before anything listens on it (nodes learn each
// other's addresses before they start), so the kernel may offer the same
// port twice; remembering them keeps two tests from being handed one.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreeAddr returns a loopback "host:port" that was free a moment ago and
// that no other caller in this test process was given.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// FreePort returns a loopback port that was free a moment ago and that no
// other caller in this test process was given.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testkit: find free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
}
