package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// sink is an Out that records every Write call.
type sink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	// gate, when set, makes each Write wait until it is closed.
	gate chan struct{}
	err  error
}

func (s *sink) Write(p []byte) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.err != nil {
		return 0, s.err
	}
	return s.buf.Write(p)
}

func (s *sink) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := strings.SplitAfter(s.buf.String(), "\n")
	if out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

func newWriter(t *testing.T, cfg Config) *Writer {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.Close(ctx)
	})
	return w
}

func closeWriter(t *testing.T, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func entry(path string) *Entry {
	return &Entry{Time: time.Now(), Tenant: "shop.example", Host: "shop.example", Method: "GET", Path: path,
		Status: 200, Bytes: 10, Total: time.Millisecond, Duration: 2 * time.Millisecond, Proto: "HTTP/1.1", Cache: "hit"}
}

// TestConcurrentLinesNeverInterleave mixes Log with a slog JSON handler
// writing through Write, from many goroutines, with small flushes so the
// buffers swap often: every line comes out whole, exactly once.
func TestConcurrentLinesNeverInterleave(t *testing.T) {
	out := &sink{}
	w := newWriter(t, Config{Out: out, FlushInterval: time.Millisecond, FlushBytes: 2048, MaxPending: 64 << 20, Fields: testFields})
	logger := slog.New(slog.NewJSONHandler(w, nil))
	const goroutines, perG = 8, 1000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				if i%2 == 0 {
					w.Log(entry(fmt.Sprintf("/g%d/%d/%s", g, i, strings.Repeat("x", i%300))))
				} else {
					logger.Info("other", "g", g, "i", i, "pad", strings.Repeat("y", i%200))
				}
			}
		}()
	}
	wg.Wait()
	closeWriter(t, w)
	if w.Dropped() != 0 {
		t.Fatalf("dropped %d lines with room to spare", w.Dropped())
	}
	seen := map[string]bool{}
	for _, l := range out.lines() {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("torn line %q: %v", l, err)
		}
		var key string
		switch m["msg"] {
		case "request":
			key = m["path"].(string)
			if m["node"] != "n1" {
				t.Fatalf("static field missing: %q", l)
			}
		case "other":
			key = fmt.Sprint(m["g"], "/", m["i"])
		default:
			t.Fatalf("unexpected line %q", l)
		}
		if seen[key] {
			t.Fatalf("line %s twice", key)
		}
		seen[key] = true
	}
	if len(seen) != goroutines*perG {
		t.Fatalf("%d distinct lines, want %d", len(seen), goroutines*perG)
	}
	if out.writes >= goroutines*perG/10 {
		t.Errorf("%d writes to Out for %d lines: not batching", out.writes, goroutines*perG)
	}
}

func TestLineIsWrittenWithinFlushIntervalWithoutFurtherWrites(t *testing.T) {
	out := &sink{}
	w := newWriter(t, Config{Out: out, FlushInterval: 20 * time.Millisecond})
	start := time.Now()
	w.Log(entry("/only"))
	testkit.Eventually(t, time.Second, "the line on Out", func() bool { return len(out.lines()) == 1 })
	t.Logf("line written after %v", time.Since(start))
	if !strings.Contains(out.lines()[0], `"path":"/only"`) {
		t.Fatalf("line %q", out.lines()[0])
	}
}

func TestFlushBytesWakeTheWriterEarly(t *testing.T) {
	out := &sink{}
	w := newWriter(t, Config{Out: out, FlushInterval: time.Hour, FlushBytes: 4096})
	var logged int
	for logged < 2*4096 {
		e := entry("/" + strings.Repeat("p", 64))
		logged += len(appendEntry(nil, nil, e))
		w.Log(e)
	}
	testkit.Eventually(t, time.Second, "a flush long before the interval", func() bool { return len(out.lines()) > 0 })
}

