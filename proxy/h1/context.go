package h1

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClientGone is the cause of a request context cancelled because the
// client closed its connection while the handler was running.
var ErrClientGone = errors.New("client closed the connection")

// errHandlerDone is the cause once the handler has returned.
var errHandlerDone = errors.New("handler returned")

// watchDelay is how long a request may wait on its context before a
// goroutine starts watching the connection. Most origin fetches end sooner
// and never pay for the watch (a goroutine, a read that would block and a
// deadline to stop it); a client that leaves is noticed this much later
// (up to twice as late: the sweep runs every watchDelay).
const watchDelay = 25 * time.Millisecond

// Watch states of a requestContext.
const (
	watchIdle     = iota // nobody waits on Done yet
	watchArmed           // Done was called: the sweep starts the watch after watchDelay
	watchRunning         // a goroutine reads the connection
	watchFinished        // the handler returned; no new watch
)

// requestContext is a request's context. It is an ordinary cancelable
// context, except that watching the connection for a client that left is
// armed by the first call to Done: a cache hit never calls it and pays
// nothing, an origin fetch does and, if it lasts longer than watchDelay,
// gets the same cancellation net/http gives. Arming is an atomic store:
// no timer per request (a timer that is the earliest in the runtime's heap
// wakes the network poller each time), one sweep per server instead
// (Server.sweep).
//
// The cancelable context behind it (context.WithCancelCause: two
// allocations) is made only when something needs one: a call to Done, a
// child context (which asks for Done), or a cancellation while the
// handler runs. Err, Value and AfterFunc need none, so a request served
// from the cache or passed to the origin by the lean client never makes
// it. Once made, the context package's children attach to it directly
// (they find it through Value).
type requestContext struct {
	c       *conn
	state   atomic.Int32
	armedAt atomic.Int64 // the sweep round in which Done armed the watch
	mu      sync.Mutex   // orders Done's and watch's state changes against finish; guards making cc
	after   func()       // AfterFunc's function until it runs or is stopped; guarded by mu
	afterN  uint64       // registrations so far, so a stale stop finds nothing; guarded by mu

	made     atomic.Bool // cc and cancel are set (under mu, before the store)
	cc       context.Context
	cancel   context.CancelCauseFunc
	finished atomic.Bool // the handler returned before cc was made: cc is made cancelled
}

func (x *requestContext) Deadline() (time.Time, bool) { return time.Time{}, false }

func (x *requestContext) Done() <-chan struct{} {
	x.arm()
	return x.cancelable().Done()
}

func (x *requestContext) Err() error {
	switch {
	case x.made.Load():
		return x.cc.Err()
	case x.finished.Load():
		return context.Canceled
	}
	return nil
}

func (x *requestContext) Value(key any) any {
	if x.made.Load() || x.finished.Load() {
		// After the handler returned, context.Cause finds the cause
		// through Value: make the context that holds it.
		return x.cancelable().Value(key)
	}
	return nil
}

// cancelable returns the cancelable context, made on the first call.
func (x *requestContext) cancelable() context.Context {
	if !x.made.Load() {
		x.mu.Lock()
		x.makeLocked()
		x.mu.Unlock()
	}
	return x.cc
}

// makeLocked makes the cancelable context unless it exists; already
// cancelled when the handler has returned. x.mu is held.
func (x *requestContext) makeLocked() {
	if x.made.Load() {
		return
	}
	x.cc, x.cancel = context.WithCancelCause(context.Background())
	if x.finished.Load() {
		x.cancel(errHandlerDone)
	}
	x.made.Store(true)
}

// AfterFunc arranges for f to run in its own goroutine once the context
// is done (the client left, or the handler returned), as context.AfterFunc
// does; stop reports whether it kept f from running. It arms the watch
// like Done. One function is held without allocating a context and a
// channel for it (the upstream client registers one per origin exchange,
// finding this method through the interface the context package
// documents); more go to context.AfterFunc.
func (x *requestContext) AfterFunc(f func()) (stop func() bool) {
	if n, ok := x.RegisterAfter(f); ok {
		return func() bool { return x.stopAfter(n) }
	}
	return context.AfterFunc(x.cancelable(), f)
}

// RegisterAfter is AfterFunc without the stop closure, for a caller that
// keeps the registration number instead (the upstream client does, so an
// origin exchange allocates nothing for it) and stops it with StopAfter.
// ok is false, and nothing is registered, when the context holds a
// function already or is done: AfterFunc then takes f.
func (x *requestContext) RegisterAfter(f func()) (n uint64, ok bool) {
	x.arm()
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.after != nil || x.Err() != nil {
		return 0, false
	}
	x.after = f
	x.afterN++
	return x.afterN, true
}

