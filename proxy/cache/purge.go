package cache

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Purge is one purge command, applied on every node in Raft order.
//
// A purge does not scan the cache. It becomes a record; every stored
// object carries the purge index that was current when its fetch began, and
// a lookup that finds a newer record matching the object treats it as a
// miss (hard purge) or as stale, to be revalidated (soft purge). Exact URLs
// are also deleted eagerly from the tiers where that is cheap.
type Purge struct {
	ID     string // operator-visible id, echoed in logs
	Index  uint64 // Raft log index; 0 means "next after the latest applied"
	Tenant string // tenant the purge is limited to; empty means every tenant
	// Generation is the tenant's Request.Generation when the purge was
	// applied; it is used only to delete exact URLs eagerly (the record
	// decides whatever it is).
	Generation uint64

	// Selectors; an object matching any of them is purged.
	URLs     []string // exact URLs: "https://host/path?q", "host/path?q" or "/path?q" (any host of the tenant)
	Prefixes []string // URL prefixes in the same forms
	Tags     []string // surrogate keys (Surrogate-Key / Cache-Tag), or a host or tenant name
	All      bool     // everything (of the tenant, or of every tenant)

	Soft bool // mark stale instead of removing
}

// Selector errors, reported by Purge.Validate.
var (
	ErrNoSelector  = errors.New("purge needs at least one selector: a URL, a prefix, a tag or all")
	ErrBadSelector = errors.New("bad purge selector")
)

// Validate checks the selectors; raftstore calls it before proposing so a
// bad purge never enters the log.
func (p Purge) Validate() error {
	if !p.All && len(p.URLs) == 0 && len(p.Prefixes) == 0 && len(p.Tags) == 0 {
		return ErrNoSelector
	}
	for _, u := range p.URLs {
		if _, err := parseTarget(u); err != nil {
			return fmt.Errorf("url %q: %w", u, err)
		}
	}
	for _, u := range p.Prefixes {
		if _, err := parseTarget(u); err != nil {
			return fmt.Errorf("prefix %q: %w", u, err)
		}
	}
	for _, t := range p.Tags {
		if t == "" || strings.ContainsAny(t, " ,\t\r\n") {
			return fmt.Errorf("tag %q: %w: tags are single tokens", t, ErrBadSelector)
		}
	}
	return nil
}

// target is a parsed URL selector; an empty host matches every host.
type target struct{ host, pathQuery string }

