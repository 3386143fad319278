// Package raftstore is Edge's replicated control state: tenants (domains,
// licenses, origins, cache and transform policy), cluster members with
// their protocol levels, a key-value space for certificates and ACME
// state, and purge records.
//
// The state machine is the only writer. Commands travel in a versioned
// envelope (command.go), are validated before they are proposed (the
// tenant model and its validators live in the leaf package tenantcfg,
// shared with the node, the proxy and edgectl, so none of them links
// raft), are proposed only when every member's protocol level can apply
// them (Store.ApplyEncoded), and are applied by small appliers (apply.go)
// that build a new immutable View. A log entry that cannot be decoded is
// applied as a rejected no-op, the same on every replica, never a panic
// (docs/raftstore.md, "Entries that cannot be decoded"). The View is
// published with one atomic pointer swap per applied batch, so the
// proxy's Lookup is a lock-free, allocation-free map read that never sees
// a half-applied change.
//
// Store (store.go) wires hashicorp/raft to raft-boltdb/v2 (log and stable
// store) and a file snapshot store under one data directory kept private
// to its owner (perms.go), and to a TCP transport (transport.go) on which
// every connection is mutual TLS with the cluster credential before raft
// reads a byte (package peertls); advertised addresses may be DNS names,
// resolved on every dial. Leader reads commit a barrier (Store.ReadIndex)
// so that a deposed leader cannot answer them.
package raftstore