// TestBlockedOutNeverBlocksLog: stdout stops taking writes (a full pipe,
// a stopped log collector). Log keeps returning at once, lines beyond the
// cap are dropped and counted, and everything else comes out in order
// once stdout drains.
func TestBlockedOutNeverBlocksLog(t *testing.T) {
	out := &sink{gate: make(chan struct{})}
	w := newWriter(t, Config{Out: out, FlushInterval: 5 * time.Millisecond, FlushBytes: 1024, MaxPending: 16 << 10})
	const total = 20000
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		for i := range total {
			w.Log(entry(fmt.Sprintf("/%d", i)))
		}
		done <- time.Since(start)
	}()
	select {
	case d := <-done:
		t.Logf("%d Log calls against a blocked stdout took %v", total, d)
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a blocked Out")
	}
	dropped := w.Dropped()
	if dropped == 0 || dropped >= total {
		t.Fatalf("dropped %d of %d", dropped, total)
	}
	if got := testutil.ToFloat64(w.Collector()); got != float64(dropped) {
		t.Fatalf("counter %v, Dropped %d", got, dropped)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := w.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with stdout blocked: %v, want deadline exceeded", err)
	}
	cancel()

	close(out.gate)
	closeWriter(t, w)
	lines := out.lines()
	if uint64(len(lines))+w.Dropped() != total {
		t.Fatalf("%d written + %d dropped != %d logged", len(lines), w.Dropped(), total)
	}
	// Bounded: the blocked write held one buffer, the other filled to the cap.
	if n := len(strings.Join(lines, "")); n > 2*(16<<10)+1024 {
		t.Fatalf("%d bytes came out, more than two buffers", n)
	}
	last := -1
	for _, l := range lines {
		var d decoded
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("torn line %q", l)
		}
		var i int
		fmt.Sscanf(d.Path, "/%d", &i)
		if i <= last {
			t.Fatalf("line %d after %d: out of order", i, last)
		}
		last = i
	}
}

func TestCloseFlushesThenWritesThrough(t *testing.T) {
	out := &sink{}
	w := newWriter(t, Config{Out: out, FlushInterval: time.Hour})
	for i := range 100 {
		w.Log(entry(fmt.Sprintf("/%d", i)))
	}
	if _, err := w.Write([]byte(`{"msg":"last buffered"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	if n := len(out.lines()); n != 0 {
		t.Fatalf("%d lines out before the interval: not buffered", n)
	}
	closeWriter(t, w)
	lines := out.lines()
	if len(lines) != 101 || !strings.Contains(lines[100], "last buffered") {
		t.Fatalf("after Close: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	// After Close a line goes straight to Out.
	w.Log(entry("/late"))
	if lines := out.lines(); len(lines) != 102 || !strings.Contains(lines[101], `"/late"`) {
		t.Fatalf("late line not written through: %d lines", len(lines))
	}
	closeWriter(t, w) // idempotent
	if err := w.Flush(context.Background()); err != nil {
		t.Fatalf("Flush after Close: %v", err)
	}
}

func TestCloseHonoursContextWhenOutIsBlocked(t *testing.T) {
	out := &sink{gate: make(chan struct{})}
	w := newWriter(t, Config{Out: out, FlushInterval: time.Millisecond})
	w.Log(entry("/stuck"))
	testkit.Eventually(t, time.Second, "the writer to block", func() bool {
		w.c.mu.Lock()
		defer w.c.mu.Unlock()
		return len(w.c.buf) == 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want deadline exceeded", err)
	}
	close(out.gate)
	closeWriter(t, w)
	if n := len(out.lines()); n != 1 {
		t.Fatalf("%d lines, want 1", n)
	}
}

func TestFlushWritesWhatWasAddedBefore(t *testing.T) {
	out := &sink{}
	w := newWriter(t, Config{Out: out, FlushInterval: time.Hour})
	w.Log(entry("/a"))
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(out.lines()); n != 1 {
		t.Fatalf("%d lines after Flush, want 1", n)
	}
}

func TestWithAddsFieldsAndTee(t *testing.T) {
	out := &sink{}
	root := newWriter(t, Config{Out: out, FlushInterval: time.Hour})
	var teed []string
	w := root.With(testFields, func(line []byte) { teed = append(teed, string(line)) })
	e := entry(`/q"x`)
	w.Log(e)
	root.Log(entry("/root"))
	logger := slog.New(slog.NewJSONHandler(w, nil))
	logger.Warn("through write")
	closeWriter(t, root)
	lines := out.lines()
	if len(lines) != 3 || len(teed) != 2 {
		t.Fatalf("%d lines out, %d teed; want 3 and 2", len(lines), len(teed))
	}
	if lines[0] != teed[0] || lines[2] != teed[1] {
		t.Fatalf("tee saw %q, Out got %q", teed, lines)
	}
	checkRoundTrip(t, []byte(lines[0]), e)
	if strings.Contains(lines[1], `"node"`) {
		t.Fatalf("root line has the derived writer's field: %q", lines[1])
	}
}

func TestOutErrorsCountAsDropped(t *testing.T) {
	out := &sink{err: errors.New("broken pipe")}
	w := newWriter(t, Config{Out: out, FlushInterval: time.Hour})
	for i := range 5 {
		w.Log(entry(fmt.Sprintf("/%d", i)))
	}
	closeWriter(t, w)
	if w.Dropped() != 5 {
		t.Fatalf("dropped %d, want 5", w.Dropped())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Out: io.Discard, FlushInterval: -1},
		{Out: io.Discard, MaxPending: -1},
		{Out: io.Discard, FlushBytes: 2 << 20},
	} {
		if w, err := New(cfg); err == nil {
			_ = w.Close(context.Background())
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
