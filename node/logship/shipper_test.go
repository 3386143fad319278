package logship

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/prometheus/client_golang/prometheus"
)

// newShipper builds a Shipper with fast test timings on top of cfg.
func newShipper(t testing.TB, cfg Config) (*Shipper, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	if cfg.BatchWait == 0 {
		cfg.BatchWait = 20 * time.Millisecond
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 20 * time.Millisecond
		cfg.MaxBackoff = 50 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s, reg
}

func decodeLine(t *testing.T, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("line %q is not JSON: %v", line, err)
	}
	return m
}

func TestShipsLinesWithLabels(t *testing.T) {
	rc := newReceiver(t)
	s, reg := newShipper(t, Config{URL: rc.url(), Labels: map[string]string{"job": "edge", "node": "n1"}})
	var stdout testkit.SyncBuffer
	logger := slog.New(s.Handler(slog.NewJSONHandler(&stdout, nil)))

	access := logger.With("component", "proxy").WithGroup("req")
	access.Info("access", "tenant", "a.example", "status", 200, "cache", "hit", "total_ms", 1.5)
	logger.Warn("origin slow", "tenant", "b.example")
	logger.Error("purge failed", "err", "boom")
	logger.Debug("not enabled on stdout, so not shipped")
	logger.Log(context.Background(), slog.LevelError+4, "custom level")

	testkit.Eventually(t, 5*time.Second, "4 lines at the receiver", func() bool { return len(rc.snapshot()) == 4 })
	got := rc.snapshot()
	byMsg := map[string]received{}
	for _, e := range got {
		byMsg[decodeLine(t, e.line)["msg"].(string)] = e
	}

	want := map[string]string{"access": "info", "origin slow": "warn", "purge failed": "error", "custom level": "error"}
	for msg, level := range want {
		e, ok := byMsg[msg]
		if !ok {
			t.Fatalf("no line with msg %q; got %v", msg, got)
		}
		wantLabels := map[string]string{"job": "edge", "node": "n1", "level": level}
		if fmt.Sprint(e.labels) != fmt.Sprint(wantLabels) {
			t.Errorf("%q: labels %v, want %v (no tenant label)", msg, e.labels, wantLabels)
		}
		if e.ts.IsZero() || time.Since(e.ts) > time.Minute {
			t.Errorf("%q: timestamp %v", msg, e.ts)
		}
		if !strings.Contains(stdout.String(), `"msg":"`+msg+`"`) {
			t.Errorf("%q missing from stdout", msg)
		}
	}

	a := decodeLine(t, byMsg["access"].line)
	if a["component"] != "proxy" || a["level"] != "INFO" {
		t.Errorf("access line lost attrs: %v", a)
	}
	req, _ := a["req"].(map[string]any)
	if req["tenant"] != "a.example" || req["status"] != float64(200) || req["cache"] != "hit" {
		t.Errorf("access line: req group = %v, want tenant/status/cache inside", a["req"])
	}
	if strings.Contains(stdout.String(), "not enabled") {
		t.Errorf("debug record reached stdout")
	}

	// The client counts a batch as sent after the receiver has answered,
	// so the counter may trail the lines the receiver already holds.
	testkit.Eventually(t, 5*time.Second, "edge_log_lines_shipped_total to reach 4", func() bool {
		return metric(t, reg, "edge_log_lines_shipped_total", nil) == 4
	})
	for _, r := range reasonNames {
		if v := dropped(t, reg, r); v != 0 {
			t.Errorf("dropped{reason=%s} = %v, want 0", r, v)
		}
	}
}

