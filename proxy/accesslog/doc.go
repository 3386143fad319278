// Package accesslog writes the proxy's per-request access line, and every
// other log line of the process, to stdout without costing the request
// path a JSON handler or a write(2) per request.
//
// Two parts:
//
//   - An encoder that appends an Entry as one JSON line of exactly the
//     bytes log/slog's JSONHandler writes for the same record (built-in
//     time, level and msg keys, then the static fields, then the request
//     fields in a fixed order, strings escaped the way slog escapes them),
//     so log tooling and Loki queries see no difference. It does not
//     allocate.
//   - A Writer: an io.Writer (hand it to slog.NewJSONHandler for the other
//     log lines) plus Log(*Entry). Lines are appended whole to an
//     in-memory buffer and written to the underlying writer by one
//     background goroutine every FlushInterval (100 ms) or as soon as
//     FlushBytes (256 KiB) are pending. The buffer is double: the goroutine
//     swaps it under the lock and writes outside it, so a slow or blocked
//     stdout never blocks a request. Past MaxPending (1 MiB) bytes waiting,
//     lines are dropped and counted instead.
//
// docs/logging.md explains the trade-off (up to 100 ms of delay and a
// bounded loss on a stuck stdout, against ~10% of a cache hit's CPU).
package accesslog
