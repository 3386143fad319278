package accesslog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultFlushBytes    = 256 << 10
	DefaultMaxPending    = 1 << 20
)

// maxScratch is the largest encoding buffer kept for reuse; a line with a
// huge path is encoded into a buffer that is then left to the GC.
const maxScratch = 64 << 10

// Config configures a Writer. Zero values take the Default* constants.
type Config struct {
	// Out receives the lines (os.Stdout). Until Close it is written by one
	// goroutine only, in chunks of whole lines; it never runs under a lock
	// a caller of Log or Write waits for. Required.
	Out io.Writer
	// FlushInterval is the longest a line waits in the buffer.
	FlushInterval time.Duration
	// FlushBytes pending wake the writing goroutine before FlushInterval.
	FlushBytes int
	// MaxPending caps the bytes waiting while Out is busy: a line that
	// would go over it is dropped and counted. Memory is bounded by twice
	// this (one buffer being written, one filling).
	MaxPending int
	// Fields are written into every line Log writes, after "msg".
	Fields []Field
	// Tee, when set, is called with every line written through this
	// Writer (Log and Write), newline included, whether or not it then
	// fits in the buffer, e.g. to ship it to Loki. The line is only valid
	// during the call; Tee must not block.
	Tee func(line []byte)
}

// Writer buffers whole log lines in memory and writes them to Out from a
// background goroutine. It is safe for concurrent use.
//
// Write takes one or more whole lines per call (slog's handlers write each
// record with one call), so lines from concurrent writers never interleave.
// Neither Write nor Log ever waits for Out: when MaxPending bytes are
// already waiting, the line is dropped and counted (Dropped). A line that
// Out fails to take is counted the same way.
//
// After Close, Write and Log write each line synchronously to Out, like an
// unbuffered writer, so a late line is not lost; they may then block on a
// slow Out.
type Writer struct {
	c      *core
	fields []byte // pre-encoded static fields
	tee    func([]byte)
}

// core is what Writers made by With share: one buffer, one goroutine.
type core struct {
	out        io.Writer
	interval   time.Duration
	flushBytes int
	maxPending int

	mu     sync.Mutex
	buf    []byte // lines waiting; swapped with the goroutine's spare
	kicked bool   // a wake-up for FlushBytes is outstanding
	closed bool

	// outMu serialises writes to out after Close (the goroutine is the
	// only writer before).
	outMu sync.Mutex

	kick     chan struct{}      // FlushBytes reached
	flushReq chan chan struct{} // Flush: closed once everything before it is written
	stop     chan struct{}
	done     chan struct{} // the goroutine wrote its last buffer and exited

	scratch   sync.Pool // *[]byte encoding buffers for Log
	dropped   atomic.Uint64
	closeOnce sync.Once
}

// New validates cfg and starts the goroutine that writes to cfg.Out.
// Close stops it.
func New(cfg Config) (*Writer, error) {
	if cfg.Out == nil {
		return nil, errors.New("accesslog: Config.Out is required")
	}
	if cfg.FlushInterval < 0 || cfg.FlushBytes < 0 || cfg.MaxPending < 0 {
		return nil, fmt.Errorf("accesslog: negative flush interval %v, flush bytes %d or max pending %d",
			cfg.FlushInterval, cfg.FlushBytes, cfg.MaxPending)
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.FlushBytes == 0 {
		cfg.FlushBytes = DefaultFlushBytes
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.FlushBytes > cfg.MaxPending {
		return nil, fmt.Errorf("accesslog: flush bytes %d above max pending %d", cfg.FlushBytes, cfg.MaxPending)
	}
	c := &core{
		out:        cfg.Out,
		interval:   cfg.FlushInterval,
		flushBytes: cfg.FlushBytes,
		maxPending: cfg.MaxPending,
		buf:        make([]byte, 0, 2*cfg.FlushBytes),
		kick:       make(chan struct{}, 1),
		flushReq:   make(chan chan struct{}),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	c.scratch.New = func() any { b := make([]byte, 0, 1024); return &b }
	go c.run(make([]byte, 0, 2*cfg.FlushBytes))
	return &Writer{c: c, fields: appendFields(nil, cfg.Fields), tee: cfg.Tee}, nil
}

// With returns a Writer that shares w's buffer, goroutine and drop count
// and writes fields into every line it Logs, after w's own fields. tee,
// when non-nil, replaces w's Tee for lines written through the new Writer.
// A node uses it to add its id to the access lines of a Writer the
// process made for all its logs.
func (w *Writer) With(fields []Field, tee func(line []byte)) *Writer {
	nw := &Writer{c: w.c, fields: appendFields(bytes.Clone(w.fields), fields), tee: w.tee}
	if tee != nil {
		nw.tee = tee
	}
	return nw
}

// Log appends e as one JSON line (see appendEntry for the shape). It does
// not allocate once the buffers have grown to their working size.
func (w *Writer) Log(e *Entry) {
	bp := w.c.scratch.Get().(*[]byte)
	line := appendEntry((*bp)[:0], w.fields, e)
	w.c.add(line)
	if w.tee != nil {
		w.tee(line)
	}
	if cap(line) <= maxScratch {
		*bp = line
		w.c.scratch.Put(bp)
	}
}

// Write appends p, which must be one or more whole lines. It always
// reports len(p) written: a dropped line is counted, not returned as an
// error, so a logger never fails a caller over stdout.
func (w *Writer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.c.add(p)
	if w.tee != nil {
		w.tee(p)
	}
	return len(p), nil
}

// Dropped is the number of lines that never reached Out: dropped while
// MaxPending bytes were waiting, or lost to an error from Out.
func (w *Writer) Dropped() uint64 { return w.c.dropped.Load() }

// Collector exports Dropped as edge_log_stdout_lines_dropped_total, for
// the registry of whoever runs the process (the Writer is usually made
// before it).
func (w *Writer) Collector() prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "edge_log_stdout_lines_dropped_total",
		Help: "Log lines not written to stdout: more than the buffer cap was waiting (stdout slow or blocked), or the write failed.",
	}, func() float64 { return float64(w.Dropped()) })
}

