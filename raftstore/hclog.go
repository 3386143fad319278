package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger adapts raft's hclog output into the node's slog logger:
// hclog writes JSON lines to slogWriter, which re-emits them as records.
func newHCLogger(l *slog.Logger, level string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      hclog.LevelFromString(level),
		JSONFormat: true,
		Output:     &slogWriter{l: l},
	})
}

type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimSpace(p), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			w.l.Info(string(line))
			continue
		}
		msg, _ := m["@message"].(string)
		lvl := slog.LevelInfo
		switch s, _ := m["@level"].(string); strings.ToLower(s) {
		case "trace", "debug":
			lvl = slog.LevelDebug
		case "warn":
			lvl = slog.LevelWarn
		case "error":
			lvl = slog.LevelError
		}
		if l, ok := routineMessages[msg]; ok && l < lvl {
			lvl = l
		}
		attrs := make([]slog.Attr, 0, len(m))
		for k, v := range m {
			if strings.HasPrefix(k, "@") {
				continue
			}
			attrs = append(attrs, slog.Any(k, v))
		}
		w.l.LogAttrs(context.Background(), lvl, msg, attrs...)
	}
	return len(p), nil
}

// routineMessages are raft messages logged above what they mean to an
// operator, with the level they get instead. An ERROR should be worth a
// page; these are every leadership change working as designed.
var routineMessages = map[string]slog.Level{
	// The old leader learns of the new one's term (a transfer, an
	// election after a pause) and stops replicating: that is the
	// handover, logged once per peer.
	"peer has newer term, stopping replication": slog.LevelInfo,
}
