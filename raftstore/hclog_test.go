package raftstore

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestRaftLogLevels: raft's own lines keep their level in the node's log,
// except routine ones raft logs too high: a leadership handover's "peer
// has newer term" is not an ERROR an operator should be paged for.
func TestRaftLogLevels(t *testing.T) {
	var out bytes.Buffer
	log := newHCLogger(slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})), "debug")
	log.Error("peer has newer term, stopping replication", "peer", "node2")
	log.Error("failed to append to logs", "error", "disk full")
	log.Warn("heartbeat timeout reached, starting election")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		`"level":"INFO","msg":"peer has newer term, stopping replication"`,
		`"level":"ERROR","msg":"failed to append to logs"`,
		`"level":"WARN","msg":"heartbeat timeout reached, starting election"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d = %s\nwant it to contain %s", i, lines[i], w)
		}
	}
}
