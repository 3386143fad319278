// Package node assembles one Edge node: the replicated store (raftstore),
// the proxy data plane, the admin gRPC API, and membership (bootstrap,
// join, write forwarding, graceful leave).
//
// node is the only package that imports everything else; the proxy, the
// store and the CLI never import each other's internals. cmd/edged parses
// flags into a Config (flags.go) and calls New then Run; tests build nodes
// through the same constructor.
package node
