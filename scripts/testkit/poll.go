package testkit

import (
	"testing"
	"time"
)

// pollCeiling is the longest pause between two checks: short enough that
// a test does not wait long after its condition holds, long enough that a
// costly check (an RPC, an HTTP request) does not load the machine.
const pollCeiling = 50 * time.Millisecond

// Eventually fails t unless cond holds within d. It checks at once, then
// at intervals growing from 5 ms to 50 ms.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	pause := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(pause)
		pause = min(2*pause, pollCeiling)
	}
}

// EventuallyNil is Eventually for a check that says what is still wrong:
// it fails t with f's last error unless f returns nil within d.
func EventuallyNil(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	pause := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(pause)
		pause = min(2*pause, 4*pollCeiling)
	}
}
