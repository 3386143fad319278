package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/edgeproxy/edge/raftstore/peertls"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// Timings are raft's timeouts. The library defaults suit WAN links; on a
// LAN or loopback they make failover take seconds and follower visibility
// ~50 ms, so Edge uses shorter ones (see docs/raftstore.md for why).
type Timings struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
}

// DefaultTimings suit nodes on one LAN: failover well under a second.
func DefaultTimings() Timings {
	return Timings{
		HeartbeatTimeout:   250 * time.Millisecond,
		ElectionTimeout:    250 * time.Millisecond,
		LeaderLeaseTimeout: 125 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
	}
}

// Config configures a Store.
type Config struct {
	// ID is the node's stable raft server ID.
	ID string
	// DataDir holds raft.db (log + stable store) and snapshots/.
	DataDir string
	// BindAddr is the TCP address raft listens on.
	BindAddr string
	// Advertise is the address peers dial; it may be a DNS name. Defaults
	// to the bound address.
	Advertise string
	Timings   Timings
	// SnapshotThreshold is how many log entries trigger a snapshot.
	SnapshotThreshold uint64
	// SnapshotInterval is how often raft checks the threshold.
	SnapshotInterval time.Duration
	Logger           *slog.Logger
	// RaftLogLevel is hclog's level for raft's own logs (default "info").
	RaftLogLevel string
	// OnApply is called after each published View (from raft's FSM
	// goroutine); keep it quick.
	OnApply func(*View)
	// PeerTLS authenticates and encrypts every raft connection, both ways
	// (required: the raft port accepts no peer without the cluster
	// credential).
	PeerTLS *peertls.Credentials

	// commandProtocol replaces CommandType.Protocol in the leader's
	// gate. Tests only: no released command needs more than
	// BaseProtocol yet, so a test gives one a higher level to exercise
	// the gate with real members.
	commandProtocol func(CommandType) int
}

// Store is one node's replica of the control state.
type Store struct {
	cfg       Config
	raft      *raft.Raft
	fsm       *fsm
	bolt      *raftboltdb.BoltStore
	logs      raft.LogStore // the cached log raft uses (WaitApplied reads it)
	transport *guardedTransport
	stream    *streamLayer
	logger    *slog.Logger

	leaderMu      sync.Mutex
	leaderChanged chan struct{} // closed, then replaced, when the leader changes
	leaderObs     *raft.Observer
	leaderObsCh   chan raft.Observation
	obsOnce       sync.Once // Close may be called more than once
}

// Open opens (or creates) the node's raft state under cfg.DataDir and
// starts raft. A node with existing state rejoins its cluster by itself;
// a new one waits for Bootstrap or to be added by a leader.
func Open(cfg Config) (*Store, error) {
	if cfg.ID == "" || cfg.DataDir == "" || cfg.BindAddr == "" {
		return nil, errors.New("raftstore: ID, DataDir and BindAddr are required")
	}
	if cfg.PeerTLS == nil {
		return nil, errors.New("raftstore: PeerTLS is required: the raft port must authenticate its peers")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Timings == (Timings{}) {
		cfg.Timings = DefaultTimings()
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = 8192
	}
	if cfg.SnapshotInterval == 0 {
		cfg.SnapshotInterval = 30 * time.Second
	}
	if cfg.RaftLogLevel == "" {
		cfg.RaftLogLevel = "info"
	}
	if cfg.commandProtocol == nil {
		cfg.commandProtocol = CommandType.Protocol
	}
	if err := tighten(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("raftstore: data dir: %w", err)
	}
	hl := newHCLogger(cfg.Logger, cfg.RaftLogLevel)

	// A damaged data dir is refused before raft sees it (damage.go):
	// raft would start on less than the node had acknowledged, or panic.
	if err := checkDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	// NoSync stays false: bolt fsyncs every commit, so a log entry is on
	// disk before this node acknowledges it (node/chaos's power loss
	// tests check it).
	dbPath := filepath.Join(cfg.DataDir, "raft.db")
	var bolt *raftboltdb.BoltStore
	err := openBolt(dbPath, func() (err error) {
		bolt, err = raftboltdb.New(raftboltdb.Options{Path: dbPath, NoSync: false})
		return err
	})
	if errors.Is(err, ErrDamaged) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("raftstore: open raft.db: %w", err)
	}
	files, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 3, hl)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("raftstore: snapshot store: %w", err)
	}
	snaps := &privateSnapshots{SnapshotStore: files, dir: filepath.Join(cfg.DataDir, "snapshots")}
	if err := tighten(snaps.dir); err != nil {
		bolt.Close()
		return nil, fmt.Errorf("raftstore: snapshot dir: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		bolt.Close()
		return nil, fmt.Errorf("raftstore: listen on %s: %w", cfg.BindAddr, err)
	}
	adv := cfg.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	stream := newStreamLayer(ln, adv, cfg.PeerTLS, cfg.Logger)
	transport := &guardedTransport{NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 4,
		Timeout: 5 * time.Second,
		Logger:  hl,
	})}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.Timings.HeartbeatTimeout
	rc.ElectionTimeout = cfg.Timings.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.Timings.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.Timings.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = 10240
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.NoLegacyTelemetry = true

	f := newFSM(cfg.Logger, cfg.OnApply)
	logs, err := raft.NewLogCache(1024, bolt)
	if err != nil {
		transport.Close()
		bolt.Close()
		return nil, err
	}
	r, err := raft.NewRaft(rc, f, logs, bolt, snaps, transport)
	if err != nil {
		transport.Close()
		bolt.Close()
		return nil, fmt.Errorf("raftstore: start raft: %w", err)
	}
	s := &Store{cfg: cfg, raft: r, fsm: f, bolt: bolt, logs: logs, transport: transport, stream: stream, logger: cfg.Logger,
		leaderChanged: make(chan struct{})}
	s.observeLeader()
	return s, nil
}

