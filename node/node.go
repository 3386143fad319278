package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/node/logship"
	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/certs"
	"github.com/edgeproxy/edge/raftstore"
)

// Node is one running Edge node.
type Node struct {
	cfg     Config
	logger  *slog.Logger
	store   *raftstore.Store
	adminLn net.Listener
	admin   *grpc.Server
	peers   *peers

	registry  *prometheus.Registry
	dp        *dataPlane
	metrics   *http.Server
	metricsLn net.Listener
	cache     *cache.Cache
	applied   chan struct{} // signalled after every applied batch

	raftMetrics *raftCollector
	shipper     *logship.Shipper
	certMgr     *certs.Manager
	// bootstrapped is set by joinLoop when this node created the cluster.
	bootstrapped bool

	readyTerm atomic.Uint64 // term in which this leader applied its first entry
	wasReady  atomic.Bool   // /readyz answered ready once
	wg        sync.WaitGroup
	stopOnce  sync.Once

	closers closers      // what New opened, released by shutdown (closers.go)
	state   atomic.Int32 // stateNew, stateRunning, stateClosed
}

// Node states: Run and Close each take a new node once.
const (
	stateNew = iota
	stateRunning
	stateClosed
)

// New opens the node's store and binds its listeners. Nothing is served
// until Run. Everything New opens is pushed on the node's closers as it
// is opened (closers.go): a New that fails releases exactly that before
// it returns, and shutdown releases the same things in reverse order.
func New(cfg Config) (_ *Node, err error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, applied: make(chan struct{}, 1)}
	n.logger = cfg.Logger.With("node", cfg.ID)
	defer func() {
		if err != nil {
			n.closers.unwind(context.Background(), n.logger)
		}
	}()
	n.registry = newRegistry(cfg.Version)
	if cfg.LogWriter != nil {
		if err := n.registry.Register(cfg.LogWriter.Collector()); err != nil {
			return nil, fmt.Errorf("log writer metrics: %w", err)
		}
	}
	if cfg.LokiURL != "" {
		labels := map[string]string{"job": "edge", "node": cfg.ID}
		for k, v := range cfg.LokiLabels {
			labels[k] = v
		}
		sh, err := logship.New(logship.Config{URL: cfg.LokiURL, Labels: labels, Registerer: n.registry, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("--loki-url: %w", err)
		}
		n.shipper = sh
		cfg.Logger = slog.New(sh.Handler(cfg.Logger.Handler()))
		n.cfg.Logger = cfg.Logger
		n.logger = cfg.Logger.With("node", cfg.ID)
	}
	// Released last: every other release may still log.
	n.closers.push("logs", n.closeLogs)

	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	n.adminLn = ln
	// The admin server closes it once it served; this is for a node
	// that never did.
	n.closers.push("admin listener", func(context.Context) error {
		if err := ln.Close(); !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	if n.cfg.AdminAdvertise == "" || hasZeroPort(n.cfg.AdminAdvertise) {
		n.cfg.AdminAdvertise = ln.Addr().String()
	}

	adv := cfg.RaftAdvertise
	if hasZeroPort(adv) {
		adv = ""
	}
	peerTLS, err := raftCredentials(&n.cfg)
	if err != nil {
		return nil, fmt.Errorf("raft credential: %w", err)
	}
	st, err := raftstore.Open(raftstore.Config{
		ID:           cfg.ID,
		DataDir:      cfg.DataDir,
		BindAddr:     cfg.RaftAddr,
		Advertise:    adv,
		Timings:      cfg.RaftTimings,
		Logger:       n.logger,
		RaftLogLevel: cfg.RaftLogLevel,
		OnApply:      n.onApply,
		PeerTLS:      peerTLS,
	})
	if err != nil {
		return nil, err
	}
	n.store = st
	n.closers.push("raft store", func(context.Context) error { return st.Close() })
	n.raftMetrics = newRaftCollector(n, n.registry)
	stopObserving := n.raftMetrics.observeLeaders()
	n.closers.push("raft leader observer", func(context.Context) error { stopObserving(); return nil })

	pc, err := peerCreds(&n.cfg)
	if err != nil {
		return nil, err
	}
	n.peers = newPeers(grpc.WithTransportCredentials(pc),
		grpc.WithPerRPCCredentials(tokenCreds{token: cfg.AdminToken, secure: cfg.AdminTLSCert != ""}))
	n.closers.push("peer connections", func(context.Context) error { n.peers.close(); return nil })
	// Run's goroutines (servers, loops) read the store and call peers:
	// they have all returned before either closes.
	n.closers.push("background work", func(context.Context) error { n.wg.Wait(); return nil })

	creds, err := serverCreds(&n.cfg)
	if err != nil {
		return nil, err
	}
	auth := newAuthenticator(&cfg)
	if cfg.AdminToken == "" && cfg.AdminClientCA == "" && cfg.Dev {
		auth.open = true
		n.logger.Warn("admin API runs WITHOUT authentication (--dev on loopback)", "addr", ln.Addr().String())
	}
	n.admin = grpc.NewServer(grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(auth.unary),
		grpc.ChainStreamInterceptor(auth.stream))
	edgev1.RegisterTenantServiceServer(n.admin, &tenantService{n: n})
	edgev1.RegisterClusterServiceServer(n.admin, &clusterService{n: n})
	edgev1.RegisterInternalServiceServer(n.admin, &internalService{n: n})
	edgev1.RegisterCacheServiceServer(n.admin, &cacheService{n: n})
	edgev1.RegisterSnapshotServiceServer(n.admin, &snapshotService{n: n})
	edgev1.RegisterHistoryServiceServer(n.admin, &historyService{n: n})
	edgev1.RegisterTransformServiceServer(n.admin, &transformService{n: n})
	edgev1.RegisterCertServiceServer(n.admin, &certService{n: n})
	n.closers.push("admin API", n.stopAdmin)

	// The metrics listener opens before the data plane so that it closes
	// after the proxy drained: scrapes and probes see the drain.
	if err := n.newMetricsServer(n.registry); err != nil {
		return nil, err
	}
	if n.dp, err = n.newDataPlane(n.registry); err != nil {
		return nil, err
	}
	return n, nil
}

// stopAdmin drains the admin API for up to ShutdownGrace of its own (a
// forwarded write in flight finishes), then cuts what is left.
func (n *Node) stopAdmin(context.Context) error {
	done := make(chan struct{})
	go func() { n.admin.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(n.cfg.ShutdownGrace):
		n.admin.Stop()
	}
	return nil
}

// closeLogs flushes the buffered writer behind the logs, then the Loki
// shipper: the proxy has drained, every access line is written.
func (n *Node) closeLogs(context.Context) error {
	if n.state.Load() != stateNew {
		n.logger.Info("edged stopped")
	}
	if n.cfg.LogWriter != nil {
		// A stuck stdout is the owner's to report when it closes the
		// writer; logging it here would only queue behind it.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = n.cfg.LogWriter.Flush(ctx)
		cancel()
	}
	if n.shipper != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = n.shipper.Close(ctx)
		cancel()
	}
	return nil
}

func hasZeroPort(addr string) bool {
	_, p, err := net.SplitHostPort(addr)
	return err == nil && (p == "0" || p == "")
}

// ID is the node's server ID.
func (n *Node) ID() string { return n.cfg.ID }

// AdminAddr is the bound admin (gRPC) address.
func (n *Node) AdminAddr() string { return n.adminLn.Addr().String() }

// RaftAddr is the raft address peers use.
func (n *Node) RaftAddr() string { return n.store.Addr() }

// Store exposes the replicated store (for the proxy wiring and tests).
func (n *Node) Store() *raftstore.Store { return n.store }

// Run serves until ctx is cancelled, then shuts down gracefully: leadership
// is handed over first if this node leads, and in-flight work drains.
//
// Run releases everything New opened before it returns, and runs once.
func (n *Node) Run(ctx context.Context) error {
	if !n.state.CompareAndSwap(stateNew, stateRunning) {
		return errNotNew
	}
	serveErr := make(chan error, 1)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.admin.Serve(n.adminLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			serveErr <- fmt.Errorf("admin server: %w", err)
		}
	}()
	if n.dp != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.dp.server.Serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("proxy server: %w", err)
			}
		}()
	}
	if n.metrics != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.metrics.Serve(n.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if n.certMgr != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.certMgr.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				n.logger.Error("certificate manager stopped", "err", err)
			}
		}()
	}
	n.wg.Add(5)
	go func() { defer n.wg.Done(); n.backupLoop(runCtx) }()
	go func() { defer n.wg.Done(); n.reapLoop(runCtx) }()
	go func() { defer n.wg.Done(); n.purgeLoop(runCtx) }()
	go func() { defer n.wg.Done(); n.joinLoop(runCtx) }()
	go func() { defer n.wg.Done(); n.registerLoop(runCtx) }()
	n.logger.Info("edged started", "admin", n.AdminAddr(), "raft", n.RaftAddr(), "http", n.HTTPAddr(), "https", n.HTTPSAddr(), "metrics", n.MetricsAddr(), "data_dir", n.cfg.DataDir)

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	cancel()
	n.shutdown()
	n.state.Store(stateClosed)
	return err
}

