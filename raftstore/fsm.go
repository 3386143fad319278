package raftstore

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// fsm is the raft state machine. It stays thin: decode the envelope,
// dispatch to an applier, publish the new View once per batch.
type fsm struct {
	view    atomic.Pointer[View]
	seed    maphash.Seed
	logger  *slog.Logger
	onApply func(*View) // called after every published batch; may be nil

	// rejected counts log entries applied as rejected no-ops because
	// they could not be decoded (see reject).
	rejected atomic.Uint64

	// mu guards dedupe and makes it and the published View one state
	// for Snapshot, which is also called off raft's FSM goroutine (the
	// node's backups, edgectl snapshot save): ApplyBatch and Restore
	// hold it while they change either, not while onApply runs.
	mu     sync.Mutex
	dedupe *dedupe
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

func newFSM(logger *slog.Logger, onApply func(*View)) *fsm {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f := &fsm{seed: maphash.MakeSeed(), dedupe: newDedupe(dedupeSize), logger: logger, onApply: onApply}
	f.view.Store(&View{hosts: newTable[*tenantcfg.Tenant](f.seed), kv: newTable[*KV](f.seed), members: map[string]Member{}})
	return f
}

// Apply applies a single log entry.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed entries in order and publishes one View.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	v, out := f.applyBatch(logs)
	f.notify(v)
	return out
}

// applyBatch applies logs and stores the new View, under mu.
func (f *fsm) applyBatch(logs []*raft.Log) (*View, []any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tx := f.begin()
	out := make([]any, len(logs))
	for i, l := range logs {
		tx.v.index = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, err := DecodeCommand(l.Data)
		if err != nil {
			out[i] = f.reject(l.Index, "", err)
			continue
		}
		out[i] = f.applyOne(tx, cmd, l.Index)
	}
	f.view.Store(tx.v)
	return tx.v, out
}

func (f *fsm) applyOne(tx *txn, cmd *Command, index uint64) *Result {
	if r, ok := f.dedupe.get(cmd.RequestID); ok {
		return r
	}
	var r *Result
	switch cmd.Type.base() {
	case CmdTenantAdd:
		r = applyTenantAdd(tx, cmd, index)
	case CmdTenantUpdate:
		r = applyTenantUpdate(tx, cmd, index)
	case CmdTenantRemove:
		r = applyTenantRemove(tx, cmd, index)
	case CmdMemberPut:
		r = applyMemberPut(tx, cmd, index)
	case CmdMemberRemove:
		r = applyMemberRemove(tx, cmd, index)
	case CmdPurge:
		r = applyPurge(tx, cmd, index)
	case CmdKVPut:
		r = applyKVPut(tx, cmd, index)
	case CmdKVDelete:
		r = applyKVDelete(tx, cmd, index)
	default:
		return f.reject(index, cmd.Type.String(), fmt.Errorf("unknown command type %d (protocol %d build; is the proposer newer?)", cmd.Type, Protocol))
	}
	if r.Err != nil && r.Err.Kind == kindRejected {
		return f.reject(index, cmd.Type.String(), r.Err)
	}
	r.Index = index
	f.dedupe.put(cmd.RequestID, r)
	tx.record(cmd, r)
	return r
}

// reject answers a log entry this build cannot decode (garbage bytes, an
// unknown command type, a payload that does not parse): it is applied as a
// no-op that changes nothing but the View's index, and its proposer gets
// ErrRejectedEntry. Every replica running the same build reaches the same
// verdict on the same bytes, so they stay identical, and a restarted node
// replays the entry the same way instead of crash-looping on it. The
// request ID is not remembered: nothing was applied, so a retry cannot
// apply anything twice. See docs/raftstore.md, "Entries that cannot be
// decoded".
func (f *fsm) reject(index uint64, typ string, err error) *Result {
	f.rejected.Add(1)
	f.logger.Error("raft log entry rejected: cannot decode it, applied as a no-op",
		"index", index, "type", typ, "err", err)
	return &Result{Index: index, Err: opErr(kindRejected, "log entry %d rejected: %v", index, err)}
}

// maxHistory bounds the change history kept in the state.
const maxHistory = 4096

// RestoreKey is the KV key the leader writes right after a snapshot
// restore, its value saying what was restored; writing it records the
// restore in the history, which the restore itself replaced with the
// snapshot's.
const RestoreKey = "edge/last-restore"