// LeaderChanged returns a channel that is closed the next time this node's
// idea of the leader changes: a new leader is heard from, or the old one
// is given up on (a follower's heartbeat timeout, a leader stepping down).
// A call forwarded to the leader selects on it, so that it is abandoned
// and sent again as soon as the node knows it went to the wrong place,
// rather than when its deadline runs out.
func (s *Store) LeaderChanged() <-chan struct{} {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	return s.leaderChanged
}

func (s *Store) observeLeader() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	s.raft.RegisterObserver(obs)
	go func() {
		// Ends when Close deregisters the observer and closes ch.
		for range ch {
			s.leaderMu.Lock()
			close(s.leaderChanged)
			s.leaderChanged = make(chan struct{})
			s.leaderMu.Unlock()
		}
	}()
	s.leaderObs = obs
	s.leaderObsCh = ch
}

// ID is this node's server ID.
func (s *Store) ID() string { return s.cfg.ID }

// Addr is the raft address peers use for this node.
func (s *Store) Addr() string { return string(s.transport.LocalAddr()) }

// RejectedPeers counts raft connections refused because the peer did not
// present the cluster credential.
func (s *Store) RejectedPeers() uint64 { return s.stream.rejected.Load() }

// Raft exposes the raft instance for membership and status calls.
func (s *Store) Raft() *raft.Raft { return s.raft }

// View returns the current immutable state.
func (s *Store) View() *View { return s.fsm.view.Load() }

// Lookup is View().Lookup(host): lock-free and allocation-free.
func (s *Store) Lookup(host string) *tenantcfg.Tenant { return s.fsm.view.Load().Lookup(host) }

// AppliedIndex is the index of the last entry applied to the local state.
func (s *Store) AppliedIndex() uint64 { return s.fsm.view.Load().index }

