package accesslog

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// The access line of a cache hit, as the proxy records it. The Writer
// benchmarks and the slog ones produce the same bytes (TestEncodeMatchesSlog).
var benchEntry = Entry{
	Tenant: "shop.example", Host: "shop.example", Method: "GET", Path: "/assets/app.3f9a1c.css",
	Status: 200, Bytes: 1024, Origin: 0, Total: 87 * time.Microsecond, Duration: 112 * time.Microsecond,
	Proto: "HTTP/1.1", Cache: "hit",
	RequestID: "3k9x2m7q1v0a8b4c6d5e", ClientIP: "203.0.113.7",
	UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
}

func benchWriter(b *testing.B) *Writer {
	w, err := New(Config{Out: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Close(context.Background()) })
	return w.With(testFields, nil)
}

// BenchmarkLog is the proxy's path with Config.AccessLog set.
func BenchmarkLog(b *testing.B) {
	w := benchWriter(b)
	b.ReportAllocs()
	for b.Loop() {
		e := benchEntry
		e.Time = time.Now()
		w.Log(&e)
	}
}

func BenchmarkLogParallel(b *testing.B) {
	w := benchWriter(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := benchEntry
			e.Time = time.Now()
			w.Log(&e)
		}
	})
}

// slogRequest is what record() does without an AccessLog (time.Now is
// inside LogAttrs).
func slogRequest(l *slog.Logger, e *Entry) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	l.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("tenant", e.Tenant),
		slog.String("host", e.Host),
		slog.String("method", e.Method),
		slog.String("path", e.Path),
		slog.Int("status", e.Status),
		slog.Int64("bytes", e.Bytes),
		slog.Float64("origin_ms", ms(e.Origin)),
		slog.Float64("total_ms", ms(e.Total)),
		slog.Float64("duration_ms", ms(e.Duration)),
		slog.String("proto", e.Proto),
		slog.String("cache", e.Cache),
		slog.String("request_id", e.RequestID),
		slog.String("client_ip", e.ClientIP),
		slog.String("user_agent", e.UserAgent),
	)
}

func benchSlog() *slog.Logger {
	return slog.New(slog.NewJSONHandler(io.Discard, nil)).With("node", "n1", "component", "proxy")
}

// BenchmarkSlogJSON is the proxy's path without an AccessLog, writing to
// io.Discard, so it leaves out the write(2) per line that stdout adds.
func BenchmarkSlogJSON(b *testing.B) {
	l := benchSlog()
	b.ReportAllocs()
	for b.Loop() {
		slogRequest(l, &benchEntry)
	}
}

func BenchmarkSlogJSONParallel(b *testing.B) {
	l := benchSlog()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			slogRequest(l, &benchEntry)
		}
	})
}

// BenchmarkEncode is the encoder alone.
func BenchmarkEncode(b *testing.B) {
	fields := appendFields(nil, testFields)
	buf := make([]byte, 0, 1024)
	e := benchEntry
	e.Time = time.Now()
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEntry(buf[:0], fields, &e)
	}
	b.SetBytes(int64(len(buf)))
}
