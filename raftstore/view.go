package raftstore

import (
	"hash/maphash"
	"sort"
	"strings"
)

// shardCount splits the host table so that an apply copies one small shard
// instead of the whole table: with 100k tenants (200k hosts) a change copies ~50
// entries, not 200k.
const shardCount = 4096

// table is an immutable, sharded map from a host name to its tenant.
// Writers build a new table through a tableTxn; readers never lock.
type table struct {
	seed   maphash.Seed
	shards [shardCount]map[string]*Tenant
}

func newTable(seed maphash.Seed) *table {
	t := &table{seed: seed}
	for i := range t.shards {
		t.shards[i] = map[string]*Tenant{}
	}
	return t
}

func (t *table) shard(key string) int {
	return int(maphash.String(t.seed, key) & (shardCount - 1))
}

func (t *table) get(key string) *Tenant {
	return t.shards[t.shard(key)][key]
}

// tableTxn copies a shard the first time the transaction writes to it.
type tableTxn struct {
	t     *table
	dirty [shardCount]bool
}

func (x *tableTxn) set(key string, v *Tenant) {
	i := x.t.shard(key)
	x.own(i)
	x.t.shards[i][key] = v
}

func (x *tableTxn) del(key string) {
	i := x.t.shard(key)
	if _, ok := x.t.shards[i][key]; !ok {
		return
	}
	x.own(i)
	delete(x.t.shards[i], key)
}

func (x *tableTxn) own(i int) {
	if x.dirty[i] {
		return
	}
	old := x.t.shards[i]
	m := make(map[string]*Tenant, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	x.t.shards[i] = m
	x.dirty[i] = true
}

// Member is a node registered in the cluster with its addresses.
type Member struct {
	ID        string `json:"id"`
	RaftAddr  string `json:"raft_addr"`
	AdminAddr string `json:"admin_addr"`
}

// View is an immutable snapshot of the replicated state at one raft index.
// All methods are safe for concurrent use; a View never changes after it is
// published.
type View struct {
	index   uint64
	hosts   *table // every domain and alias → its tenant
	tenants int
	members map[string]Member
}

// Index is the raft index of the last command applied in this view.
func (v *View) Index() uint64 { return v.index }

// Lookup returns the tenant serving host, or nil. host must already be
// normalised (lowercase, no port, no trailing dot). It does not lock or
// allocate.
func (v *View) Lookup(host string) *Tenant {
	return v.hosts.get(host)
}

// Tenant returns the tenant whose primary domain or alias is name.
func (v *View) Tenant(name string) *Tenant { return v.hosts.get(name) }

// Len is the number of tenants.
func (v *View) Len() int { return v.tenants }

// Tenants returns up to limit tenants (0 = all) ordered by domain, starting
// after the domain `after`.
func (v *View) Tenants(after string, limit int) []*Tenant {
	out := make([]*Tenant, 0, v.tenants)
	for i := range v.hosts.shards {
		for k, t := range v.hosts.shards[i] {
			if k == t.Domain && k > after {
				out = append(out, t)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Members returns the registered members ordered by id.
func (v *View) Members() []Member {
	out := make([]Member, 0, len(v.members))
	for _, m := range v.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].ID, out[j].ID) < 0 })
	return out
}

// Member returns the member registered under id.
func (v *View) Member(id string) (Member, bool) {
	m, ok := v.members[id]
	return m, ok
}