// HasState reports whether this node already belongs to a cluster (it has a
// raft configuration or log), so it must not be bootstrapped again.
func (s *Store) HasState() bool {
	if s.raft.LastIndex() > 0 {
		return true
	}
	f := s.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// Bootstrap creates a new cluster whose initial voters are servers.
func (s *Store) Bootstrap(servers []raft.Server) error {
	return s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
}

// IsLeader reports whether this node is the leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader's raft address and ID, empty when unknown.
func (s *Store) Leader() (addr, id string) {
	a, i := s.raft.LeaderWithID()
	return string(a), string(i)
}

// Apply proposes cmd and waits until this node (the leader) has applied
// it. Only the leader may apply; others get ErrNotLeader. An
// ErrLeadershipLost from raft means the outcome is unknown: retry with
// the same RequestID, the state machine will not apply it twice.
func (s *Store) Apply(ctx context.Context, cmd *Command) (*Result, error) {
	b, err := cmd.Encode()
	if err != nil {
		return nil, err
	}
	return s.ApplyEncoded(ctx, b)
}

// ApplyEncoded is Apply for an already encoded command (forwarded by a
// follower).
//
// A command that some server of the raft configuration cannot apply yet
// (see checkProtocol) is not proposed: the Result's Err is
// ErrUnsupportedByCluster, naming the lagging members, and Index is 0.
func (s *Store) ApplyEncoded(ctx context.Context, b []byte) (*Result, error) {
	if s.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	cmd, err := DecodeCommand(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if e := s.checkProtocol(cmd.Type); e != nil {
		return &Result{Err: e}, nil
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := s.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return nil, ErrNotLeader
		}
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	r, ok := f.Response().(*Result)
	if !ok {
		return nil, fmt.Errorf("raft apply: unexpected response %T", f.Response())
	}
	return r, nil
}

// checkProtocol is the leader's gate for rolling upgrades: it refuses a
// command type that this build does not know, or that needs a protocol
// level above that of some server in the raft configuration (voter or
// not: every one of them applies the log). A server's level is the one
// its member record reports; a server without a record yet counts as
// BaseProtocol. Base commands always pass, member.put among them, so a
// node can always publish the level it runs and let the cluster's rise.
func (s *Store) checkProtocol(t CommandType) *Error {
	need := s.cfg.commandProtocol(t)
	if need == 0 {
		return opErr(kindUnsupported, "%s is unknown to the leader %s (protocol %d): upgrade it first", t, s.cfg.ID, Protocol)
	}
	if need <= BaseProtocol {
		return nil
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return opErr(kindUnsupported, "%s needs protocol %d; cannot read the raft configuration: %v", t, need, err)
	}
	v := s.View()
	var lagging []string
	for _, srv := range f.Configuration().Servers {
		level := BaseProtocol
		if m, ok := v.Member(string(srv.ID)); ok {
			level = m.ProtocolLevel()
		}
		if level < need {
			lagging = append(lagging, fmt.Sprintf("%s (protocol %d)", srv.ID, level))
		}
	}
	if len(lagging) == 0 {
		return nil
	}
	return opErr(kindUnsupported, "%s needs protocol %d; not yet on %s: finish upgrading them first", t, need, strings.Join(lagging, ", "))
}

// RejectedEntries is how many log entries this node has applied as
// rejected no-ops since it started (fsm.reject), replays included.
func (s *Store) RejectedEntries() uint64 { return s.fsm.rejected.Load() }

// ReadIndex confirms this node still leads and returns the index a
// linearizable read must wait for.
func (s *Store) ReadIndex() (uint64, error) {
	if s.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	// A barrier entry, not raft.VerifyLeader: a leader paused (SIGSTOP,
	// a stalled VM) can read, after it resumes, heartbeat answers its
	// followers sent before the pause, and VerifyLeader counts those as
	// votes for a check asked for after it. A new entry can only be
	// committed by acknowledgements of that entry, so a deposed leader
	// cannot pass this (node/chaos caught the old check returning a value
	// two writes old). It costs one log append per leader read; reads
	// that need it are admin calls, not the data plane.
	if err := s.raft.Barrier(5 * time.Second).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, ErrNotLeader
		}
		return 0, err
	}
	return s.raft.CommitIndex(), nil
}

// WaitApplied blocks until the local state has applied index.
//
// The View's index moves only with the entries raft hands the FSM
// (commands and configurations). Raft's own no-ops (one after every
// election) and barriers are committed without reaching it, so when the
// newest committed entries are of that kind the View never reaches the
// commit index a read waits for, until the next write. The View is
// nonetheless current: WaitApplied also returns once every entry between
// the View's index and index is one the FSM never sees.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		applied := s.AppliedIndex()
		if applied >= index || s.noneForFSM(applied+1, index) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (at %d): %w", index, s.AppliedIndex(), ctx.Err())
		case <-t.C:
		}
	}
}

// maxSkipCheck bounds how many log entries noneForFSM reads; a longer gap
// is waited out (it holds commands, or the View would not be that far
// behind for more than a moment).
const maxSkipCheck = 64

// noneForFSM reports whether the log entries from..to (inclusive) are all
// of the kinds raft does not pass to the FSM (no-ops and barriers). An
// entry it cannot read counts as one the FSM needs.
func (s *Store) noneForFSM(from, to uint64) bool {
	if to < from || to-from >= maxSkipCheck {
		return false
	}
	// Only committed entries are the cluster's: past this node's commit
	// index its log may hold a deposed leader's tail (a no-op or barrier
	// of its old term) where the cluster committed writes. Reading that
	// tail let a paused-then-resumed old leader answer a leader-confirmed
	// read with a value two writes old (found by node/chaos).
	if to > s.raft.CommitIndex() {
		return false
	}
	var l raft.Log
	for i := from; i <= to; i++ {
		if err := s.logs.GetLog(i, &l); err != nil {
			return false
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}

// Close stops raft and closes the stores. It does not transfer leadership;
// the node does that first when shutting down gracefully.
func (s *Store) Close() error {
	err := s.raft.Shutdown().Error()
	s.transport.stopHeartbeats() // before the log store closes under one
	s.obsOnce.Do(func() {
		s.raft.DeregisterObserver(s.leaderObs)
		close(s.leaderObsCh) // raft sends no more once deregistered
	})
	if cerr := s.transport.Close(); err == nil {
		err = cerr
	}
	if cerr := s.bolt.Close(); err == nil {
		err = cerr
	}
	return err
}

// Term is the current raft term, used to fence KV writes.
func (s *Store) Term() uint64 { return s.raft.CurrentTerm() }
