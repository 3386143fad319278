package raftstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// Appliers: each takes the decoded envelope and changes the transaction.
// They must be deterministic (no clocks, no randomness, no I/O): every
// replica runs them on the same entries and must reach the same state.

// decodePayload parses the command's payload into v. An applier answers a
// failure with undecodable(err) before changing anything; applyOne turns
// that into a rejected no-op (fsm.reject).
func decodePayload(cmd *Command, v any) error {
	if p := bytes.TrimSpace(cmd.Payload); len(p) == 0 || bytes.Equal(p, []byte("null")) {
		return errors.New("decode payload: no payload")
	}
	if err := json.Unmarshal(cmd.Payload, v); err != nil {
		return fmt.Errorf("decode payload: %w", err)
	}
	return nil
}

// undecodable is an applier's result for a payload it cannot decode.
func undecodable(err error) *Result {
	return &Result{Err: &Error{Kind: kindRejected, Message: err.Error()}}
}

// checkOwnership returns an error when one of hosts already belongs to a
// tenant other than self.
func checkOwnership(tx *txn, self string, hosts []string) *Error {
	for _, h := range hosts {
		if owner := tx.hosts.t.get(h); owner != nil && owner.Domain != self {
			if owner.Domain == h {
				return opErr(kindConflict, "domain %s is already a tenant", h)
			}
			return opErr(kindConflict, "domain %s is an alias of tenant %s", h, owner.Domain)
		}
	}
	return nil
}

func applyTenantAdd(tx *txn, cmd *Command, index uint64) *Result {
	var t tenantcfg.Tenant
	if err := decodePayload(cmd, &t); err != nil {
		return undecodable(err)
	}
	if cur := tx.hosts.t.get(t.Domain); cur != nil {
		if cur.Domain == t.Domain {
			return &Result{Err: opErr(kindExists, "tenant %s already exists", t.Domain)}
		}
		return &Result{Err: opErr(kindConflict, "domain %s is an alias of tenant %s", t.Domain, cur.Domain)}
	}
	if err := checkOwnership(tx, t.Domain, t.Aliases); err != nil {
		return &Result{Err: err}
	}
	t.CreatedAt, t.UpdatedAt, t.Index, t.OriginIndex = cmd.Time, cmd.Time, index, index
	for _, h := range t.Hosts() {
		tx.hosts.set(h, &t)
	}
	tx.v.tenants++
	return &Result{Tenant: &t}
}

func applyTenantUpdate(tx *txn, cmd *Command, index uint64) *Result {
	var u TenantUpdate
	if err := decodePayload(cmd, &u); err != nil {
		return undecodable(err)
	}
	cur := tx.hosts.t.get(u.Domain)
	if cur == nil || cur.Domain != u.Domain {
		return &Result{Err: opErr(kindNotFound, "tenant %s not found", u.Domain)}
	}
	if u.ExpectIndex != 0 && u.ExpectIndex != cur.Index {
		return &Result{Err: opErr(kindStale, "tenant %s is at index %d, not %d", u.Domain, cur.Index, u.ExpectIndex)}
	}
	n := tenantcfg.ApplyPatch(cur, &u.Patch)
	if err := tenantcfg.Validate(n); err != nil {
		return &Result{Err: opErr(kindInvalid, "%v", err)}
	}
	if err := checkOwnership(tx, n.Domain, n.Aliases); err != nil {
		return &Result{Err: err}
	}
	n.UpdatedAt, n.Index = cmd.Time, index
	if !tenantcfg.SameOrigin(&n.Origin, &cur.Origin) {
		n.OriginIndex = index
	}
	for _, h := range cur.Aliases {
		tx.hosts.del(h)
	}
	for _, h := range n.Hosts() {
		tx.hosts.set(h, n)
	}
	return &Result{Tenant: n}
}

func applyTenantRemove(tx *txn, cmd *Command, index uint64) *Result {
	var ref DomainRef
	if err := decodePayload(cmd, &ref); err != nil {
		return undecodable(err)
	}
	cur := tx.hosts.t.get(ref.Domain)
	if cur == nil || cur.Domain != ref.Domain {
		return &Result{Err: opErr(kindNotFound, "tenant %s not found", ref.Domain)}
	}
	for _, h := range cur.Hosts() {
		tx.hosts.del(h)
	}
	tx.v.tenants--
	return &Result{Tenant: cur}
}

func applyMemberPut(tx *txn, cmd *Command, index uint64) *Result {
	var m Member
	if err := decodePayload(cmd, &m); err != nil {
		return undecodable(err)
	}
	tx.ownMembers()[m.ID] = m
	return &Result{}
}

func applyMemberRemove(tx *txn, cmd *Command, index uint64) *Result {
	var ref MemberRef
	if err := decodePayload(cmd, &ref); err != nil {
		return undecodable(err)
	}
	delete(tx.ownMembers(), ref.ID)
	return &Result{}
}

// maxPurgeRecords bounds the purge history kept in the state. Caches apply
// records as they arrive; the history only lets a node that restarts or
// lags replay the purges it missed.
const maxPurgeRecords = 1024

func applyPurge(tx *txn, cmd *Command, index uint64) *Result {
	var p Purge
	if err := decodePayload(cmd, &p); err != nil {
		return undecodable(err)
	}
	if !tx.purges {
		tx.v.purges = append([]PurgeRecord(nil), tx.v.purges...)
		tx.purges = true
	}
	tx.v.purges = append(tx.v.purges, PurgeRecord{Purge: p, Index: index, Time: cmd.Time})
	if n := len(tx.v.purges); n > maxPurgeRecords {
		tx.v.purges = tx.v.purges[n-maxPurgeRecords:]
	}
	return &Result{}
}

func applyKVPut(tx *txn, cmd *Command, index uint64) *Result {
	var p KVPut
	if err := decodePayload(cmd, &p); err != nil {
		return undecodable(err)
	}
	if cur, ok := tx.kv.t.lookup(p.Key); ok && cur.Term > p.Term {
		return &Result{Err: opErr(kindFenced, "key %s was written in term %d, proposal is from term %d", p.Key, cur.Term, p.Term)}
	}
	e := &KV{Key: p.Key, Value: p.Value, Term: p.Term, Index: index}
	tx.kv.set(p.Key, e)
	return &Result{KV: e}
}

func applyKVDelete(tx *txn, cmd *Command, index uint64) *Result {
	var p KVDelete
	if err := decodePayload(cmd, &p); err != nil {
		return undecodable(err)
	}
	cur, ok := tx.kv.t.lookup(p.Key)
	if !ok {
		return &Result{Err: opErr(kindNotFound, "key %s not found", p.Key)}
	}
	if cur.Term > p.Term {
		return &Result{Err: opErr(kindFenced, "key %s was written in term %d, proposal is from term %d", p.Key, cur.Term, p.Term)}
	}
	tx.kv.del(p.Key)
	return &Result{KV: cur}
}
