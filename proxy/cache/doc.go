// Package cache is Edge's HTTP cache: the layer the proxy wraps around its
// origin fetch.
//
// A request is looked up in L1 (in-process, W-TinyLFU via otter, bounded in
// bytes), then in the optional shared L2 (Redis) and, for requests that ask
// for it, the optional persistent L3 (S3). A miss goes to the origin once
// per key however many clients wait (request coalescing, a fill), and a
// storable response is kept in L1 at once and written to L2/L3 off the
// request path.
//
// Serve sends each request one way, each in its own file: a hit or stale
// hit (lookup.go, write.go, revalidate.go), a fill (fill.go, store.go), a
// pass for a key under a hit-for-miss mark, whose last response could not
// be stored (hitformiss.go; the proxy may answer it by direct relay,
// direct.go), or a bypass for a request the cache does not handle
// (bypass.go). The request's state is one value on Serve's stack whose
// methods these are (serve.go). docs/cache.md, "Vocabulary", defines the
// terms.
//
// Semantics follow RFC 9111 for a shared cache (Cache-Control, Expires,
// Age, validators, Vary, stale-while-revalidate, stale-if-error) with a
// per-tenant Policy on top, and every response carries an RFC 9211
// Cache-Status header. Bodies worth compressing are stored gzipped once,
// with br and zstd forms derived once in the background, and each client
// gets the best stored form its Accept-Encoding allows, as stored.
//
// Purges are records applied in Raft order (ApplyPurge); objects carry the
// purge index current when they were fetched, so a purge needs no scan and
// no key rewrite. See docs/cache.md for the design and the numbers.
package cache
