package raftstore

import (
	"hash/maphash"
	"sort"
	"strings"
	"time"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// shardCount splits the host table so that an apply copies one small shard
// instead of the whole table: with 100k tenants (200k hosts) a change copies ~50
// entries, not 200k.
const shardCount = 4096

// table is an immutable, sharded map. Writers build a new table through a
// tableTxn; readers never lock.
type table[V any] struct {
	seed   maphash.Seed
	shards [shardCount]map[string]V
}

func newTable[V any](seed maphash.Seed) *table[V] {
	t := &table[V]{seed: seed}
	for i := range t.shards {
		t.shards[i] = map[string]V{}
	}
	return t
}

func (t *table[V]) shard(key string) int {
	return int(maphash.String(t.seed, key) & (shardCount - 1))
}

func (t *table[V]) get(key string) V {
	return t.shards[t.shard(key)][key]
}

func (t *table[V]) lookup(key string) (V, bool) {
	v, ok := t.shards[t.shard(key)][key]
	return v, ok
}

// tableTxn copies a shard the first time the transaction writes to it.
type tableTxn[V any] struct {
	t     *table[V]
	dirty [shardCount]bool
}

// begin starts a transaction on a copy of t's shard array.
func (t *table[V]) begin() tableTxn[V] {
	nt := *t
	return tableTxn[V]{t: &nt}
}

func (x *tableTxn[V]) set(key string, v V) {
	i := x.t.shard(key)
	x.own(i)
	x.t.shards[i][key] = v
}

func (x *tableTxn[V]) del(key string) {
	i := x.t.shard(key)
	if _, ok := x.t.shards[i][key]; !ok {
		return
	}
	x.own(i)
	delete(x.t.shards[i], key)
}

func (x *tableTxn[V]) own(i int) {
	if x.dirty[i] {
		return
	}
	old := x.t.shards[i]
	m := make(map[string]V, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	x.t.shards[i] = m
	x.dirty[i] = true
}

// Member is a node registered in the cluster with its addresses and the
// protocol level its build runs.
type Member struct {
	ID        string `json:"id"`
	RaftAddr  string `json:"raft_addr"`
	AdminAddr string `json:"admin_addr"`
	// Protocol is the highest command protocol level the node applies;
	// 0 (a record written before levels existed) means BaseProtocol.
	Protocol int `json:"protocol,omitempty"`
}

// ProtocolLevel is the level the member runs, BaseProtocol for a record
// without one.
func (m Member) ProtocolLevel() int {
	if m.Protocol == 0 {
		return BaseProtocol
	}
	return m.Protocol
}

// View is an immutable snapshot of the replicated state at one raft index.
// All methods are safe for concurrent use; a View never changes after it is
// published.
type View struct {
	index   uint64
	hosts   *table[*tenantcfg.Tenant] // every domain and alias → its tenant
	tenants int
	members map[string]Member
	kv      *table[*KV]
	purges  []PurgeRecord  // oldest first, bounded by maxPurgeRecords
	history []HistoryEntry // oldest first, bounded by maxHistory
}

// HistoryEntry records one change for `edgectl history`.
type HistoryEntry struct {
	Index  uint64    `json:"index"`
	Time   time.Time `json:"time"`
	Op     string    `json:"op"`
	Domain string    `json:"domain,omitempty"`
	Actor  string    `json:"actor,omitempty"`
	Error  string    `json:"error,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// History returns up to limit recent changes (newest first), optionally
// only those of one tenant.
func (v *View) History(domain string, limit int) []HistoryEntry {
	var out []HistoryEntry
	for i := len(v.history) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		if domain == "" || v.history[i].Domain == domain {
			out = append(out, v.history[i])
		}
	}
	return out
}

// Index is the raft index of the last command applied in this view.
func (v *View) Index() uint64 { return v.index }

// Lookup returns the tenant serving host, or nil. host must already be
// normalised (lowercase, no port, no trailing dot). It does not lock or
// allocate.
func (v *View) Lookup(host string) *tenantcfg.Tenant {
	return v.hosts.get(host)
}

// tenantcfg.Tenant returns the tenant whose primary domain or alias is name.
func (v *View) Tenant(name string) *tenantcfg.Tenant { return v.hosts.get(name) }

// Len is the number of tenants.
func (v *View) Len() int { return v.tenants }

// Tenants returns up to limit tenants (0 = all) ordered by domain, starting
// after the domain `after`.
func (v *View) Tenants(after string, limit int) []*tenantcfg.Tenant {
	out := make([]*tenantcfg.Tenant, 0, v.tenants)
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

// KV is one entry of the replicated key/value space used by subsystems
// that need small opaque records on every node (certificates, ACME
// account and challenge data). Term fences writes: a value written in a
// later raft term is never overwritten by a proposal from an earlier term,
// so a deposed leader finishing slow work cannot clobber newer state.
type KV struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
	Term  uint64 `json:"term"`
	Index uint64 `json:"index"`
}

// Get returns the value stored under key.
func (v *View) Get(key string) (*KV, bool) { return v.kv.lookup(key) }

// Keys returns the keys that start with prefix, sorted.
func (v *View) Keys(prefix string) []string {
	var out []string
	for i := range v.kv.shards {
		for k := range v.kv.shards[i] {
			if strings.HasPrefix(k, prefix) {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// PurgeRecord is a cache purge as replicated: every node applies it to its
// own cache in log order.
type PurgeRecord struct {
	Purge
	Index uint64    `json:"index"`
	Time  time.Time `json:"time"`
}

// Purges returns the purge records applied after index, oldest first.
func (v *View) Purges(after uint64) []PurgeRecord {
	i := sort.Search(len(v.purges), func(i int) bool { return v.purges[i].Index > after })
	return v.purges[i:]
}