// StopAfter unregisters registration n unless it ran or was stopped,
// and reports whether it did: AfterFunc's stop.
func (x *requestContext) StopAfter(n uint64) bool { return x.stopAfter(n) }

// stopAfter unregisters registration n unless it ran or was stopped.
func (x *requestContext) stopAfter(n uint64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.after == nil || x.afterN != n {
		return false
	}
	x.after = nil
	return true
}

// cancelWith cancels the context and runs AfterFunc's function. The
// handler's return cancels a context nobody made by marking it finished.
// The cancel happens under mu, as the function is taken: a RegisterAfter
// either came first (its function is the one taken) or sees Err and
// leaves the function to context.AfterFunc, which runs it.
func (x *requestContext) cancelWith(cause error) {
	x.mu.Lock()
	f := x.after
	x.after = nil
	if cause == errHandlerDone && f == nil && !x.made.Load() {
		x.finished.Store(true)
		x.mu.Unlock()
		return
	}
	x.makeLocked()
	x.cancel(cause) // runs no code of x's: children and AfterFuncs hang off cc
	x.mu.Unlock()
	if f != nil {
		go f()
	}
}

// arm arms the watch of the connection on the first call.
func (x *requestContext) arm() {
	if x.state.Load() == watchIdle {
		x.mu.Lock()
		if x.state.Load() == watchIdle {
			x.armedAt.Store(x.c.srv.sweepTick.Load())
			x.c.watched.Store(x)
			x.state.Store(watchArmed)
			x.c.srv.startSweep()
		}
		x.mu.Unlock()
	}
}

// startSweep starts the server's sweep on the first armed watch.
func (s *Server) startSweep() {
	s.sweepOnce.Do(func() {
		s.mu.Lock()
		stop := make(chan struct{})
		s.sweepStop = stop
		s.mu.Unlock()
		go s.sweep(stop)
	})
}

// stopSweep ends the sweep, and keeps a later Done from starting one.
func (s *Server) stopSweep() {
	s.sweepOnce.Do(func() {})
	s.mu.Lock()
	if s.sweepStop != nil {
		close(s.sweepStop)
		s.sweepStop = nil
	}
	s.mu.Unlock()
}

// sweep starts the watch of every request armed for at least watchDelay,
// every watchDelay, until stop is closed. It visits each connection once
// per round (an atomic load each).
func (s *Server) sweep(stop <-chan struct{}) {
	t := time.NewTicker(watchDelay)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			// Armed in an earlier round: at least watchDelay ago. A round
			// number, not a clock read, is what Done stores.
			due := s.sweepTick.Add(1) - 1
			s.mu.Lock()
			for c := range s.conns {
				if x := c.watched.Load(); x != nil && x.state.Load() == watchArmed && x.armedAt.Load() < due {
					go x.watch()
				}
			}
			s.mu.Unlock()
		}
	}
}

// watch blocks in a one-byte read of the raw connection while the handler
// runs. A byte is the start of a pipelined request: it is kept for the
// next read. An error other than the stop below means the client left.
func (x *requestContext) watch() {
	c := x.c
	x.mu.Lock()
	if !x.state.CompareAndSwap(watchArmed, watchRunning) {
		x.mu.Unlock()
		return // finished first
	}
	// The deadline left by the idle wait, the header timeout or an earlier
	// watch's stop would end the watch early (or at once), and a client
	// that leaves after it would go unnoticed: watch as long as the handler
	// runs, as net/http does. Under mu, so finish's stop comes after this.
	c.rwc.SetReadDeadline(time.Time{})
	x.mu.Unlock()
	defer func() { c.watchExited <- struct{}{} }() // cap 1, drained by finish
	n, err := c.rwc.Read(c.peek[:])
	if n == 1 {
		c.peeked = true
	}
	if err != nil && x.state.Load() != watchFinished {
		var te interface{ Timeout() bool }
		if errors.As(err, &te) && te.Timeout() {
			return // Shutdown's wake-up for an idle wait raced us: no news
		}
		x.cancelWith(ErrClientGone)
	}
}

// finish ends the request: a pending watch is cancelled and a running one
// stopped and waited for, so the connection is read by one goroutine at a
// time; then the context is cancelled, as net/http does when the handler
// returns.
func (x *requestContext) finish() {
	x.mu.Lock()
	prev := x.state.Swap(watchFinished)
	x.mu.Unlock()
	switch prev {
	case watchRunning:
		x.c.rwc.SetReadDeadline(aLongTimeAgo)
		<-x.c.watchExited
		x.c.deadline = time.Time{} // force a fresh read deadline
	}
	x.cancelWith(errHandlerDone)
}

var aLongTimeAgo = time.Unix(1, 0)
