package raftstore

import (
	"encoding/json"
	"fmt"
)

// Appliers: each takes the decoded envelope and changes the transaction.
// They must be deterministic (no clocks, no randomness, no I/O): every
// replica runs them on the same entries and must reach the same state.

func decodePayload(cmd *Command, index uint64, v any) {
	if err := json.Unmarshal(cmd.Payload, v); err != nil {
		panic(fmt.Sprintf("raftstore: log entry %d (%s): decode payload: %v", index, cmd.Type, err))
	}
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
	var t Tenant
	decodePayload(cmd, index, &t)
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
	decodePayload(cmd, index, &u)
	cur := tx.hosts.t.get(u.Domain)
	if cur == nil || cur.Domain != u.Domain {
		return &Result{Err: opErr(kindNotFound, "tenant %s not found", u.Domain)}
	}
	if u.ExpectIndex != 0 && u.ExpectIndex != cur.Index {
		return &Result{Err: opErr(kindStale, "tenant %s is at index %d, not %d", u.Domain, cur.Index, u.ExpectIndex)}
	}
	n := ApplyPatch(cur, &u.Patch)
	if err := ValidateTenant(n); err != nil {
		return &Result{Err: opErr(kindInvalid, "%v", err)}
	}
	if err := checkOwnership(tx, n.Domain, n.Aliases); err != nil {
		return &Result{Err: err}
	}
	n.UpdatedAt, n.Index = cmd.Time, index
	if !SameOrigin(&n.Origin, &cur.Origin) {
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
	decodePayload(cmd, index, &ref)
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
	decodePayload(cmd, index, &m)
	tx.ownMembers()[m.ID] = m
	return &Result{}
}

func applyMemberRemove(tx *txn, cmd *Command, index uint64) *Result {
	var ref MemberRef
	decodePayload(cmd, index, &ref)
	delete(tx.ownMembers(), ref.ID)
	return &Result{}
}

// maxPurgeRecords bounds the purge history kept in the state. Caches apply
// records as they arrive; the history only lets a node that restarts or
// lags replay the purges it missed.
const maxPurgeRecords = 1024

func applyPurge(tx *txn, cmd *Command, index uint64) *Result {
	var p Purge
	decodePayload(cmd, index, &p)
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
	decodePayload(cmd, index, &p)
	if cur, ok := tx.kv.t.lookup(p.Key); ok && cur.Term > p.Term {
		return &Result{Err: opErr(kindFenced, "key %s was written in term %d, proposal is from term %d", p.Key, cur.Term, p.Term)}
	}
	e := &KV{Key: p.Key, Value: p.Value, Term: p.Term, Index: index}
	tx.kv.set(p.Key, e)
	return &Result{KV: e}
}

func applyKVDelete(tx *txn, cmd *Command, index uint64) *Result {
	var p KVDelete
	decodePayload(cmd, index, &p)
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
