// Package gctune keeps the Go garbage collector from running too often on
// a process whose live heap is small.
//
// An edge node's live heap is a few megabytes plus its L1 cache. With the
// default GOGC=100 the heap goal is twice the live heap, but never less
// than 4 MiB: under load a node with 4 MiB live collected about 25 times a
// second, ~6% of its CPU spent marking the same few megabytes again. The
// tuner raises GOGC after each collection so the next goal is at least
// MinHeap (memory the node may use anyway), and returns to the base
// percentage once the live heap is large enough that the floor no longer
// matters (a full L1 cache). It never lowers the goal below what the base
// percentage gives. An operator who sets GOGC in the environment keeps it:
// the tuner is not started then (cmd/edged).
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// maxPercent bounds GOGC: with a tiny live heap the floor alone would ask
// for absurd values.
const maxPercent = 10_000

// Tuner adjusts GOGC after every collection. Stop it to restore the base.
type Tuner struct {
	minHeap uint64
	base    int
	stopped atomic.Bool
	last    atomic.Int64 // GOGC last set
	sample  []metrics.Sample
}

// Start sets up the tuner for a heap goal of at least minHeap bytes, with
// base as the percentage above it (100 is Go's default).
func Start(minHeap uint64, base int) *Tuner {
	t := &Tuner{minHeap: minHeap, base: base,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.adjust()
	t.arm()
	return t
}

// Percent is the GOGC value the tuner set last.
func (t *Tuner) Percent() int { return int(t.last.Load()) }

// Stop restores the base percentage; collections no longer adjust it.
func (t *Tuner) Stop() {
	if t.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(t.base)
	t.last.Store(int64(t.base))
}

// arm runs adjust once the next collection has finished: a finalizer runs
// on an object that becomes garbage right away, after the cycle that
// finds it, and re-arms itself.
func (t *Tuner) arm() {
	s := new(sentinel)
	runtime.SetFinalizer(s, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	})
}

type sentinel struct{ _ [16]byte } // not zero-sized: those are never finalized

func (t *Tuner) adjust() {
	metrics.Read(t.sample)
	live := uint64(0)
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	pct := percentFor(live, t.minHeap, t.base)
	// Avoid churn: only a change of more than an eighth is worth a call.
	if last := t.last.Load(); last != 0 {
		d := int64(pct) - last
		if d < 0 {
			d = -d
		}
		if d*8 < last {
			return
		}
	}
	debug.SetGCPercent(pct)
	t.last.Store(int64(pct))
}

// percentFor is the GOGC that makes the heap goal live×(1+GOGC/100) at least
// minHeap, and never below base.
func percentFor(live, minHeap uint64, base int) int {
	if live == 0 {
		live = 1 << 20
	}
	goal := live + live*uint64(base)/100
	if goal >= minHeap {
		return base
	}
	pct := (minHeap - live) * 100 / live
	if pct > maxPercent {
		return maxPercent
	}
	return int(pct)
}
