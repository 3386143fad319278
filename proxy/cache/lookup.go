package cache

// Lookup: finding a request's object through the tiers (L1, then L2, then
// L3 when the request persists), following a Vary marker to the varied
// key, and dropping what expiry or a hard purge killed. What to do with
// the object found is decided in serve.go.

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// lookup finds the object for the request and sets q.key to the key it
// lives under (the flight key for a miss). soft says a soft purge applies.
// A hit-for-miss mark is returned as found and counted as a miss.
func (q *request) lookup() (o *object, tier int, soft bool) {
	c, ctx := q.c, q.r.Context()
	q.key = q.base
	o, tier, soft = c.get(ctx, q.base, q.Persist, q.now)
	if o != nil && o.marker {
		q.key = varyKey(q.base, varyValues(q.r, o.vary))
		o, tier, soft = c.get(ctx, q.key, q.Persist, q.now)
	}
	t := &c.stats.tiers
	if o == nil || o.hitForMiss {
		t[tierL1].misses.Add(1)
		if c.l2 != nil {
			t[tierL2].misses.Add(1)
		}
		if q.Persist && c.l3 != nil {
			t[tierL3].misses.Add(1)
		}
		return o, 0, false
	}
	t[tier].hits.Add(1)
	for i := tierL1; i < tier; i++ {
		if i == tierL1 || i == tierL2 && c.l2 != nil {
			t[i].misses.Add(1)
		}
	}
	return o, tier, soft
}

// get reads one key through the tiers, dropping unusable and hard-purged
// objects, and promotes lower-tier hits into the tiers above.
func (c *Cache) get(ctx context.Context, key string, persist bool, now time.Time) (*object, int, bool) {
	if o, ok := c.l1.GetIfPresent(key); ok {
		if o, soft := c.check(key, o, now); o != nil {
			return o, tierL1, soft
		}
	}
	if c.l2 != nil {
		if o := c.l2.get(ctx, key); o != nil {
			if o, soft := c.check("", o, now); o != nil {
				c.promote(o)
				c.l1.Set(key, o)
				c.queueVariants(key, o)
				return o, tierL2, soft
			}
		}
	}
	if persist && c.l3 != nil {
		if o := c.l3.get(ctx, key); o != nil {
			if o, soft := c.check("", o, now); o != nil {
				c.promote(o)
				c.l1.Set(key, o)
				c.queueVariants(key, o)
				if c.l2 != nil {
					c.l2.putAsync(key, o, o.usableUntil().Sub(c.now()))
				}
				return o, tierL3, soft
			}
		}
	}
	return nil, 0, false
}

// promote prepares an object decoded from L2 or L3 for L1: the identity
// copy of a small gzip body is not stored in the lower tiers.
func (c *Cache) promote(o *object) {
	if o.gzipped && o.ident == nil && !o.marker {
		c.gz.withIdentity(o, nil)
		o.finish()
	}
}

// check applies expiry and purge records to o; key, when set, is its L1
// key, from which a dead object is removed.
func (c *Cache) check(key string, o *object, now time.Time) (*object, bool) {
	if now.After(o.usableUntil()) {
		if key != "" {
			c.l1.Invalidate(key)
		}
		return nil, false
	}
	if o.marker || o.hitForMiss {
		return o, false
	}
	switch c.purges.effect(o) {
	case purgeHard:
		if key != "" {
			c.l1.Invalidate(key)
		}
		return nil, false
	case purgeSoft:
		return o, true
	}
	return o, false
}

// clientNoCache reports whether a request asks not to be answered from
// the cache without revalidation (RFC 9111 sections 5.2.1.1, 5.2.1.4
// and 5.4). Only consulted under Policy.ClientNoCache.
func clientNoCache(r *http.Request) bool {
	if lines := r.Header["Cache-Control"]; len(lines) > 0 {
		cc := parseDirectives(lines)
		return cc.noCache || cc.maxAge == 0
	}
	for _, v := range r.Header["Pragma"] {
		if strings.Contains(strings.ToLower(v), "no-cache") {
			return true
		}
	}
	return false
}
