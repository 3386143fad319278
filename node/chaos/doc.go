// Package chaos is Edge's fault suite: its tests start real edged
// processes (3 and 5 nodes, with the StatefulSet's flags), drive them with
// concurrent clients through the admin gRPC API, and inject faults in
// cycles (kill -9, SIGSTOP/SIGCONT, network partitions in Linux network
// namespaces the test makes). Every history is checked for linearizability
// with porcupine, and every acknowledged write must survive. The package
// has no code of its own beyond this comment; see docs/reliability.md.
package chaos
