package logship

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/slogtest"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestHandlerConformance runs the standard library's slog handler tests
// against what arrives at Loki, which exercises WithAttrs and WithGroup
// end to end.
func TestHandlerConformance(t *testing.T) {
	rc := newReceiver(t)
	s, _ := newShipper(t, Config{URL: rc.url(), BatchWait: 5 * time.Millisecond})
	var seen int
	slogtest.Run(t, func(t *testing.T) slog.Handler {
		seen = len(rc.snapshot())
		return s.Handler(slog.NewJSONHandler(io.Discard, nil))
	}, func(t *testing.T) map[string]any {
		testkit.Eventually(t, 5*time.Second, "the record at the receiver", func() bool { return len(rc.snapshot()) > seen })
		got := rc.snapshot()
		if len(got) != seen+1 {
			t.Fatalf("receiver got %d lines for one record", len(got)-seen)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(got[seen].line), &m); err != nil {
			t.Fatalf("line %q: %v", got[seen].line, err)
		}
		return m
	})
}

// TestConcurrentLoggingAndClose logs from many goroutines while the shipper
// closes; run with -race.
func TestConcurrentLoggingAndClose(t *testing.T) {
	rc := newReceiver(t)
	s, reg := newShipper(t, Config{URL: rc.url(), QueueSize: 64})
	var stdout testkit.SyncBuffer
	base := slog.New(s.Handler(slog.NewJSONHandler(&stdout, nil)))
	const workers, perWorker = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := base.With("worker", w).WithGroup("req")
			for i := range perWorker {
				l.Info("access", "i", i, "tenant", "a.example")
			}
		}()
	}
	time.Sleep(time.Millisecond) // let some lines through before closing
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()

	// Every record is accounted for: shipped, or dropped with a reason.
	total := metric(t, reg, "edge_log_lines_shipped_total", nil)
	for _, r := range reasonNames {
		total += dropped(t, reg, r)
	}
	if total != workers*perWorker {
		t.Errorf("shipped+dropped = %v, want %d", total, workers*perWorker)
	}
	if got := metric(t, reg, "edge_log_lines_shipped_total", nil); int(got) != len(rc.snapshot()) {
		t.Errorf("shipped counter %v, receiver has %d lines", got, len(rc.snapshot()))
	}
}

// BenchmarkHandler measures one access-log call: stdout alone, shipped
// with Loki up, and shipped with Loki failing (lines dropped).
func BenchmarkHandler(b *testing.B) {
	run := func(b *testing.B, h slog.Handler) {
		l := slog.New(h).With("component", "proxy")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Info("access", "tenant", "a.example", "status", 200, "cache", "hit", "total_ms", 1.25, "origin_ms", 0.8)
			}
		})
	}
	b.Run("stdout-only", func(b *testing.B) { run(b, slog.NewJSONHandler(io.Discard, nil)) })
	for _, down := range []bool{false, true} {
		name := "shipped-loki-up"
		if down {
			name = "shipped-loki-down"
		}
		b.Run(name, func(b *testing.B) {
			rc := newReceiver(b)
			rc.fail.Store(down)
			s, reg := newShipper(b, Config{URL: rc.url(), Labels: map[string]string{"job": "edge"}})
			run(b, s.Handler(slog.NewJSONHandler(io.Discard, nil)))
			b.ReportMetric(dropped(b, reg, "queue_full")/float64(b.N), "dropped/op")
		})
	}
}
