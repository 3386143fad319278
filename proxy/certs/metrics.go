package certs

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Handshake results (edge_tls_handshakes_total{result}). Only full
// handshakes are counted: a resumed session never asks for a certificate.
const (
	resultStored    = "stored"    // served from the replicated store
	resultIssued    = "issued"    // obtained on demand for this handshake
	resultChallenge = "challenge" // a TLS-ALPN-01 validation by the CA
	resultRejected  = "rejected"  // unknown or unlicensed name, failed at once
	resultFailed    = "failed"    // licensed, but no certificate could be obtained
)

// ACME order results (edge_acme_orders_total{result}).
const (
	orderPlaced  = "placed"  // a new order was created at the CA
	orderSuccess = "success" // an order (new or resumed) produced a stored certificate
	orderFailure = "failure"
)

type metrics struct {
	handshakes *prometheus.CounterVec
	orders     *prometheus.CounterVec
	restored   prometheus.Counter
	hs         map[string]prometheus.Counter
	ord        map[string]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, m *Manager) (*metrics, error) {
	x := &metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_tls_handshakes_total",
			Help: "Full TLS handshakes by how the certificate was chosen.",
		}, []string{"result"}),
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_acme_orders_total",
			Help: "ACME orders: placed at the CA, and completed with success or failure.",
		}, []string{"result"}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_cert_restored_total",
			Help: "Certificates restored from the mirror instead of ordered.",
		}),
		hs:  map[string]prometheus.Counter{},
		ord: map[string]prometheus.Counter{},
	}
	for _, r := range []string{resultStored, resultIssued, resultChallenge, resultRejected, resultFailed} {
		x.hs[r] = x.handshakes.WithLabelValues(r)
	}
	for _, r := range []string{orderPlaced, orderSuccess, orderFailure} {
		x.ord[r] = x.orders.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{x.handshakes, x.orders, x.restored, &expiryCollector{m: m}} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("certs: register metrics: %w", err)
			}
		}
	}
	return x, nil
}

func (x *metrics) handshake(result string) { x.hs[result].Inc() }
func (x *metrics) order(result string)     { x.ord[result].Inc() }

// expiryCollector reports edge_cert_expiry_seconds for the stored
// certificates only, read at scrape time, so removed domains leave no
// stale series and the label set is bounded by the store.
type expiryCollector struct {
	m    *Manager
	mu   sync.Mutex
	seen map[string]expiryMeta // by domain, refreshed when the version changes
}

type expiryMeta struct {
	version  uint64
	notAfter float64
}

var expiryDesc = prometheus.NewDesc("edge_cert_expiry_seconds",
	"Expiry (not-after) of each stored certificate, unix seconds.", []string{"domain"}, nil)

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := c.m.cfg.Store.Keys(certPrefix)
	next := make(map[string]expiryMeta, len(keys))
	for _, k := range keys {
		d := k[len(certPrefix):]
		val, version, ok := c.m.cfg.Store.Get(k)
		if !ok {
			continue
		}
		meta, ok := c.seen[d]
		if !ok || meta.version != version {
			r, err := decodeRecord(val)
			if err != nil {
				continue
			}
			meta = expiryMeta{version: version}
			if !r.NotAfter.IsZero() {
				meta.notAfter = float64(r.NotAfter.Unix())
			}
		}
		next[d] = meta
		if meta.notAfter > 0 {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, meta.notAfter, d)
		}
	}
	c.seen = next
}
