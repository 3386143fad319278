// Package upstream holds the proxy's connections to origins: one pool (an
// *http.Transport, plus a lean HTTP/1.1 client) per origin
// and TLS settings, shared by every tenant that uses the same origin with
// the same settings.
//
// # Pool key
//
// A pool is keyed by Target.Fingerprint: the origin's scheme and host:port
// plus a SHA-256 of its TLS settings (server name, CA bundle, client
// certificate and key, skip-verify). Two tenants with the same origin and
// settings share keep-alive connections; a tenant whose settings differ never
// gets a connection that was verified under someone else's rules.
//
// Pools.Get is on the request path. It remembers, per tenant, the Target it
// last saw and its pool, so the usual call is a map lookup and a few string
// and byte comparisons, without allocation. When a tenant's Target changes,
// Get moves the tenant to the new pool; a pool no tenant uses any more is
// retired: its idle connections are closed at once, and connections that were
// busy at that moment are closed when they turn idle (a sweep every second,
// for up to IdleConnTimeout).
//
// # Lean HTTP/1.1 client
//
// Requests to http origins, and to https origins that speak HTTP/1.1
// (unless Config.DisableLeanHTTP1), skip
// http.Transport and its two goroutines per connection: the pool writes the
// request and reads the response with http.ReadResponse on the caller's
// goroutine, over a stack of idle keep-alive connections. A connection is
// reused only after its response body was read to EOF and the response
// allowed keep-alive; ResponseHeaderTimeout is a connection deadline, and
// the end of the request's context closes the connection. Requests with an
// Upgrade header or CONNECT use http.Transport. An https pool's lean client
// dials with the pool's TLS configuration (ALPN h2, http/1.1): when the
// origin picks h2, the connection is closed, the pool marks itself for
// http.Transport (which speaks HTTP/2), and the request, not yet sent,
// goes there; the one wasted handshake is paid once per pool.
//
// # TLS
//
// The TLS handshake is done by the pool's own dialer (not by http.Transport)
// so that its errors and timeout are labelled: SNI is the tenant's
// ServerName or else the origin host; the certificate is verified against
// the tenant's CA bundle when given, else the system roots; a client
// certificate is presented for mTLS; verification is skipped only when
// InsecureSkipVerify is set. ALPN offers h2 and http/1.1, so origins that
// speak HTTP/2 get it.
//
// # Errors
//
// IsTimeout tells timeouts (dial, TLS handshake, response header: 504) from
// other failures (502). Reason names the cause for a log line, e.g.
// "x509: certificate signed by unknown authority" or "connect: connection refused".
//
// # Retries
//
// A pool never replays a non-idempotent request. http.Transport retries a
// request on a fresh connection when a reused keep-alive connection fails,
// but only if
//   - none of the request was written (the origin cannot have seen it) and
//     its body is empty or can be rewound (GetBody), or
//   - the request is replayable: GET, HEAD, OPTIONS or TRACE, or one carrying
//     an Idempotency-Key header, with an empty or rewindable body.
//
// RoundTrip removes GetBody from non-idempotent requests (requests received
// by a server never have one), so a POST, PUT, PATCH or DELETE with a body is
// never sent twice, even with an Idempotency-Key: its failure is returned to
// the caller (502). HTTP/2 retries only streams the origin refused
// (REFUSED_STREAM, or above a GOAWAY's last stream), which by protocol were
// not processed.
//
// The lean client replays a request once on a fresh connection only when a
// reused connection failed before any response byte and the request is GET,
// HEAD or OPTIONS without a body.
//
// # Stray bytes
//
// Every idle connection is peeked (one non-blocking recv(MSG_PEEK))
// before reuse: one the origin has closed, or sent anything on since
// the last response (a late second response, the body of a HEAD
// answer), is closed. Pools are shared by the tenants of an origin, so
// such bytes read by the next exchange would be served, and cached, as
// another tenant's response. Plain-http requests on http.Transport get
// the same peek through an httptrace GotConn hook.
package upstream
