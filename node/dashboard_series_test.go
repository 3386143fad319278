package node

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// dashboardSelectors returns every metric selector of the Grafana
// dashboard's queries: the metric name and its equality matchers (e.g.
// edge_cache_hits_total{tier="l1"}); $instance filters are left out.
func dashboardSelectors(t *testing.T) map[string]map[string]string {
	t.Helper()
	b, err := os.ReadFile("../deploy/grafana/edge-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	exprs := regexp.MustCompile(`"expr":\s*"((?:[^"\\]|\\.)*)"`).FindAllSubmatch(b, -1)
	sel := regexp.MustCompile(`([a-z_:][a-z0-9_:]*)\{([^}]*)\}`)
	eq := regexp.MustCompile(`([a-z_]+)="([^"]*)"`)
	out := map[string]map[string]string{}
	for _, e := range exprs {
		var expr string
		if err := json.Unmarshal(append(append([]byte{'"'}, e[1]...), '"'), &expr); err != nil {
			t.Fatal(err)
		}
		for _, m := range sel.FindAllStringSubmatch(expr, -1) {
			labels := map[string]string{}
			for _, l := range eq.FindAllStringSubmatch(m[2], -1) {
				labels[l[1]] = l[2]
			}
			key := m[1] + "{" + m[2] + "}"
			out[key] = labels
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d selectors found in the dashboard", len(out))
	}
	return out
}

// dashboardConditional are the series that exist only with a flag or with
// data: the L2/L3 tiers' counters (at zero from the start when the tier
// is configured; this node has none) and one certificate expiry per
// stored certificate (a number of days, which has no zero to start at).
var dashboardConditional = map[string]bool{
	"edge_cache_errors_total":         true,
	"edge_cache_dropped_writes_total": true,
	"edge_cert_expiry_seconds":        true,
}

// TestFreshNodeExposesDashboardSeries scrapes /metrics of a node that has
// served nothing yet: every series a dashboard panel selects is there
// (at zero), so no panel of a new cluster shows "no data".
func TestFreshNodeExposesDashboardSeries(t *testing.T) {
	cfg := testConfig(t, "fresh")
	cfg.BootstrapExpect = 1
	cfg.HTTPAddr, cfg.MetricsAddr = testkit.FreeAddr(t), testkit.FreeAddr(t)
	n := startNode(t, cfg)
	testkit.Eventually(t, 10*time.Second, "leader", func() bool { return n.store.IsLeader() })

	var body []byte
	testkit.Eventually(t, 10*time.Second, "/metrics", func() bool {
		resp, err := http.Get("http://" + n.MetricsAddr() + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err = io.ReadAll(resp.Body)
		return err == nil && resp.StatusCode == 200
	})
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	has := func(name string, labels map[string]string) bool {
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if _, ok := families[name]; !ok && strings.HasSuffix(name, suf) {
				base = strings.TrimSuffix(name, suf)
			}
		}
		mf, ok := families[base]
		if !ok {
			return false
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return true
		}
		return false
	}
	for sel, labels := range dashboardSelectors(t) {
		name := sel[:strings.IndexByte(sel, '{')]
		if dashboardConditional[name] {
			continue
		}
		if !has(name, labels) {
			t.Errorf("a fresh node has no series for the dashboard's %s", sel)
		}
	}
}
