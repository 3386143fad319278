package cache

// Storing: reading a storable response's body, building the immutable
// object L1 keeps (gzipped once when worth it), and writing it to the
// tiers; invalidating a key in all of them.

import (
	"fmt"
	"io"
	"strings"
)

// readUpTo reads body until EOF or until it holds more than limit bytes.
// With a length hint the buffer is allocated at exactly that size (it is
// what L1 keeps: hint+1, to see EOF, would round 1 KiB up to the 1152-byte
// size class); a last read into a small array confirms the end.
func readUpTo(body io.Reader, limit, hint int64) ([]byte, error) {
	size := int64(512)
	if hint > 0 {
		size = min(hint, limit+1)
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if hint > 0 && int64(len(buf)) == hint {
				var one [1]byte
				n, err := io.ReadFull(body, one[:])
				if n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF) {
					return buf, nil
				}
				if err != nil && n == 0 {
					return nil, err
				}
				buf = append(buf, one[0]) // longer than announced: read on
				hint = 0
				continue
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, nil
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// build makes an object from an origin response and its body.
func (q *request) build(f *fetched, body []byte, fr freshness) (*object, error) {
	c, resp := q.c, f.resp
	h := storedHeader(resp.Header)
	// The host and path may be slices of the request's header block
	// (proxy/h1): copies keep the object from holding that block.
	host, pq := strings.Clone(q.Host), strings.Clone(q.pq)
	o := &object{
		tenant: q.Tenant, host: host, pathQuery: pq,
		tags:   tagsOf(resp.Header, q.Tenant, host),
		stamp:  f.stamp,
		vary:   varyNames(resp.Header),
		status: resp.StatusCode, header: h,
		responseTime: f.respTime, initialAge: initialAge(resp.Header, f.reqTime, f.respTime),
		lifetime: fr.lifetime, swr: fr.swr, sie: fr.sie, mustReval: fr.mustRevalidate, noCache: fr.noCache,
	}
	if len(o.vary) > 0 {
		o.varyVals = varyValues(q.r, o.vary)
	}
	var ident []byte // the identity body, when at hand
	switch ce := h.Get("Content-Encoding"); {
	case strings.EqualFold(ce, "br"), strings.EqualFold(ce, "zstd"):
		// Stored as received for clients that accept it; decoded once
		// for the gzip and identity forms the others get.
		dec, err := c.codecs.decode(ce, body, c.cfg.MaxObjectBytes)
		if err != nil {
			return nil, fmt.Errorf("origin %s body: %w", ce, err)
		}
		if strings.EqualFold(ce, "br") {
			o.br = body
		} else {
			o.zst = body
		}
		o.body, o.identLen = dec, int64(len(dec))
		if compressible(h, len(dec)) {
			if z, err := c.gz.compress(dec); err == nil && len(z) < len(dec)*9/10 {
				o.body, o.gzipped = z, true
				ident = dec
			}
		}
	case strings.EqualFold(ce, "gzip"):
		n, err := c.gz.gzipLen(body)
		if err != nil {
			return nil, fmt.Errorf("origin gzip body: %w", err)
		}
		o.body, o.gzipped, o.identLen = body, true, n
	case compressible(h, len(body)):
		o.body, o.identLen = body, int64(len(body))
		if z, err := c.gz.compress(body); err == nil && len(z) < len(body)*9/10 {
			o.body, o.gzipped = z, true
			ident = body
		}
	default:
		o.body, o.identLen = body, int64(len(body))
	}
	c.gz.withIdentity(o, ident)
	delete(h, "Content-Encoding")
	o.finish()
	return o, nil
}

// store writes o to L1 and queues it for L2 (and L3 when the request
// persists); a varying response also gets a marker under the primary key.
func (q *request) store(o *object) {
	c, base, persist := q.c, q.base, q.Persist
	key := base
	if len(o.vary) > 0 {
		key = varyKey(base, o.varyVals)
		m := &object{
			marker: true, vary: o.vary, tenant: o.tenant, host: o.host, pathQuery: o.pathQuery,
			responseTime: o.responseTime, lifetime: o.usableUntil().Sub(o.responseTime),
		}
		m.finish()
		c.put(base, m, persist)
	}
	c.put(key, o, persist)
	c.queueVariants(key, o)
}

func (c *Cache) put(key string, o *object, persist bool) {
	c.l1.Set(key, o)
	c.stats.tiers[tierL1].stores.Add(1)
	ttl := o.usableUntil().Sub(c.now())
	if ttl <= 0 {
		return
	}
	if c.l2 != nil {
		c.l2.putAsync(key, o, ttl)
	}
	if persist && c.l3 != nil {
		c.l3.putAsync(key, o, ttl)
	}
}

// invalidate removes a primary key from every tier.
func (c *Cache) invalidate(keys ...string) {
	for _, k := range keys {
		c.l1.Invalidate(k)
	}
	if c.l2 != nil {
		c.l2.delAsync(keys)
	}
	if c.l3 != nil {
		c.l3.delAsync(keys)
	}
}
