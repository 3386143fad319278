package logship

import (
	"bytes"
	"context"
	"log/slog"
)

// Handler returns a slog.Handler that passes every record to next and also
// ships it to Loki as one JSON line (the same shape slog.NewJSONHandler
// writes), labelled with the configured labels and the record's level.
// Shipping never blocks and never fails the call: lines that cannot be
// queued are dropped and counted. Enabled follows next.
func (s *Shipper) Handler(next slog.Handler) slog.Handler {
	return &handler{
		next: next,
		s:    s,
		json: slog.NewJSONHandler(sink{s}, nil),
	}
}

type handler struct {
	next slog.Handler
	s    *Shipper
	// json formats the Loki line; its writer is the queue. WithAttrs and
	// WithGroup are applied to it and to next alike.
	json slog.Handler
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.next.Handle(ctx, r)
	if h.s.closedFlag.Load() {
		h.s.dropped[reasonClosed].Add(1)
		return err
	}
	_ = h.json.Handle(ctx, r) // sink.Write never fails
	return err
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return &handler{next: h.next.WithAttrs(attrs), s: h.s, json: h.json.WithAttrs(attrs)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &handler{next: h.next.WithGroup(name), s: h.s, json: h.json.WithGroup(name)}
}

// Ship queues one line that is already formatted the way Handler formats
// a record (e.g. an access line written without slog by
// proxy/accesslog), labelled with the level read from the line. Like
// Handler it never blocks; after Close the line is counted as dropped
// (reason "closed"). line is only read during the call.
func (s *Shipper) Ship(line []byte) {
	if s.closedFlag.Load() {
		s.dropped[reasonClosed].Add(1)
		return
	}
	s.enqueue(lineLevel(line), line)
}

// sink receives each formatted line from the JSON handler in one Write call
// and queues a copy of it.
type sink struct{ s *Shipper }

func (w sink) Write(p []byte) (int, error) {
	w.s.enqueue(lineLevel(p), p)
	return len(p), nil
}

var levelKey = []byte(`"level":"`)

// lineLevel reads the level from a line written by slog's JSON handler with
// no ReplaceAttr: the built-in "level" key precedes "msg" and every
// attribute, so its first occurrence is the record's level. Custom levels
// such as "ERROR+4" map to the level they are based on.
func lineLevel(p []byte) uint8 {
	i := bytes.Index(p, levelKey)
	if i < 0 {
		return levelInfo
	}
	v := p[i+len(levelKey):]
	switch {
	case bytes.HasPrefix(v, []byte("DEBUG")):
		return levelDebug
	case bytes.HasPrefix(v, []byte("WARN")):
		return levelWarn
	case bytes.HasPrefix(v, []byte("ERROR")):
		return levelError
	default:
		return levelInfo
	}
}
