package logship

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// loki-client-go counts what it pushed and what it gave up on only in
// package-level counter vectors that its init() registers with
// prometheus.DefaultRegisterer, labelled by the push URL's host. It has no
// callback, so the shipper reads those counters: registering an identical
// collector returns prometheus.AlreadyRegisteredError carrying the
// library's own vector. Nothing is registered or changed. Because the
// vectors are process-wide, two shippers pushing to the same host in one
// process see each other's counts (only tests do that).
//
// The help strings must match the pinned library's exactly; the tests fail
// if an upgrade changes them.
const (
	clientSentName    = "promtail_sent_entries_total"
	clientSentHelp    = "Number of log entries sent to the ingester."
	clientDroppedName = "promtail_dropped_entries_total"
	clientDroppedHelp = "Number of log entries dropped because failed to be sent to the ingester after all retries."
	clientHostLabel   = "host"
)

// clientCounters reads the client's sent and dropped entry counters for one
// host, relative to their values when the shipper started.
type clientCounters struct {
	ok              bool
	sentC, droppedC prometheus.Counter
	sent0, dropped0 float64
}

func lookupClientCounters(host string) clientCounters {
	sent := existingCounterVec(clientSentName, clientSentHelp)
	dropped := existingCounterVec(clientDroppedName, clientDroppedHelp)
	if sent == nil || dropped == nil {
		return clientCounters{}
	}
	c := clientCounters{
		ok:       true,
		sentC:    sent.WithLabelValues(host),
		droppedC: dropped.WithLabelValues(host),
	}
	c.sent0 = counterValue(c.sentC)
	c.dropped0 = counterValue(c.droppedC)
	return c
}

func (c clientCounters) sent() float64 {
	if !c.ok {
		return 0
	}
	return counterValue(c.sentC) - c.sent0
}

func (c clientCounters) dropped() float64 {
	if !c.ok {
		return 0
	}
	return counterValue(c.droppedC) - c.dropped0
}

func existingCounterVec(name, help string) *prometheus.CounterVec {
	probe := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{clientHostLabel})
	err := prometheus.DefaultRegisterer.Register(probe)
	if err == nil {
		// Not registered by the library (a different version?): undo.
		prometheus.DefaultRegisterer.Unregister(probe)
		return nil
	}
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		return nil
	}
	vec, _ := are.ExistingCollector.(*prometheus.CounterVec)
	return vec
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