// Close releases a node that New returned and Run never ran: its
// listeners, store and the rest New opened. Run releases by itself; Close
// after Run returned does nothing, and while Run runs, cancel Run's
// context instead.
func (n *Node) Close() error {
	if n.state.CompareAndSwap(stateNew, stateClosed) {
		n.shutdown()
		return nil
	}
	if n.state.Load() == stateRunning {
		return errors.New("node: Close while Run runs; cancel Run's context instead")
	}
	return nil
}

var errNotNew = errors.New("node: Run on a node that ran or was closed")

// shutdown leaves politely: a leader hands over leadership, then what New
// opened is released in reverse order (closers.go): the proxy drains, the
// cache and origin pools close, the metrics listener, then the admin API
// drains, Run's goroutines end, and the raft store and logs close last.
// The proxy and metrics drains share ShutdownGrace; the admin API has its
// own.
func (n *Node) shutdown() {
	n.stopOnce.Do(func() {
		r := n.store.Raft()
		n.leaveIfNonvoter()
		if n.store.IsLeader() && n.voterCount() > 1 {
			start := time.Now()
			if err := r.LeadershipTransfer().Error(); err != nil {
				n.logger.Warn("leadership transfer before shutdown failed", "err", err)
			} else {
				n.logger.Info("leadership transferred before shutdown", "took", time.Since(start))
			}
		}
		dctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownGrace)
		n.closers.unwind(dctx, n.logger)
		cancel()
	})
}

