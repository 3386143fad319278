// Package proxy is Edge's HTTP data plane: the listeners (Server), the
// request pipeline (Handler) and the pieces they share.
//
// A request goes through Handler.ServeHTTP in this order:
//
//  1. the Host (or HTTP/2 :authority) is normalised by NormalizeHost;
//     over TLS, a Host the connection's certificate does not cover gets
//     421 Misdirected Request (domain fronting, tlsconn.go);
//  2. the tenant is looked up in memory (Routes); unknown domains and
//     suspended or expired licenses get a 403 without any network call;
//  3. the request is cleaned (hop-by-hop headers removed, X-Forwarded-*
//     and Via set, an X-Request-Id kept if well-formed or generated) and,
//     with a Config.Cache, served by the cache (L1/L2/L3,
//     coalescing, revalidation, stale-if-error); a miss, or every request
//     without a cache, goes to the fetch chain: optional Stages (e.g. the
//     transform) wrapping the origin fetch, which rewrites the URL and Host
//     for the tenant's origin and round-trips through the tenant's pooled
//     transport (Upstreams);
//  4. the response streams back through a pooled 32 KB buffer, flushed
//     eagerly for event streams and unknown lengths; 101 Switching
//     Protocols responses are spliced (WebSocket);
//  5. X-Origin-Time, X-Total-Time and Server-Timing are set on every
//     response, errors are mapped to 502/504 (499 in logs for clients that
//     left) in one place, and an access log line and metrics are recorded.
//
// The shape follows net/http/httputil.ReverseProxy: documented hooks in a
// Config, a BufferPool, and one error-to-status mapping (statusForError).
// Sub-packages hold the parts with their own state: upstream (origin
// pools and TLS), dnscache, compress, cache, transform, certs (on-demand
// ACME certificates), accesslog (the buffered access log writer), h1 and
// rawconn (the fast paths below).
//
// Four fast paths stand beside standard net/http behaviour: the plain
// listener's HTTP/1.1 server (proxy/h1), raw socket calls
// (proxy/rawconn), the origin pools' lean HTTP/1.1 client
// (proxy/upstream) and the direct byte relay (direct.go). Each has its
// switch (ServerConfig.StandardPaths, upstream.Config.DisableLeanHTTP1,
// a nil Config.Direct); node turns them all off with one flag,
// --standard-paths. docs/proxy.md names the tests that hold each equal
// to the behaviour it replaces, and what differs.
package proxy
