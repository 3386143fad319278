package certs

import (
	"sync"
	"time"
)

// negCache remembers names that got no certificate (unknown, unlicensed,
// or whose order just failed) for a short TTL, so a client or scanner
// repeating a name costs one map lookup. It holds at most size names.
type negCache struct {
	mu   sync.Mutex
	size int
	ttl  time.Duration
	m    map[string]int64 // name → expiry (unix nanoseconds)
}

func newNegCache(size int, ttl time.Duration) *negCache {
	return &negCache{size: size, ttl: ttl, m: make(map[string]int64)}
}

func (c *negCache) has(name string, now time.Time) bool {
	c.mu.Lock()
	exp, ok := c.m[name]
	if ok && now.UnixNano() >= exp {
		delete(c.m, name)
		ok = false
	}
	c.mu.Unlock()
	return ok
}

func (c *negCache) add(name string, now time.Time) {
	n := now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[name]; !ok && len(c.m) >= c.size {
		// Drop expired names; if none, drop arbitrary ones (map order) so
		// the cache stays bounded under a flood of random names.
		for k, exp := range c.m {
			if n >= exp {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < c.size {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[name] = n + int64(c.ttl)
}

func (c *negCache) remove(name string) {
	c.mu.Lock()
	delete(c.m, name)
	c.mu.Unlock()
}