func (n *Node) voterCount() int {
	f := n.store.Raft().GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

// requestID returns the caller's idempotency key, or a new one. edgectl
// sends the same key on every retry of one logical operation.
func requestID(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-edge-request-id"); len(v) > 0 && len(v[0]) <= 128 && v[0] != "" {
			return v[0]
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// apply proposes cmd through the leader, wherever it is, and returns once
// the leader has applied it. Retries are safe: the command's request ID
// makes the state machine apply it at most once. A try that fails goes
// again as soon as this node hears of a new leader, or straight to the
// leader the failed try's answer named (a deposed leader's hint), else
// after a short jittered backoff (retryWait).
func (n *Node) apply(ctx context.Context, cmd *raftstore.Command) (*raftstore.Result, error) {
	b, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	ctx, cancel := n.answerBy(ctx)
	defer cancel()
	var lastErr error = errNoLeader
	start := time.Now()
	hint, hinted := "", false
	for try := 0; ; try++ {
		changed := n.store.LeaderChanged() // before the lookup: no change is missed
		r, err := n.applyOnce(ctx, b, changed, &hint)
		if err == nil {
			if n.raftMetrics != nil {
				n.raftMetrics.applyLatency.Observe(time.Since(start).Seconds())
			}
			if r.Err != nil {
				return r, r.Err
			}
			return r, nil
		}
		if !retryable(err) {
			return nil, err
		}
		lastErr = err
		if hint != "" && !hinted {
			hinted = true // once: two nodes naming each other do not spin
			continue
		}
		hinted = false
		if retryWait(ctx, changed, try) != nil {
			return nil, n.withHint(fmt.Errorf("%w: %v", errNoLeader, lastErr))
		}
	}
}

// applyOnce is one try: on this node if it leads, else forwarded to the
// leader (*hint, when the previous try's answer named one, else this
// node's own idea of it). A failed forward's answer may name the leader
// for the next try in *hint.
func (n *Node) applyOnce(ctx context.Context, b []byte, changed <-chan struct{}, hint *string) (*raftstore.Result, error) {
	if n.store.IsLeader() {
		return n.store.ApplyEncoded(ctx, b)
	}
	addr := *hint
	*hint = ""
	if addr == "" {
		var err error
		if addr, err = n.leaderAdmin(); err != nil {
			return nil, err
		}
	}
	c, err := n.peers.internal(addr)
	if err != nil {
		return nil, err
	}
	actx, cancel := n.forwardCtx(ctx, changed)
	defer cancel()
	resp, err := c.Apply(actx, &edgev1.ApplyRequest{Command: b})
	if err != nil {
		*hint = n.forwardHint(err, addr)
		return nil, forwardError(actx, err)
	}
	return raftstore.DecodeResult(resp.GetResult())
}

// forwardCtx bounds one forwarded call to the leader: cfg.forwardAttempt
// (2s), or half of the time ctx has left if that is less, and no longer
// than this node's idea of the leader lasts (changed, from
// Store.LeaderChanged, taken before the leader was looked up).
//
// A leader that hangs (SIGSTOP, a wedged process) or is cut off keeps its
// connection open and never answers. The deadline ends the try and
// apply/readBarrier try again at whoever leads by then, with the same
// request ID. Half, so that a second try fits inside the caller's own
// deadline: edgectl sends its attempt deadline along, and a follower that
// used all of it on a hung leader would only make edgectl move to the
// next server. The leader change ends it sooner: a follower gives up on
// the old leader after its heartbeat timeout and hears from the new one
// right after the election, and the call sent to the old one is then
// known to be in the wrong place. Waiting out the deadline instead is
// what made a paused or cut-off leader cost the suite's clients 1.5 s (half
// of their 3 s) rather than an election's ~1 s (docs/reliability.md).
func (n *Node) forwardCtx(ctx context.Context, changed <-chan struct{}) (context.Context, context.CancelFunc) {
	d := n.cfg.forwardAttempt
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if half := left / 2; half < d {
			d = half
			if d < 100*time.Millisecond {
				d = left
			}
		}
	}
	cctx, cancelCause := context.WithCancelCause(ctx)
	tctx, cancel := context.WithTimeout(cctx, d)
	stop := make(chan struct{})
	go func() {
		select {
		case <-changed:
			cancelCause(errLeaderChanged)
		case <-stop:
		}
	}()
	return tctx, func() {
		close(stop)
		cancel()
		cancelCause(context.Canceled)
	}
}

// errLeaderChanged ends a forwarded call whose leader was replaced or
// given up on while it was in flight; apply and readBarrier retry it.
var errLeaderChanged = fmt.Errorf("%w: the leader changed while the call was in flight", errNoLeader)

// forwardError returns errLeaderChanged when that is why the forwarded
// call under actx ended, and err otherwise.
func forwardError(actx context.Context, err error) error {
	if errors.Is(context.Cause(actx), errLeaderChanged) {
		return errLeaderChanged
	}
	return err
}

// retryable reports whether a failed proposal may be retried: the leader
// moved, was unreachable, or lost leadership mid-apply (outcome unknown,
// made safe by request IDs).
func retryable(err error) bool {
	if errors.Is(err, raftstore.ErrNotLeader) || errors.Is(err, errNoLeader) ||
		errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader) ||
		errors.Is(err, raft.ErrEnqueueTimeout) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return true
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.FailedPrecondition, codes.DeadlineExceeded, codes.Aborted:
			return true
		}
	}
	return false
}

