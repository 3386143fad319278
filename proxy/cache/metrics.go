package cache

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Tier indexes.
const (
	tierL1 = iota
	tierL2
	tierL3
	numTiers
)

var tierNames = [numTiers]string{"l1", "l2", "l3"}

type tierStats struct {
	hits, misses, stores, errors, dropped atomic.Int64
}

// stats are plain atomic counters: Stats reads them for `edgectl cache
// stats`, and Prometheus reads the same counters, so there is one source.
type stats struct {
	tiers                                            [numTiers]tierStats
	evictions, coalesced, stale, originFetch, purges atomic.Int64
	hitForMiss                                       atomic.Int64
	variantsDropped                                  atomic.Int64
	saved                                            savedBytes
}

// TierStats are the counters of one tier.
type TierStats struct {
	Hits, Misses, Stores, Errors, DroppedWrites int64
}

// Stats is a snapshot of the cache's counters.
type Stats struct {
	Entries   int   // objects in L1
	Bytes     int64 // weighted bytes in L1
	MaxBytes  int64
	L1        TierStats
	L2, L3    TierStats // zero when the tier is not configured
	L2Enabled bool
	L3Enabled bool
	Evictions int64
	Coalesced int64 // requests that waited for another request's fetch
	// HitForMiss counts hit-for-miss marks set: keys whose response could
	// not be stored, whose next requests skip collapsing.
	HitForMiss int64
	Stale      int64 // responses served stale (swr, stale-if-error, soft purge)
	// OriginFetches counts origin fetches made through the cache (misses,
	// revalidations, passes under a hit-for-miss mark, bypasses).
	OriginFetches int64
	PurgeIndex    uint64 // latest applied purge index
}

// HitRatio is hits over lookups across the tiers (a hit in any tier counts).
func (s Stats) HitRatio() float64 {
	hits := s.L1.Hits + s.L2.Hits + s.L3.Hits
	total := s.L1.Hits + s.L1.Misses
	if total == 0 {
		return 0
	}
	return float64(hits) / float64(total)
}

func (t *tierStats) snapshot() TierStats {
	return TierStats{
		Hits: t.hits.Load(), Misses: t.misses.Load(), Stores: t.stores.Load(),
		Errors: t.errors.Load(), DroppedWrites: t.dropped.Load(),
	}
}

// Stats returns the current counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Entries:       c.l1.EstimatedSize(),
		Bytes:         int64(c.l1.WeightedSize()),
		MaxBytes:      c.cfg.MaxBytes,
		L1:            c.stats.tiers[tierL1].snapshot(),
		L2:            c.stats.tiers[tierL2].snapshot(),
		L3:            c.stats.tiers[tierL3].snapshot(),
		L2Enabled:     c.l2 != nil,
		L3Enabled:     c.l3 != nil,
		Evictions:     c.stats.evictions.Load(),
		Coalesced:     c.stats.coalesced.Load(),
		HitForMiss:    c.stats.hitForMiss.Load(),
		Stale:         c.stats.stale.Load(),
		OriginFetches: c.stats.originFetch.Load(),
		PurgeIndex:    c.purges.latest.Load(),
	}
}

func (c *Cache) registerMetrics(reg prometheus.Registerer) error {
	counter := func(name, help string, v *atomic.Int64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edge_cache_" + name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(v.Load()) })
	}
	var cs []prometheus.Collector
	for i := range numTiers {
		if i == tierL2 && c.l2 == nil || i == tierL3 && c.l3 == nil {
			continue
		}
		l := prometheus.Labels{"tier": tierNames[i]}
		t := &c.stats.tiers[i]
		cs = append(cs,
			counter("hits_total", "Lookups answered by the tier.", &t.hits, l),
			counter("misses_total", "Lookups the tier could not answer.", &t.misses, l),
			counter("stores_total", "Objects written to the tier.", &t.stores, l),
		)
		if i != tierL1 {
			cs = append(cs,
				counter("errors_total", "Failed operations on the tier (timeouts, connection errors).", &t.errors, l),
				counter("dropped_writes_total", "Writes dropped because the queue was full or the tier down.", &t.dropped, l),
			)
		}
	}
	cs = append(cs,
		counter("evictions_total", "Objects evicted from L1 by size.", &c.stats.evictions, nil),
		counter("coalesced_total", "Requests that waited on another request's origin fetch.", &c.stats.coalesced, nil),
		counter("hit_for_miss_total", "Hit-for-miss marks set for keys whose response could not be stored.", &c.stats.hitForMiss, nil),
		counter("stale_total", "Responses served stale.", &c.stats.stale, nil),
		counter("origin_fetches_total", "Origin fetches made by the cache.", &c.stats.originFetch, nil),
		counter("purges_total", "Purge records applied.", &c.stats.purges, nil),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_cache_l1_bytes", Help: "Weighted bytes held in L1."},
			func() float64 { return float64(c.l1.WeightedSize()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_cache_l1_entries", Help: "Objects held in L1."},
			func() float64 { return float64(c.l1.EstimatedSize()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "edge_cache_purge_index", Help: "Latest applied purge index."},
			func() float64 { return float64(c.purges.latest.Load()) }),
	)
	for _, e := range encodingNames {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "edge_compress_saved_bytes_total",
			Help:        "Body bytes not sent because a stored compressed form (gzip, br, zstd) was sent instead of the identity body.",
			ConstLabels: prometheus.Labels{"encoding": e.String()},
		}, func() float64 { return float64(c.stats.saved[e].Load()) }))
	}
	cs = append(cs, counter("variants_dropped_total", "Objects left without br/zstd forms because the variant queue was full.", &c.stats.variantsDropped, nil))
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}
