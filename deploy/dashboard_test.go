package deploy

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const dashboardFile = "grafana/edge-dashboard.json"

// plannedMetrics are used by the dashboard before edged exports them. Their
// panels must say so (PLANNED in the description); the dev-cluster test
// fails once one of them is exported, so that the note gets removed.
var plannedMetrics = map[string]bool{}

// conditionalMetrics exist only with some flags; a dev cluster without them
// does not export them.
var conditionalMetrics = map[string]string{
	"edge_cache_errors_total":         "--redis-addr or --s3-bucket (L2/L3 tiers)",
	"edge_cache_dropped_writes_total": "--redis-addr or --s3-bucket (L2/L3 tiers)",
	"edge_cert_expiry_seconds":        "a stored certificate (series exist per certificate)",
}

type dashboard struct {
	SchemaVersion int     `json:"schemaVersion"`
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	Description   string  `json:"description"`
	Panels        []panel `json:"panels"`
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows.
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// metricsOf returns each panel's metric names, by panel title.
func (d dashboard) metricsOf(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], promqlMetrics(tg.Expr)...)
		}
	}
	return out
}

var (
	reString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	reVariable = regexp.MustCompile(`\$\{[^}]*\}|\$[A-Za-z_]\w*`)
	reMatchers = regexp.MustCompile(`\{[^}]*\}`)
	reRange    = regexp.MustCompile(`\[[^\]]*\]`)
	reGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	reIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promqlWord = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true, "atan2": true,
	}
)

// promqlMetrics returns the metric names a PromQL expression selects: the
// identifiers left once strings, Grafana variables, label matchers, ranges
// and grouping clauses are removed, that are neither functions nor keywords.
func promqlMetrics(expr string) []string {
	s := reString.ReplaceAllString(expr, `""`)
	s = reVariable.ReplaceAllString(s, "0")
	s = reMatchers.ReplaceAllString(s, " ")
	s = reRange.ReplaceAllString(s, " ")
	s = reGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range reIdent.FindAllStringIndex(s, -1) {
		id := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(s[loc[0]-1:loc[0]], "0123456789.") {
			continue // the exponent of a number such as 1e3
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function or an aggregation
		}
		if promqlWord[strings.ToLower(id)] {
			continue
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func TestPromQLMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (code) (rate(edge_requests_total{instance=~"$instance"}[$__rate_interval]))`:                     {"edge_requests_total"},
		`histogram_quantile(0.99, sum(rate(edge_x_bucket{a="b,c"}[5m])) by (le))`:                                {"edge_x_bucket"},
		`sum(rate(a_total[1m])) / on (instance) group_left sum(b_total offset 1h) > bool 1e3`:                    {"a_total", "b_total"},
		`(min(edge_cert_expiry_seconds{domain!~"x{1}"}) - time()) / 86400`:                                       {"edge_cert_expiry_seconds"},
		`scalar(max(edge_raft_commit_index)) - edge_raft_applied_index and ignoring(state) up{job="${job:raw}"}`: {"edge_raft_commit_index", "edge_raft_applied_index", "up"},
		`label_replace(nginx_hits, "dst", "$1", "src", "(.*)")`:                                                  {"nginx_hits"},
	} {
		if got := promqlMetrics(expr); !slices.Equal(got, want) {
			t.Errorf("promqlMetrics(%s) = %v, want %v", expr, got, want)
		}
	}
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want about 39", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q title %q", d.UID, d.Title)
	}
	ids := map[int]string{}
	queries := 0
	for _, p := range d.allPanels() {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || p.Datasource == nil || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: no Prometheus query", p.Title)
		}
		for _, tg := range p.Targets {
			queries++
			ms := promqlMetrics(tg.Expr)
			if len(ms) == 0 {
				t.Errorf("panel %q: query %q selects no metric", p.Title, tg.Expr)
			}
			for _, m := range ms {
				if !strings.HasPrefix(m, "edge_") {
					t.Errorf("panel %q: metric %q is not an edge_ metric", p.Title, m)
				}
				if plannedMetrics[m] && !(strings.Contains(p.Description, "PLANNED") && strings.Contains(p.Description, m)) {
					t.Errorf("panel %q uses the planned metric %s without saying so in its description", p.Title, m)
				}
			}
		}
	}
	for m := range plannedMetrics {
		if !strings.Contains(d.Description, m) {
			t.Errorf("the dashboard description does not list the planned metric %s", m)
		}
	}
	used := map[string]bool{}
	for _, ms := range d.metricsOf(t) {
		for _, m := range ms {
			used[strings.TrimSuffix(m, "_bucket")] = true
		}
	}
	for _, m := range []string{
		"edge_requests_total", "edge_request_duration_seconds", "edge_added_latency_seconds", "edge_origin_duration_seconds",
		"edge_cache_hits_total", "edge_cache_misses_total", "edge_cert_expiry_seconds",
		"edge_raft_state", "edge_raft_term", "edge_raft_applied_index", "edge_raft_leader_changes_total",
	} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	t.Logf("%d panels, %d queries", len(ids), queries)
}

// exposedMetrics parses a Prometheus text exposition into the names a query
// can select (a histogram h gives h_bucket, h_sum and h_count).
func exposedMetrics(r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		name := f[2]
		out[name] = true
		switch f[3] {
		case "histogram":
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case "summary":
			out[name+"_sum"], out[name+"_count"] = true, true
		}
	}
	return out, sc.Err()
}
