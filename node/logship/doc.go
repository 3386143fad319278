// Package logship ships a node's slog JSON lines to Grafana Loki through
// github.com/grafana/loki-client-go, without ever letting Loki slow down or
// grow the process.
//
// A Shipper sits behind a slog.Handler (Shipper.Handler): every record still
// goes to the next handler (stdout JSON) and is also formatted as a JSON line
// and offered to a bounded, non-blocking queue. One goroutine moves lines
// from the queue into the loki-client-go client, which batches them and
// pushes snappy-compressed protobuf to Loki's push API. When Loki is slow or
// down the client blocks in its retries, the queue fills, and new lines are
// dropped and counted (edge_log_lines_dropped_total); a log call never waits.
//
// Streams are labelled with the configured labels (job, node) plus a level
// label (debug, info, warn, error). Nothing per-request becomes a label: the
// tenant, status and timings stay in the line, so label cardinality is fixed.
//
// docs/logging.md explains the design, the memory bound and what the
// loki-client-go client does when Loki is down.
package logship
