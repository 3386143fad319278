// Package h1 is a lean HTTP/1.1 server for the requests an edge proxy
// sees most: GET and HEAD (or any method without a body) over a keep-alive
// connection. It runs an ordinary http.Handler, so the proxy has one code
// path, but it does per request much less than net/http's server: the
// header block becomes one string that the method, target, keys and values
// are sliced from; the response header is written straight from the map
// (no clone, no sort); the request context only starts watching the
// connection for a client that left when something waits on it (an origin
// fetch does, a cache hit does not); the idle deadline is moved about once
// a second, not per request; a small response leaves in one write.
//
// Anything else is handed over, with the bytes already read, to a
// fallback (proxy.Server passes it to a net/http server): request bodies,
// Upgrade, Expect, HTTP/1.0, absolute-form targets, header blocks larger
// than the read buffer or MaxHeaderBytes, lines ended by a bare LF, and
// anything malformed, which net/http then answers with its usual 400 or
// 431. A connection that was handed over stays with net/http for the rest
// of its life. HTTPS and HTTP/2 are served by net/http as before.
//
// docs/proxy.md explains why this exists and what it measured.
package h1
