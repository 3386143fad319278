// Package chaos is Edge's fault suite: its tests start real edged
// processes (3 and 5 nodes, with the StatefulSet's flags), drive them with
// concurrent clients through the admin gRPC API, and inject faults in
// cycles (kill -9, SIGSTOP/SIGCONT, network partitions in Linux network
// namespaces the test makes). Every history is checked for linearizability
// with porcupine, and every acknowledged write must survive. Other tests
// cut the power of nodes whose data dirs are on a lazyfs (subpackage
// lazyfs: a FUSE file system that loses unsynced data), and restart a
// node on a truncated or corrupt raft.db or snapshot. The package has no
// code of its own beyond this comment; see docs/reliability.md.
package chaos