// record appends tenant and purge changes, and restores, to the history.
func (tx *txn) record(cmd *Command, r *Result) {
	var domain, op, detail string
	op = cmd.Type.base().String()
	switch cmd.Type.base() {
	case CmdKVPut:
		var p KVPut
		if json.Unmarshal(cmd.Payload, &p) != nil || p.Key != RestoreKey {
			return
		}
		op, detail = "snapshot.restore", string(p.Value)
	case CmdTenantAdd, CmdTenantUpdate, CmdTenantRemove, CmdPurge:
		var ref struct {
			Domain string `json:"domain"`
			Tenant string `json:"tenant"`
		}
		_ = json.Unmarshal(cmd.Payload, &ref)
		domain = ref.Domain
		if domain == "" {
			domain = ref.Tenant
		}
	default:
		return
	}
	if !tx.history {
		tx.v.history = append(make([]HistoryEntry, 0, len(tx.v.history)+8), tx.v.history...)
		tx.history = true
	}
	e := HistoryEntry{Index: r.Index, Time: cmd.Time, Op: op, Domain: domain, Actor: cmd.Actor, Detail: detail}
	if r.Err != nil {
		e.Error = r.Err.Message
	}
	tx.v.history = append(tx.v.history, e)
	if n := len(tx.v.history); n > maxHistory {
		tx.v.history = tx.v.history[n-maxHistory:]
	}
}

// notify tells onApply about a View just published.
func (f *fsm) notify(v *View) {
	if f.onApply != nil {
		f.onApply(v)
	}
}

// Snapshot captures the current View and request IDs, as of one moment;
// raft persists it concurrently with further applies, which is safe
// because Views are immutable and the IDs are copied.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &fsmSnapshot{view: f.view.Load(), requests: f.dedupe.entries()}, nil
}

// Restore replaces the whole state with the snapshot's, atomically.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	v, reqs, err := readSnapshot(rc, f.seed)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	d := newDedupe(dedupeSize)
	for _, e := range reqs {
		d.put(e.ID, e.Result)
	}
	f.mu.Lock()
	f.dedupe = d
	f.view.Store(v)
	f.mu.Unlock()
	f.notify(v)
	return nil
}

// txn is one batch of changes on top of the published View.
type txn struct {
	v       *View
	hosts   tableTxn[*tenantcfg.Tenant]
	kv      tableTxn[*KV]
	members bool // members map already copied
	purges  bool // purges slice already copied
	history bool // history slice already copied
}

func (f *fsm) begin() *txn {
	cur := f.view.Load()
	nv := *cur
	tx := &txn{v: &nv, hosts: cur.hosts.begin(), kv: cur.kv.begin()}
	nv.hosts, nv.kv = tx.hosts.t, tx.kv.t
	return tx
}

func (tx *txn) ownMembers() map[string]Member {
	if !tx.members {
		m := make(map[string]Member, len(tx.v.members)+1)
		for k, v := range tx.v.members {
			m[k] = v
		}
		tx.v.members = m
		tx.members = true
	}
	return tx.v.members
}

// dedupeSize bounds how many recent request IDs the state machine
// remembers. A client retry arrives within seconds; 16k covers that at
// thousands of writes per second.
const dedupeSize = 16384

type dedupeEntry struct {
	ID     string  `json:"id"`
	Result *Result `json:"result"`
}

// dedupe is a FIFO-bounded map of request ID → first result. It is part of
// the replicated state (it is in snapshots), so every replica answers a
// retried command the same way.
type dedupe struct {
	m    map[string]*Result
	ring []string
	next int
}

func newDedupe(n int) *dedupe { return &dedupe{m: map[string]*Result{}, ring: make([]string, n)} }

func (d *dedupe) get(id string) (*Result, bool) {
	if id == "" {
		return nil, false
	}
	r, ok := d.m[id]
	return r, ok
}

func (d *dedupe) put(id string, r *Result) {
	if id == "" {
		return
	}
	if _, ok := d.m[id]; ok {
		return
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.m, old)
	}
	d.ring[d.next] = id
	d.m[id] = r
	d.next = (d.next + 1) % len(d.ring)
}

func (d *dedupe) entries() []dedupeEntry {
	out := make([]dedupeEntry, 0, len(d.m))
	n := len(d.ring)
	for i := 0; i < n; i++ {
		id := d.ring[(d.next+i)%n]
		if id != "" {
			out = append(out, dedupeEntry{ID: id, Result: d.m[id]})
		}
	}
	return out
}
