package proxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// latencyBuckets resolve the sub-millisecond range the proxy's own
// overhead lives in, up to slow origins.
var latencyBuckets = []float64{
	.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30,
}

// metrics are the handler's edge_ metrics. Counters per status class are
// resolved once so that a request never looks up label values.
type metrics struct {
	requests [6][numCacheLabels]prometheus.Counter // index: status/100 (0 = unknown), cache label
	total    prometheus.Histogram
	origin   prometheus.Histogram
	added    prometheus.Histogram
	direct   prometheus.Counter
	// tenant counts requests of tenants that opted in (Tenant.Metrics), so
	// the number of series is bounded by the operator's choice.
	tenant *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "edge_requests_total",
		Help: "Requests served by the proxy, by status class (499 = client went away) and cache result (none, miss, hit, stale, revalidated, bypass).",
	}, []string{"code", "cache"})
	m := &metrics{
		tenant: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_tenant_requests_total",
			Help: "Requests per tenant, by status class; only tenants with per-tenant metrics enabled (edgectl tenant update --metrics).",
		}, []string{"tenant", "code"}),
		total: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edge_request_duration_seconds",
			Help:    "Time from receiving a request to writing its response headers.",
			Buckets: latencyBuckets,
		}),
		origin: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edge_origin_duration_seconds",
			Help:    "Time the origin took to answer with headers, for requests that went to the origin.",
			Buckets: latencyBuckets,
		}),
		direct: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_direct_responses_total",
			Help: "Responses relayed on the direct path (uncacheable GETs whose origin header lines are relayed without re-encoding), a subset of edge_requests_total.",
		}),
		added: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edge_added_latency_seconds",
			Help:    "Request duration minus origin duration, for requests that went to the origin.",
			Buckets: latencyBuckets,
		}),
	}
	for i, c := range []string{"unknown", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		for j, l := range cacheLabels {
			m.requests[i][j] = reqs.WithLabelValues(c, l)
		}
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{reqs, m.tenant, m.total, m.origin, m.added, m.direct} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("register proxy metrics: %w (one Handler per registry)", err)
			}
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return m, nil
}

var classNames = [...]string{"unknown", "1xx", "2xx", "3xx", "4xx", "5xx"}

func (m *metrics) observe(status int, cl cacheLabel, total, origin time.Duration, tenant *tenantcfg.Tenant) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	m.requests[class][cl].Inc()
	if tenant != nil && tenant.Metrics {
		m.tenant.WithLabelValues(tenant.Domain, classNames[class]).Inc()
	}
	if status == 0 {
		return
	}
	m.total.Observe(total.Seconds())
	if origin > 0 {
		m.origin.Observe(origin.Seconds())
		m.added.Observe((total - origin).Seconds())
	}
}
