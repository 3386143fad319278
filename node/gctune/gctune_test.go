package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live, min  uint64
		base, want int
	}{
		{4 << 20, 64 << 20, 100, 1500},   // 4 MiB live: goal 64 MiB
		{32 << 20, 64 << 20, 100, 100},   // the base already reaches the floor
		{1 << 30, 64 << 20, 100, 100},    // a full cache: Go's default
		{1 << 10, 64 << 20, 100, 10_000}, // clamped
		{16 << 20, 64 << 20, 200, 300},   // base 200 → 48 MiB < 64: raise
		{0, 64 << 20, 100, 6300},         // no reading yet: assume 1 MiB
	} {
		if got := percentFor(tc.live, tc.min, tc.base); got != tc.want {
			t.Errorf("percentFor(%d, %d, %d) = %d, want %d", tc.live, tc.min, tc.base, got, tc.want)
		}
	}
}

var sink []byte

// gcsFor counts the collections while allocating total bytes of garbage
// with a small live heap.
func gcsFor(total int) uint32 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < total/(64<<10); i++ {
		sink = make([]byte, 64<<10)
	}
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

// TestTunerCutsCollections drives the real runtime: with a few MiB live,
// 512 MiB of garbage costs many collections at GOGC=100 and several
// times fewer with a 64 MiB floor; Stop restores the base.
func TestTunerCutsCollections(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	runtime.GC()
	plain := gcsFor(512 << 20)

	tu := Start(64<<20, 100)
	runtime.GC() // let the finalizer see one cycle
	runtime.GC()
	if p := tu.Percent(); p < 500 {
		t.Fatalf("GOGC %d with a small live heap, want ≥ 500", p)
	}
	tuned := gcsFor(512 << 20)

	// A live heap that reaches the floor with the base percentage (a
	// full L1 cache) brings GOGC back to the base after a collection.
	live := make([]byte, 48<<20)
	for i := 0; i < 5 && tu.Percent() != 100; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if p := tu.Percent(); p != 100 {
		t.Fatalf("GOGC %d with 48 MiB live and a 64 MiB floor, want the base 100", p)
	}
	runtime.KeepAlive(live)
	tu.Stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC after Stop = %d, want 100", got)
	}
	t.Logf("collections for 512 MiB of garbage: %d at GOGC=100, %d tuned", plain, tuned)
	if tuned*4 > plain {
		t.Fatalf("tuned %d collections, plain %d: want at least 4x fewer", tuned, plain)
	}
}