func parseTarget(s string) (target, error) {
	if s == "" {
		return target{}, fmt.Errorf("%w: empty", ErrBadSelector)
	}
	if strings.HasPrefix(s, "/") {
		u, err := url.ParseRequestURI(s)
		if err != nil {
			return target{}, fmt.Errorf("%w: %v", ErrBadSelector, err)
		}
		return target{pathQuery: u.RequestURI()}, nil
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return target{}, fmt.Errorf("%w: %v", ErrBadSelector, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return target{}, fmt.Errorf("%w: scheme %q is not http or https", ErrBadSelector, u.Scheme)
	}
	if u.Host == "" {
		return target{}, fmt.Errorf("%w: no host", ErrBadSelector)
	}
	return target{host: strings.ToLower(u.Host), pathQuery: u.RequestURI()}, nil
}

// record is a compiled purge.
type record struct {
	index    uint64
	all      bool
	soft     bool
	urls     []target
	prefixes []target
	tags     []string
}

func compile(p Purge) *record {
	r := &record{index: p.Index, all: p.All, soft: p.Soft, tags: slices.Clone(p.Tags)}
	for _, u := range p.URLs {
		if t, err := parseTarget(u); err == nil {
			r.urls = append(r.urls, t)
		}
	}
	for _, u := range p.Prefixes {
		if t, err := parseTarget(u); err == nil {
			r.prefixes = append(r.prefixes, t)
		}
	}
	return r
}

func (r *record) matches(o *object) bool {
	if r.all {
		return true
	}
	for _, t := range r.urls {
		if t.pathQuery == o.pathQuery && (t.host == "" || t.host == o.host) {
			return true
		}
	}
	for _, t := range r.prefixes {
		if strings.HasPrefix(o.pathQuery, t.pathQuery) && (t.host == "" || t.host == o.host) {
			return true
		}
	}
	for _, tag := range r.tags {
		if _, ok := slices.BinarySearch(o.tags, tag); ok {
			return true
		}
	}
	return false
}

// purgeEffect is what the records say about an object.
type purgeEffect uint8

const (
	purgeNone purgeEffect = iota
	purgeSoft
	purgeHard
)

// purges holds the records: one immutable, index-ordered list per tenant
// plus one for purges of every tenant. Readers load lists without locks;
// appliers (the Raft apply loop) serialise on mu.
type purges struct {
	mu      sync.Mutex
	latest  atomic.Uint64
	global  atomic.Pointer[[]*record]
	tenants sync.Map // tenant → *atomic.Pointer[[]*record]
	limit   int
}

// effect checks o against every record newer than its stamp.
func (ps *purges) effect(o *object) purgeEffect {
	if o.stamp >= ps.latest.Load() {
		return purgeNone
	}
	eff := scan(ps.global.Load(), o)
	if eff == purgeHard {
		return eff
	}
	if v, ok := ps.tenants.Load(o.tenant); ok {
		eff = max(eff, scan(v.(*atomic.Pointer[[]*record]).Load(), o))
	}
	return eff
}

func scan(list *[]*record, o *object) purgeEffect {
	if list == nil {
		return purgeNone
	}
	eff := purgeNone
	l := *list
	for i := len(l) - 1; i >= 0 && l[i].index > o.stamp; i-- {
		if l[i].matches(o) {
			if !l[i].soft {
				return purgeHard
			}
			eff = purgeSoft
		}
	}
	return eff
}

// apply adds p; it returns false when p is not newer than the latest
// applied purge (a replay), which is then ignored.
func (ps *purges) apply(p Purge) (Purge, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	latest := ps.latest.Load()
	if p.Index == 0 {
		p.Index = latest + 1
	}
	if p.Index <= latest {
		return p, false
	}
	ptr := &ps.global
	if p.Tenant != "" {
		v, _ := ps.tenants.LoadOrStore(p.Tenant, &atomic.Pointer[[]*record]{})
		ptr = v.(*atomic.Pointer[[]*record])
	}
	var old []*record
	if l := ptr.Load(); l != nil {
		old = *l
	}
	next := compact(old, compile(p), ps.limit)
	ptr.Store(&next)
	// Publish the index last: a reader that sees the new index also sees
	// the record, so an object stamped with it is never wrongly purged.
	ps.latest.Store(p.Index)
	return p, true
}

// compact appends rec to list (a fresh slice) and keeps it bounded:
// a hard purge of everything supersedes every older record, a soft one
// supersedes older soft records, and past limit the oldest half collapses
// into one purge of everything. Over-purging is safe; under-purging is not.
func compact(list []*record, rec *record, limit int) []*record {
	out := make([]*record, 0, len(list)+1)
	if rec.all {
		if !rec.soft {
			return append(out, rec)
		}
		for _, r := range list {
			if !r.soft {
				out = append(out, r)
			}
		}
		return append(out, rec)
	}
	out = append(append(out, list...), rec)
	if limit > 0 && len(out) > limit {
		half := len(out) / 2
		merged := &record{all: true, soft: true, index: out[half-1].index}
		for _, r := range out[:half] {
			merged.soft = merged.soft && r.soft
		}
		out = append([]*record{merged}, out[half:]...)
	}
	return out
}

// ApplyPurge applies p on this node. It is called from the Raft apply loop
// in log order; a purge whose Index is not newer than the latest applied
// one is a replay and is ignored. A purge that fails Validate is rejected
// (raftstore validates before proposing, so this does not happen in a
// healthy cluster).
func (c *Cache) ApplyPurge(p Purge) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("purge %s: %w", p.ID, err)
	}
	p, ok := c.purges.apply(p)
	if !ok {
		return nil
	}
	c.stats.purges.Add(1)
	c.log.Info("purge applied", "id", p.ID, "index", p.Index, "tenant", p.Tenant,
		"urls", len(p.URLs), "prefixes", len(p.Prefixes), "tags", len(p.Tags), "all", p.All, "soft", p.Soft)
	if p.Soft {
		return nil
	}
	if p.All && p.Tenant == "" {
		c.l1.InvalidateAll() // the records already make everything a miss; free the memory
		return nil
	}
	// Exact URLs with a host: delete their primary keys eagerly, in every tier.
	if p.Tenant != "" {
		var keys []string
		for _, u := range p.URLs {
			t, err := parseTarget(u)
			if err != nil || t.host == "" {
				continue
			}
			for _, scheme := range []string{"http", "https"} {
				keys = append(keys, cacheKey(p.Tenant, p.Generation, scheme, t.host, t.pathQuery, ""))
			}
		}
		if len(keys) > 0 {
			c.invalidate(keys...)
		}
	}
	return nil
}

// PurgeIndex is the index of the latest purge applied on this node: what a
// node reports so `edgectl cache purge` can wait for every node.
func (c *Cache) PurgeIndex() uint64 { return c.purges.latest.Load() }

// Match counts the objects in this node's L1 that p would purge (a dry
// run). It walks L1, so it costs O(entries); L2 and L3 are not counted.
func (c *Cache) Match(p Purge) (int, error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	rec := compile(p)
	n := 0
	for _, o := range c.l1.All() {
		if o.marker || o.hitForMiss || p.Tenant != "" && o.tenant != p.Tenant {
			continue
		}
		if c.purges.effect(o) == purgeHard {
			continue
		}
		if rec.matches(o) {
			n++
		}
	}
	return n, nil
}
