package upstream

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	pools     prometheus.Gauge
	connsOpen prometheus.Gauge
	dials     *prometheus.CounterVec
	tlsErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pools: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edge_upstream_pools", Help: "Origin connection pools in use.",
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edge_upstream_conns_open", Help: "Open TCP connections to origins.",
		}),
		dials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_upstream_dials_total", Help: "Connection attempts to origins by result (ok, error, timeout).",
		}, []string{"result"}),
		tlsErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_upstream_tls_errors_total", Help: "Failed TLS handshakes with origins.",
		}),
	}
	// Every result at zero from the start, so the dashboard's dial panel
	// draws on a node that has not dialled yet (docs/proxy.md, "Metrics").
	for _, r := range []string{"ok", "error", "timeout"} {
		m.dials.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.pools, m.connsOpen, m.dials, m.tlsErrors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("upstream: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) dialResult(timeout bool) {
	switch {
	case timeout:
		m.dials.WithLabelValues("timeout").Inc()
	default:
		m.dials.WithLabelValues("error").Inc()
	}
}
