package node

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// raftCollector exports raft's health on scrape: state, term and indexes
// are read when Prometheus asks, so nothing runs in between.
type raftCollector struct {
	n                                  *Node
	state, term, applied, commit, last *prometheus.Desc
	peersRejected                      *prometheus.Desc
	rejected                           *prometheus.Desc
	leaderChanges                      prometheus.Counter
	applyLatency                       prometheus.Histogram
	purgeLatency                       prometheus.Histogram
}

func newRaftCollector(n *Node, reg prometheus.Registerer) *raftCollector {
	c := &raftCollector{
		n:       n,
		state:   prometheus.NewDesc("edge_raft_state", "Raft state of this node (1 for the current state).", []string{"state"}, nil),
		term:    prometheus.NewDesc("edge_raft_term", "Current raft term.", nil, nil),
		applied: prometheus.NewDesc("edge_raft_applied_index", "Last log index applied to this node's state.", nil, nil),
		commit:  prometheus.NewDesc("edge_raft_commit_index", "Last log index known to be committed.", nil, nil),
		last:    prometheus.NewDesc("edge_raft_last_index", "Last log index stored on this node.", nil, nil),
		peersRejected: prometheus.NewDesc("edge_raft_peers_rejected_total",
			"Raft connections refused because the peer did not present the cluster credential.", nil, nil),
		rejected: prometheus.NewDesc("edge_raft_entries_rejected_total",
			"Log entries this node could not decode and applied as rejected no-ops (replays after a restart count again); see docs/raftstore.md.", nil, nil),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_raft_leader_changes_total", Help: "Leader changes observed by this node.",
		}),
		applyLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edge_raft_commit_seconds",
			Help:    "Time from proposing a command on this node until the leader applied it.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
		}),
		purgeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "edge_purge_seconds",
			Help:    "Time from accepting a cache purge until every member confirmed it (or the wait ended).",
			Buckets: []float64{.005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	if reg != nil {
		reg.MustRegister(c, c.leaderChanges, c.applyLatency, c.purgeLatency)
	}
	return c
}

func (c *raftCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.term
	ch <- c.applied
	ch <- c.commit
	ch <- c.last
	ch <- c.peersRejected
	ch <- c.rejected
}

func (c *raftCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.n.store.Raft()
	cur := r.State()
	for _, s := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		v := 0.0
		if s == cur {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, stateName(s))
	}
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(r.CurrentTerm()))
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(c.n.store.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, float64(r.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(r.LastIndex()))
	ch <- prometheus.MustNewConstMetric(c.peersRejected, prometheus.CounterValue, float64(c.n.store.RejectedPeers()))
	ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(c.n.store.RejectedEntries()))
}

// observeLeaders counts leader changes through a raft observer until
// stop, which ends the counting goroutine.
func (c *raftCollector) observeLeaders() (stop func()) {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r := c.n.store.Raft()
	r.RegisterObserver(obs)
	go func() {
		for range ch {
			c.leaderChanges.Inc()
		}
	}()
	return func() {
		r.DeregisterObserver(obs)
		close(ch) // raft sends no more once deregistered
	}
}
