// Package raftstore is Edge's replicated control state: tenants (domains,
// licenses, origins), cluster members and, as the other subsystems land,
// certificates and purge records.
//
// The state machine is the only writer. Commands travel in a versioned
// envelope (command.go), are validated before they are proposed (the
// tenant model and its validators live in the leaf package tenantcfg,
// shared with the node, the proxy and edgectl), are proposed only when
// every member's protocol level can apply them (Store.ApplyEncoded) and
// are applied by small appliers
// (apply.go) that build a new immutable View. A log entry that cannot be
// decoded is applied as a rejected no-op, the same on every replica, never
// a panic (docs/raftstore.md, "Entries that cannot be decoded"). The View is published with one atomic pointer swap
// per applied batch, so the proxy's Lookup is a lock-free, allocation-free
// map read that never sees a half-applied change.
//
// Store (store.go) wires hashicorp/raft to raft-boltdb/v2 (log and stable
// store), a file snapshot store and a TCP transport whose advertised
// address may be a DNS name, all under one data directory.
package raftstore