// TestLokiFailingNeverBlocks: Loki answers 500. Log calls stay fast, lines
// are dropped and counted, memory stays bounded, and once Loki recovers
// new lines arrive.
func TestLokiFailingNeverBlocks(t *testing.T) {
	rc := newReceiver(t)
	rc.fail.Store(true)
	const maxBuffered = 256 << 10
	s, reg := newShipper(t, Config{
		URL:              rc.url(),
		Labels:           map[string]string{"job": "edge"},
		BatchBytes:       64 << 10,
		QueueSize:        512,
		MaxBufferedBytes: maxBuffered,
		MaxRetries:       2,
	})
	logger := slog.New(s.Handler(slog.NewJSONHandler(io.Discard, nil)))
	pad := strings.Repeat("x", 2048)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	const n = 10000
	start := time.Now()
	for i := range n {
		logger.Info("access", "tenant", "a.example", "i", i, "pad", pad)
	}
	elapsed := time.Since(start)
	limit := time.Second
	if raceEnabled {
		limit = 3 * time.Second // the race detector slows formatting ~5x
	}
	t.Logf("%d log calls with Loki failing: %v (%v/call)", n, elapsed, elapsed/n)
	if elapsed > limit {
		t.Errorf("%d log calls took %v with Loki failing, want < %v", n, elapsed, limit)
	}

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Unbounded buffering would hold n × ~2.1 KiB ≈ 21 MiB.
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap growth %d KiB, queued %v bytes / %v lines", growth>>10,
		metric(t, reg, "edge_log_queue_bytes", nil), metric(t, reg, "edge_log_queue_lines", nil))
	if growth > 4<<20 {
		t.Errorf("heap grew %d KiB while Loki was failing, want bounded (< 4 MiB)", growth>>10)
	}
	if q := metric(t, reg, "edge_log_queue_bytes", nil); q > maxBuffered {
		t.Errorf("queued bytes %v > MaxBufferedBytes %d", q, maxBuffered)
	}
	if d := dropped(t, reg, "queue_full"); d < n/2 {
		t.Errorf("dropped{queue_full} = %v after %d lines with Loki failing, want most of them", d, n)
	}
	testkit.Eventually(t, 10*time.Second, "the client to give up on a batch", func() bool {
		return dropped(t, reg, "push_failed") > 0
	})
	if rc.failedPushes() < 2 {
		t.Errorf("receiver saw %d failed pushes, want retries", rc.failedPushes())
	}
	if len(rc.snapshot()) != 0 {
		t.Fatalf("receiver accepted lines while failing")
	}

	rc.fail.Store(false)
	testkit.Eventually(t, 10*time.Second, "lines to flow after Loki recovers", func() bool {
		logger.Info("recovered", "tenant", "a.example")
		for _, e := range rc.snapshot() {
			if strings.Contains(e.line, `"msg":"recovered"`) {
				return true
			}
		}
		return false
	})
	if metric(t, reg, "edge_log_lines_shipped_total", nil) == 0 {
		t.Errorf("shipped counter did not move after recovery")
	}
}

// TestLokiUnreachableThenBack: nothing listens on Loki's address, then a
// receiver comes up on the same address.
func TestLokiUnreachableThenBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	s, reg := newShipper(t, Config{
		URL:        "http://" + addr + "/loki/api/v1/push",
		Labels:     map[string]string{"job": "edge"},
		QueueSize:  100,
		MaxRetries: 2,
	})
	logger := slog.New(s.Handler(slog.NewJSONHandler(io.Discard, nil)))

	start := time.Now()
	for i := range 10000 {
		logger.Info("access", "i", i)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("10000 log calls took %v with Loki unreachable", d)
	}
	if d := dropped(t, reg, "queue_full"); d == 0 {
		t.Errorf("no queue_full drops with Loki unreachable")
	}
	testkit.Eventually(t, 10*time.Second, "push_failed drops", func() bool { return dropped(t, reg, "push_failed") > 0 })

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen again on %s (port reused by someone else): %v", addr, err)
	}
	rc := startReceiver(t, ln)
	testkit.Eventually(t, 15*time.Second, "lines after Loki comes back", func() bool {
		logger.Info("back")
		for _, e := range rc.snapshot() {
			if strings.Contains(e.line, `"msg":"back"`) {
				return true
			}
		}
		return false
	})
}

