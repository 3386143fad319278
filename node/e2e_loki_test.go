package node_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestE2ELogsShippedToLoki runs edged with --loki-url pointing at a
// loopback receiver that decodes the real push protocol.
func TestE2ELogsShippedToLoki(t *testing.T) {
	edged, _ := binaries(t)
	loki := newLokiReceiver(t)

	dir := t.TempDir()
	cmd := exec.Command(edged, edgedArgs("--dev", "--id", "loki-node", "--data-dir", filepath.Join(dir, "data"),
		"--admin-addr", testkit.FreeAddr(t), "--raft-addr", testkit.FreeAddr(t), "--http-addr", testkit.FreeAddr(t),
		"--loki-url", loki.URL+"/loki/api/v1/push", "--loki-labels", "env=test")...)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	testkit.Eventually(t, 15*time.Second, "log lines in Loki", func() bool {
		for _, line := range loki.lines(`node="loki-node"`) {
			if strings.Contains(line, "edged started") {
				return labelled(loki, `node="loki-node"`, `env="test"`, `job="edge"`)
			}
		}
		return false
	})
}

// labelled reports whether one stream l received carries every label.
func labelled(l *lokiReceiver, labels ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.streams {
		all := true
		for _, want := range labels {
			all = all && strings.Contains(s.Labels, want)
		}
		if all {
			return true
		}
	}
	return false
}
