package node_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// TestE2EAccessLogOnStdout runs edged as an operator would, with a Loki
// receiver, and proxies one request: its access line appears on stdout
// within a second (edged buffers stdout for up to 100 ms), in the shape
// slog wrote before (same keys, same order, "node" included), and the same
// line reaches Loki. On SIGTERM nothing still buffered is lost.
func TestE2EAccessLogOnStdout(t *testing.T) {
	loki := newLokiReceiver(t)
	c := startE2EClusterWith(t, 1, func(*proc) []string {
		return []string{"--loki-url", loki.URL + "/loki/api/v1/push"}
	})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer origin.Close()
	p := c.nodes[0]
	c.mustCtl("--server", p.admin, "tenant", "add", "shop.example", "--origin", origin.URL)

	// A path a client controls, with a quote and a line separator in it.
	const rawPath, path = "/a%22b/%E2%80%A8/x", "/a\"b/\u2028/x"
	if body := proxyGet(t, p.http, "shop.example", rawPath); body != "hello" {
		t.Fatalf("proxied body %q", body)
	}
	answered := time.Now()
	var line string
	testkit.Eventually(t, time.Second, "the access line on stdout", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range strings.Split(p.log.String(), "\n") {
			if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, `"path":"/a\"b/\u2028/x"`) {
				line = l
				return true
			}
		}
		return false
	})
	t.Logf("access line on stdout %v after the response: %s", time.Since(answered).Round(time.Millisecond), line)

	wantKeys := []string{"time", "level", "msg", "node", "component", "tenant", "host", "method", "path",
		"status", "bytes", "origin_ms", "total_ms", "duration_ms", "proto", "cache", "request_id", "client_ip", "user_agent"}
	if got := jsonKeys(t, line); strings.Join(got, ",") != strings.Join(wantKeys, ",") {
		t.Errorf("keys %v\nwant %v", got, wantKeys)
	}
	var f struct {
		Time, Level, Msg, Node, Component, Tenant, Host, Method, Path, Proto, Cache string
		Status                                                                      int
		Bytes                                                                       int64
		OriginMS                                                                    *float64 `json:"origin_ms"`
		TotalMS                                                                     *float64 `json:"total_ms"`
		DurationMS                                                                  *float64 `json:"duration_ms"`
	}
	if err := json.Unmarshal([]byte(line), &f); err != nil {
		t.Fatal(err)
	}
	if ts, err := time.Parse(time.RFC3339Nano, f.Time); err != nil || time.Since(ts) > time.Minute {
		t.Errorf("time %q: %v", f.Time, err)
	}
	if f.Level != "INFO" || f.Node != p.id || f.Component != "proxy" || f.Tenant != "shop.example" ||
		f.Host != "shop.example" || f.Method != "GET" || f.Path != path || f.Status != 200 || f.Bytes != 5 ||
		f.Proto != "HTTP/1.1" || f.Cache == "" || f.OriginMS == nil || f.TotalMS == nil || f.DurationMS == nil ||
		*f.DurationMS < *f.TotalMS || *f.DurationMS <= 0 {
		t.Errorf("access line fields: %+v", f)
	}

	testkit.Eventually(t, 15*time.Second, "the access line in Loki", func() bool {
		for _, l := range loki.lines(`node="` + p.id + `"`) {
			if l == line {
				return true
			}
		}
		return false
	})

	// Stop: the lines logged during shutdown are flushed before exit.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("edged exit: %v", err)
	}
	p.mu.Lock()
	out := p.log.String()
	p.mu.Unlock()
	if !strings.Contains(out, `"msg":"edged stopped"`) {
		t.Fatalf("no \"edged stopped\" line at exit; stdout ends with:\n%s", tail(out, 1000))
	}
}

// jsonKeys lists the top-level keys of one JSON object in order.
func jsonKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %q", line)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, fmt.Sprint(k))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// lokiReceiver decodes Loki's push protocol (snappy protobuf).
type lokiReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	streams []push.Stream
}

func newLokiReceiver(t *testing.T) *lokiReceiver {
	l := &lokiReceiver{}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		l.mu.Lock()
		l.streams = append(l.streams, req.Streams...)
		l.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(l.Close)
	return l
}

// lines returns the lines of the streams whose labels contain label.
func (l *lokiReceiver) lines(label string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.streams {
		if strings.Contains(s.Labels, label) {
			for _, e := range s.Entries {
				out = append(out, e.Line)
			}
		}
	}
	return out
}