// Flush waits until every line added before the call has been handed to
// Out, or until ctx ends (Out blocked), then returns ctx's error.
func (w *Writer) Flush(ctx context.Context) error {
	req := make(chan struct{})
	select {
	case w.c.flushReq <- req:
	case <-w.c.done: // closed: buffered lines went out in Close
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is buffered and stops the goroutine; it returns
// ctx's error if Out is still busy when ctx ends (the last write then
// finishes in the background). Lines written after Close go to Out
// synchronously. Close is idempotent and closes every Writer made by
// With from the same New.
func (w *Writer) Close(ctx context.Context) error {
	c := w.c
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
	})
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("accesslog: close: stdout still busy: %w", ctx.Err())
	}
}

// add appends one or more whole lines to the buffer, or drops them.
func (c *core) add(p []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.writeThrough(p)
		return
	}
	if len(c.buf)+len(p) > c.maxPending {
		c.mu.Unlock()
		c.dropped.Add(uint64(lines(p)))
		return
	}
	c.buf = append(c.buf, p...)
	kick := !c.kicked && len(c.buf) >= c.flushBytes
	if kick {
		c.kicked = true
	}
	c.mu.Unlock()
	if kick {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// writeThrough writes p once the goroutine has written its last buffer,
// so a line after Close never overtakes one before it.
func (c *core) writeThrough(p []byte) {
	<-c.done
	c.outMu.Lock()
	defer c.outMu.Unlock()
	c.write(p)
}

// run is the only writer to out until Close: every interval, when
// FlushBytes are pending, on Flush, and once more on Close.
func (c *core) run(spare []byte) {
	defer close(c.done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		var req chan struct{}
		select {
		case <-t.C:
		case <-c.kick:
		case req = <-c.flushReq:
		case <-c.stop:
			// closed is set: nothing is added to buf any more.
			c.flush(spare)
			return
		}
		spare = c.flush(spare)
		if req != nil {
			close(req)
		}
	}
}

// flush swaps the buffer with spare under the lock, writes the lines
// outside it and returns the written buffer, emptied, as the next spare.
func (c *core) flush(spare []byte) []byte {
	c.mu.Lock()
	b := c.buf
	c.buf = spare[:0]
	c.kicked = false
	c.mu.Unlock()
	if len(b) > 0 {
		c.write(b)
	}
	return b[:0]
}

// write hands whole lines to out and counts the lines it did not take.
func (c *core) write(b []byte) {
	n, err := c.out.Write(b)
	if err != nil && n < len(b) {
		c.dropped.Add(uint64(lines(b[max(n, 0):])))
	}
}

// lines counts the lines in p, a final line without newline included.
func lines(p []byte) int {
	n := bytes.Count(p, newline)
	if len(p) > 0 && p[len(p)-1] != '\n' {
		n++
	}
	return n
}

var newline = []byte{'\n'}
