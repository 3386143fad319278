package cache

// Revalidation: a stale object served at once while one background fetch
// refreshes it (stale-while-revalidate, soft purge), a 304 merged into the
// stored object, and a stale object standing in for a failed origin
// (stale-if-error). The fetch itself is fill.go's fetchOrigin with the
// stale object's validators.

import (
	"context"
	"io"
)

// revalidateAsync refreshes a stale object in the background, at most once
// per key at a time. The goroutine gets its own copy of the request state,
// with a clone of the client's request made before Serve returns, and no
// writer or BeforeWrite: it writes nothing.
func (q *request) revalidateAsync(stale *object) {
	c := q.c
	c.flightMu.Lock()
	select {
	case <-c.closed:
		c.flightMu.Unlock()
		return
	default:
	}
	if _, busy := c.flights[q.key]; busy {
		c.flightMu.Unlock()
		return
	}
	f := &flight{done: make(chan struct{})}
	c.flights[q.key] = f
	c.bg.Add(1)
	c.flightMu.Unlock()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(q.r.Context()), c.cfg.RevalidateTimeout)
	bg := *q
	bg.r, bg.w, bg.BeforeWrite = q.r.Clone(ctx), nil, nil
	go func() {
		defer c.bg.Done()
		defer cancel()
		out := bg.fetchOrigin(ctx, stale)
		c.land(bg.key, f, out)
		if out.resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(out.resp.Body, 1<<20))
			out.resp.Body.Close()
		}
	}()
}

// staleIfError reports whether o may stand in for a failed origin.
func (c *Cache) staleIfError(o *object) bool {
	if o.mustReval {
		return false
	}
	return o.age(c.now())-o.lifetime < o.sie
}

// refresh applies a 304's headers to a stored object (RFC 9111 section
// 4.3.4) and recomputes its freshness; nil means it is no longer storable.
// A 304 that answered a request with Authorization must leave the merged
// response shareable by section 3.5.
func (q *request) refresh(old *object, f *fetched) *object {
	h304 := f.resp.Header
	upd := storedHeader(h304)
	delete(upd, "Content-Encoding")
	delete(upd, "Content-Type")
	h := old.header.Clone()
	for k, v := range upd {
		h[k] = v
	}
	fr := decide(old.status, h, q.Policy, q.authorized(), f.respTime)
	if !fr.storable {
		return nil
	}
	o := *old
	o.header = h
	o.stamp = f.stamp
	o.responseTime = f.respTime
	o.initialAge = initialAge(h304, f.reqTime, f.respTime)
	o.lifetime, o.swr, o.sie, o.mustReval, o.noCache = fr.lifetime, fr.swr, fr.sie, fr.mustRevalidate, fr.noCache
	o.finish()
	return &o
}