func TestCloseFlushesPendingBatch(t *testing.T) {
	rc := newReceiver(t)
	s, reg := newShipper(t, Config{URL: rc.url(), BatchWait: time.Hour})
	var stdout testkit.SyncBuffer
	logger := slog.New(s.Handler(slog.NewJSONHandler(&stdout, nil)))
	for i := range 5 {
		logger.Info("before close", "i", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := len(rc.snapshot()); got != 5 {
		t.Fatalf("receiver has %d lines after Close, want 5", got)
	}
	logger.Info("after close")
	if !strings.Contains(stdout.String(), "after close") {
		t.Errorf("records after Close must still reach the next handler")
	}
	if d := dropped(t, reg, "closed"); d != 1 {
		t.Errorf("dropped{closed} = %v, want 1", d)
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseRespectsDeadlineWhenLokiDown(t *testing.T) {
	rc := newReceiver(t)
	rc.fail.Store(true)
	s, _ := newShipper(t, Config{
		URL: rc.url(), MaxRetries: 5, MinBackoff: 200 * time.Millisecond, MaxBackoff: time.Second,
	})
	logger := slog.New(s.Handler(slog.NewJSONHandler(io.Discard, nil)))
	for i := range 100 {
		logger.Info("line", "i", i)
	}
	testkit.Eventually(t, 5*time.Second, "a failed push", func() bool { return rc.failedPushes() > 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a 100ms deadline", d)
	}
	// Loki recovers: the client's last push succeeds in the background and
	// the shipper finishes.
	rc.fail.Store(false)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("shipper did not finish after Loki recovered")
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no url":           {},
		"not http":         {URL: "ftp://loki/push"},
		"no host":          {URL: "http:///loki/api/v1/push"},
		"bad label name":   {URL: "http://127.0.0.1:1/p", Labels: map[string]string{"node-id": "a"}},
		"reserved level":   {URL: "http://127.0.0.1:1/p", Labels: map[string]string{"level": "x"}},
		"reserved __":      {URL: "http://127.0.0.1:1/p", Labels: map[string]string{"__name__": "x"}},
		"empty value":      {URL: "http://127.0.0.1:1/p", Labels: map[string]string{"job": ""}},
		"negative queue":   {URL: "http://127.0.0.1:1/p", QueueSize: -1},
		"backoff inverted": {URL: "http://127.0.0.1:1/p", MinBackoff: time.Second, MaxBackoff: time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := New(cfg)
			if err == nil {
				_ = s.Close(context.Background())
				t.Fatalf("New(%+v) succeeded, want an error", cfg)
			}
			if !strings.HasPrefix(err.Error(), "logship: ") {
				t.Errorf("error %q lacks context", err)
			}
		})
	}
}

func TestLineTooLargeIsDropped(t *testing.T) {
	rc := newReceiver(t)
	s, reg := newShipper(t, Config{URL: rc.url(), BatchBytes: 1024})
	logger := slog.New(s.Handler(slog.NewJSONHandler(io.Discard, nil)))
	logger.Info("big", "pad", strings.Repeat("x", 2000))
	logger.Info("small")
	testkit.Eventually(t, 5*time.Second, "the small line", func() bool { return len(rc.snapshot()) == 1 })
	if d := dropped(t, reg, "too_large"); d != 1 {
		t.Errorf("dropped{too_large} = %v, want 1", d)
	}
}

func TestLineLevel(t *testing.T) {
	for line, want := range map[string]uint8{
		`{"time":"2025-01-01T00:00:00Z","level":"DEBUG","msg":"x"}`:   levelDebug,
		`{"level":"INFO","msg":"x","level":"ERROR"}`:                  levelInfo,
		`{"time":"2025-01-01T00:00:00Z","level":"WARN+2","msg":"x"}`:  levelWarn,
		`{"time":"2025-01-01T00:00:00Z","level":"ERROR+4","msg":"x"}`: levelError,
		`{"time":"2025-01-01T00:00:00Z","level":"DEBUG-4","msg":"x"}`: levelDebug,
		`{"msg":"no level"}`: levelInfo,
	} {
		if got := lineLevel([]byte(line)); got != want {
			t.Errorf("lineLevel(%s) = %s, want %s", line, levelNames[got], levelNames[want])
		}
	}
}

func TestParseLabels(t *testing.T) {
	got, err := ParseLabels(" job=edge, node=n1 ,region=eu-west")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "map[job:edge node:n1 region:eu-west]" {
		t.Errorf("ParseLabels = %v", got)
	}
	if got, err := ParseLabels(""); err != nil || len(got) != 0 {
		t.Errorf("ParseLabels(\"\") = %v, %v", got, err)
	}
	for _, bad := range []string{"job", "job=edge,job=x", "level=info", "bad-name=x", "job=", "=x"} {
		if _, err := ParseLabels(bad); err == nil {
			t.Errorf("ParseLabels(%q) succeeded, want an error", bad)
		}
	}
}
