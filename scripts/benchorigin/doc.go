// Command benchorigin is the fast origin server and the idle-connection
// holder used by scripts/bench, the whole-system benchmark.
//
//	benchorigin serve -addr 127.0.0.1:PORT
//
// serves the benchmark's fixed objects:
//
//	/small      1 KB text, Cache-Control: public, max-age=3600
//	/page.html  ~40 KB HTML page (text/html), Cache-Control: public, max-age=3600
//	/nostore    1 KB text, Cache-Control: no-store
//	/stats      JSON request counters, {"total":N,"paths":{"/small":N,…},
//	            "forwarded":{"/small":N,…},"tls":{"/small":N,…}}
//
// The counters let the benchmark prove that a cache-hit case never reached
// the origin; "forwarded" counts, per path, the requests that carried an
// X-Forwarded-For header, to prove which proxy forwards the client's
// address; "tls" those that came over the https listener (below). /stats
// itself is not counted.
//
//	benchorigin serve -addr 127.0.0.1:PORT -tls-addr 127.0.0.1:PORT2 -tls-ca FILE
//
// also serves the same objects, with the same counters, over https on
// PORT2: HTTP/1.1 only (ALPN http/1.1, as nginx speaks to upstreams), with
// a certificate for the DNS name origin.bench (no IP SAN) signed by a CA
// made at start, whose PEM goes to FILE for the proxies to verify it with.
//
//	benchorigin conns -addr 127.0.0.1:PORT -host bench.example -n 10000
//
// opens n keep-alive connections, sends one request on each, reads the
// response, prints "ready N" and holds them open until -hold passes (with
// -hold 0: until stdin reaches EOF) or SIGTERM. scripts/bench then reads
// the proxy's RSS.
package main
