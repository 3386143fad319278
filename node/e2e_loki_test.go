package node_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// TestE2ELogsShippedToLoki runs edged with --loki-url pointing at a
// loopback receiver that decodes the real push protocol.
func TestE2ELogsShippedToLoki(t *testing.T) {
	edged, _ := binaries(t)
	var mu sync.Mutex
	var streams []push.Stream
	loki := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		if err != nil || r.URL.Path != "/loki/api/v1/push" {
			http.Error(w, "bad push", http.StatusBadRequest)
			return
		}
		var req push.PushRequest
		if err := req.Unmarshal(raw); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		streams = append(streams, req.Streams...)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer loki.Close()

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
		mu.Lock()
		defer mu.Unlock()
		for _, s := range streams {
			if strings.Contains(s.Labels, `node="loki-node"`) && strings.Contains(s.Labels, `env="test"`) && strings.Contains(s.Labels, `job="edge"`) {
				for _, e := range s.Entries {
					if strings.Contains(e.Line, "edged started") {
						return true
					}
				}
			}
		}
		return false
	})
}
