package logship

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
)

// receiver is a loopback Loki: it decodes the real push protocol
// (snappy-compressed protobuf logproto.PushRequest on /loki/api/v1/push)
// and keeps what it received.
type receiver struct {
	t    testing.TB
	srv  *httptest.Server
	fail atomic.Bool // answer 500 instead of accepting

	mu      sync.Mutex
	entries []received
	pushes  int
	failed  int
}

type received struct {
	labels map[string]string
	line   string
	ts     time.Time
}

func newReceiver(t testing.TB) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return startReceiver(t, ln)
}

func startReceiver(t testing.TB, ln net.Listener) *receiver {
	t.Helper()
	rc := &receiver{t: t}
	rc.srv = httptest.NewUnstartedServer(rc)
	rc.srv.Listener.Close()
	rc.srv.Listener = ln
	rc.srv.Start()
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/loki/api/v1/push" }

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/loki/api/v1/push" {
		http.Error(w, "not a push", http.StatusNotFound)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	if rc.fail.Load() {
		rc.mu.Lock()
		rc.failed++
		rc.mu.Unlock()
		http.Error(w, "ingester unavailable", http.StatusInternalServerError)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		rc.t.Errorf("receiver: snappy: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		rc.t.Errorf("receiver: protobuf: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var got []received
	for _, st := range req.Streams {
		ls, err := parser.ParseMetric(st.Labels)
		if err != nil {
			rc.t.Errorf("receiver: stream labels %q: %v", st.Labels, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, e := range st.Entries {
			got = append(got, received{labels: ls.Map(), line: e.Line, ts: e.Timestamp})
		}
	}
	rc.mu.Lock()
	rc.pushes++
	rc.entries = append(rc.entries, got...)
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) snapshot() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.entries...)
}

func (rc *receiver) failedPushes() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.failed
}

// metric returns the value of the series name{labels} in reg, or 0.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func dropped(t testing.TB, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	return metric(t, reg, "edge_log_lines_dropped_total", map[string]string{"reason": reason})
}
