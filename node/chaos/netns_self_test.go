package chaos

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestPartitionCutsTheClusterLink checks the partition mechanism itself:
// nodes on different bridges cannot connect, nodes on the same bridge
// can, the client link survives, and heal restores everything.
func TestPartitionCutsTheClusterLink(t *testing.T) {
	if usable, why := netnsUsable(); !usable {
		t.Skipf("SKIPPING: cannot create network namespaces (%s)", why)
	}
	nn := newNetns(t, "self", 3)
	for i := 0; i < 3; i++ {
		var ln net.Listener
		if err := inNetns(nn.ns(i), func() (err error) { ln, err = net.Listen("tcp", "0.0.0.0:7000"); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	reach := func(from, to int) bool {
		return inNetns(nn.ns(from), func() error {
			d := net.Dialer{Timeout: 300 * time.Millisecond}
			c, err := d.DialContext(context.Background(), "tcp", fmt.Sprintf("10.99.0.%d:7000", 11+to))
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	}
	client := func(i int) bool {
		c, err := nn.dial(context.Background(), fmt.Sprintf("10.98.%d.2:7000", i))
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	want := func(what string, got, want bool) {
		t.Helper()
		if got != want {
			t.Errorf("%s: reachable=%v, want %v", what, got, want)
		}
	}
	want("0→1 before", reach(0, 1), true)
	if err := nn.partition([]int{0, 1}); err != nil {
		t.Fatal(err)
	}
	want("0→1 same side", reach(0, 1), true)
	want("0→2 across", reach(0, 2), false)
	want("2→1 across", reach(2, 1), false)
	want("client→0 during partition", client(0), true)
	want("client→2 during partition", client(2), true)
	if err := nn.heal(); err != nil {
		t.Fatal(err)
	}
	// Neighbour entries that failed during the partition take a moment
	// to be resolved again: poll.
	healed := func(from, to int) bool {
		deadline := time.Now().Add(10 * time.Second)
		for !reach(from, to) {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(50 * time.Millisecond)
		}
		return true
	}
	want("0→2 healed", healed(0, 2), true)
	want("2→1 healed", healed(2, 1), true)
}
