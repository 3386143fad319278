package raftstore

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// Snapshot format: newline-delimited JSON, streamed so that neither side
// holds a second copy of the state in memory.
//
//	{"format":1,"index":N,"tenants":T,"members":[…],"requests":R}
//	T lines, one tenant each
//	R lines, one dedupe entry each
const snapshotFormat = 1

type snapshotHeader struct {
	Format   int            `json:"format"`
	Index    uint64         `json:"index"`
	Tenants  int            `json:"tenants"`
	Members  []Member       `json:"members"`
	Requests int            `json:"requests"`
	KV       int            `json:"kv"`
	Purges   []PurgeRecord  `json:"purges,omitempty"`
	History  []HistoryEntry `json:"history,omitempty"`
}

type fsmSnapshot struct {
	view     *View
	requests []dedupeEntry
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

func (s *fsmSnapshot) writeTo(w io.Writer) error { return writeSnapshot(w, s.view, s.requests) }

func writeSnapshot(w io.Writer, v *View, reqs []dedupeEntry) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	kvs := 0
	for i := range v.kv.shards {
		kvs += len(v.kv.shards[i])
	}
	h := snapshotHeader{Format: snapshotFormat, Index: v.index, Tenants: v.tenants, Members: v.Members(), Requests: len(reqs), KV: kvs, Purges: v.purges, History: v.history}
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	n := 0
	for i := range v.hosts.shards {
		for k, t := range v.hosts.shards[i] {
			if k != t.Domain {
				continue
			}
			if err := enc.Encode(t); err != nil {
				return fmt.Errorf("write snapshot tenant %s: %w", t.Domain, err)
			}
			n++
		}
	}
	if n != v.tenants {
		return fmt.Errorf("write snapshot: view holds %d tenants, counted %d", v.tenants, n)
	}
	for _, e := range reqs {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("write snapshot request: %w", err)
		}
	}
	for i := range v.kv.shards {
		for _, e := range v.kv.shards[i] {
			if err := enc.Encode(e); err != nil {
				return fmt.Errorf("write snapshot kv %s: %w", e.Key, err)
			}
		}
	}
	return bw.Flush()
}

func readSnapshot(r io.Reader, seed maphash.Seed) (*View, []dedupeEntry, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	if h.Format != snapshotFormat {
		return nil, nil, fmt.Errorf("unsupported snapshot format %d", h.Format)
	}
	v := &View{index: h.Index, hosts: newTable[*tenantcfg.Tenant](seed), kv: newTable[*KV](seed), members: map[string]Member{}, purges: h.Purges, history: h.History}
	for _, m := range h.Members {
		v.members[m.ID] = m
	}
	for i := 0; i < h.Tenants; i++ {
		t := new(tenantcfg.Tenant)
		if err := dec.Decode(t); err != nil {
			return nil, nil, fmt.Errorf("tenant %d of %d: %w", i+1, h.Tenants, err)
		}
		for _, host := range t.Hosts() {
			v.hosts.shards[v.hosts.shard(host)][host] = t
		}
	}
	v.tenants = h.Tenants
	reqs := make([]dedupeEntry, 0, h.Requests)
	for i := 0; i < h.Requests; i++ {
		var e dedupeEntry
		if err := dec.Decode(&e); err != nil {
			return nil, nil, fmt.Errorf("request %d of %d: %w", i+1, h.Requests, err)
		}
		reqs = append(reqs, e)
	}
	for i := 0; i < h.KV; i++ {
		e := new(KV)
		if err := dec.Decode(e); err != nil {
			return nil, nil, fmt.Errorf("kv %d of %d: %w", i+1, h.KV, err)
		}
		v.kv.shards[v.kv.shard(e.Key)][e.Key] = e
	}
	return v, reqs, nil
}

// WriteSnapshot streams a consistent snapshot of the current state (the
// same format raft snapshots use) and returns the index it reflects.
func (s *Store) WriteSnapshot(w io.Writer) (uint64, error) {
	snap, err := s.fsm.Snapshot()
	if err != nil {
		return 0, err
	}
	fs := snap.(*fsmSnapshot)
	return fs.view.index, fs.writeTo(w)
}

// CheckSnapshot parses a whole snapshot without installing it and returns
// its tenant count: a truncated or corrupt file fails here, before
// anything changes.
func CheckSnapshot(r io.Reader) (tenants int, err error) {
	v, _, err := readSnapshot(r, maphash.MakeSeed())
	if err != nil {
		return 0, err
	}
	return v.tenants, nil
}

// Restore replaces the cluster's state with the snapshot read from open()
// (called twice: once to check it, once to install it). Only the leader can
// restore; raft ships the snapshot to the followers.
func (s *Store) Restore(open func() (io.ReadCloser, error), size int64) (uint64, error) {
	rc, err := open()
	if err != nil {
		return 0, err
	}
	_, err = CheckSnapshot(rc)
	rc.Close()
	if err != nil {
		return 0, fmt.Errorf("%w: snapshot: %v", ErrInvalid, err)
	}
	if !s.IsLeader() {
		return 0, ErrNotLeader
	}
	rc, err = open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size}
	if err := s.raft.Restore(meta, rc, time.Minute); err != nil {
		return 0, fmt.Errorf("raft restore: %w", err)
	}
	return s.raft.LastIndex(), nil
}
