package proxy

import (
	"fmt"
	"hash/maphash"
	"net/http"
	"net/url"
	"sync"

	"github.com/edgeproxy/edge/proxy/upstream"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// PoolUpstreams adapts *upstream.Pools to Upstreams. It converts a
// tenant's Origin into an upstream.Target (parsed URL, PEM bytes) once per
// tenant version, keyed by domain and checked by pointer: tenants are
// immutable, so a changed tenant is a new pointer and gets a new Target.
// The usual call is a sharded read-locked map lookup plus Pools.Get,
// without allocation.
type PoolUpstreams struct {
	pools  *upstream.Pools
	seed   maphash.Seed
	shards [64]targetShard
}

type targetShard struct {
	mu sync.RWMutex
	m  map[string]*targetEntry
}

type targetEntry struct {
	tenant *tenantcfg.Tenant
	target upstream.Target
	// rt is the tenant's pool, bound once per tenant version: a change of
	// origin settings is a new *Tenant, hence a new entry and a rebind.
	rt  http.RoundTripper
	err error
}

var _ Upstreams = (*PoolUpstreams)(nil)

// NewPoolUpstreams wraps p.
func NewPoolUpstreams(p *upstream.Pools) *PoolUpstreams {
	u := &PoolUpstreams{pools: p, seed: maphash.MakeSeed()}
	for i := range u.shards {
		u.shards[i].m = map[string]*targetEntry{}
	}
	return u
}

// RoundTripper returns the pool for t's origin and the origin URL.
func (u *PoolUpstreams) RoundTripper(t *tenantcfg.Tenant) (http.RoundTripper, *url.URL, error) {
	s := &u.shards[maphash.String(u.seed, t.Domain)&63]
	s.mu.RLock()
	e := s.m[t.Domain]
	s.mu.RUnlock()
	if e == nil || e.tenant != t {
		e = newTargetEntry(t)
		if e.err == nil {
			rt, err := u.pools.Get(t.Domain, e.target)
			if err != nil {
				return nil, nil, err // not remembered: the pools may recover
			}
			e.rt = rt
		}
		s.mu.Lock()
		s.m[t.Domain] = e
		s.mu.Unlock()
	}
	if e.err != nil {
		return nil, nil, e.err
	}
	return e.rt, e.target.URL, nil
}

// Forget drops the cached Target of a deleted tenant and its pool binding.
func (u *PoolUpstreams) Forget(domain string) {
	s := &u.shards[maphash.String(u.seed, domain)&63]
	s.mu.Lock()
	delete(s.m, domain)
	s.mu.Unlock()
	u.pools.Remove(domain)
}

// Prune brings the pool bindings up to date with routes, so that no pool
// stays bound to an origin no tenant sends to any more:
//
//   - a tenant routes no longer serves under its own domain (removed, or
//     the domain now belongs to another tenant) is forgotten: its Target
//     and pool binding go;
//   - a tenant whose version in routes changed is bound again at once,
//     as its next request would do: after an origin change it moves to
//     the new origin's pool.
//
// A pool no tenant uses any more is retired: its idle connections close
// now, busy ones when their response is done, so requests in flight on it
// finish (Pools logs each move). Prune returns how many removed tenants
// it forgot. The node calls it after applied changes; it costs a lookup
// per tenant bound since the last prune, and the request path nothing.
func (u *PoolUpstreams) Prune(routes Routes) int {
	var gone []string
	var changed []*tenantcfg.Tenant
	for i := range u.shards {
		s := &u.shards[i]
		s.mu.RLock()
		for d, e := range s.m {
			switch t := routes.Lookup(d); {
			case t == nil || t.Domain != d:
				gone = append(gone, d)
			case t != e.tenant:
				changed = append(changed, t)
			}
		}
		s.mu.RUnlock()
	}
	for _, d := range gone {
		u.Forget(d)
	}
	for _, t := range changed {
		if _, _, err := u.RoundTripper(t); err != nil {
			// An origin that cannot be used (bad URL or PEM): no pool
			// of the old origin stays bound for it either.
			u.Forget(t.Domain)
		}
	}
	return len(gone)
}

func newTargetEntry(t *tenantcfg.Tenant) *targetEntry {
	e := &targetEntry{tenant: t}
	target, err := url.Parse(t.Origin.URL)
	if err != nil {
		e.err = fmt.Errorf("tenant %s: origin URL: %w", t.Domain, err)
		return e
	}
	if target.Host == "" || (target.Scheme != "http" && target.Scheme != "https") {
		e.err = fmt.Errorf("tenant %s: origin URL %q needs http(s)://host", t.Domain, t.Origin.URL)
		return e
	}
	o := t.Origin.TLS
	e.target = upstream.Target{URL: target, TLS: upstream.TLS{
		ServerName:         o.ServerName,
		CAPEM:              bytesOrNil(o.CAPEM),
		ClientCertPEM:      bytesOrNil(o.ClientCertPEM),
		ClientKeyPEM:       bytesOrNil(o.ClientKeyPEM),
		InsecureSkipVerify: o.InsecureSkipVerify,
	}}
	return e
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}
