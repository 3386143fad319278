package node

import "testing"

// FreeAddr gives the external (package node_test) end-to-end tests the same
// port registry the internal tests use, so no two tests in this binary are
// handed the same loopback port.
func FreeAddr(t testing.TB) string { return freeAddr(t) }