// leaderAdmin returns the leader's admin address.
func (n *Node) leaderAdmin() (string, error) {
	_, id := n.store.Leader()
	if id == "" {
		return "", errNoLeader
	}
	if id == n.cfg.ID {
		return n.cfg.AdminAdvertise, nil
	}
	m, ok := n.store.View().Member(id)
	if !ok || m.AdminAddr == "" {
		return "", fmt.Errorf("%w: leader %s has not registered its admin address yet", errNoLeader, id)
	}
	return m.AdminAddr, nil
}

// readBarrier makes a read linearizable: the leader confirms it still
// leads, and this node waits until it has applied the leader's commit
// index. local skips it. Tries are paced as apply's.
func (n *Node) readBarrier(ctx context.Context, c edgev1.Consistency) error {
	if c == edgev1.Consistency_CONSISTENCY_LOCAL {
		return nil
	}
	ctx, cancel := n.answerBy(ctx)
	defer cancel()
	hint, hinted := "", false
	for try := 0; ; try++ {
		changed := n.store.LeaderChanged()
		idx, err := n.readIndex(ctx, changed, &hint)
		if err == nil {
			return n.store.WaitApplied(ctx, idx)
		}
		if !retryable(err) {
			return err
		}
		if hint != "" && !hinted {
			hinted = true // once: two nodes naming each other do not spin
			continue
		}
		hinted = false
		if retryWait(ctx, changed, try) != nil {
			return n.withHint(fmt.Errorf("%w: %v", errNoLeader, err))
		}
	}
}

func (n *Node) readIndex(ctx context.Context, changed <-chan struct{}, hint *string) (uint64, error) {
	if n.store.IsLeader() {
		return n.leaderReadIndex()
	}
	addr := *hint
	*hint = ""
	if addr == "" {
		var err error
		if addr, err = n.leaderAdmin(); err != nil {
			return 0, err
		}
	}
	c, err := n.peers.internal(addr)
	if err != nil {
		return 0, err
	}
	rctx, cancel := n.forwardCtx(ctx, changed)
	defer cancel()
	r, err := c.ReadIndex(rctx, &edgev1.ReadIndexRequest{})
	if err != nil {
		*hint = n.forwardHint(err, addr)
		return 0, forwardError(rctx, err)
	}
	return r.GetIndex(), nil
}
