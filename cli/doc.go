// Package cli implements edgectl, the operator's command line for an Edge
// cluster. It speaks only the admin gRPC API (api/edgev1): it never links
// raft or the proxy, so it stays small and can run anywhere.
//
// Contract for scripts: flags are stable, -o json output is stable, exit
// codes are 0 (success), 1 (failure), 2 (usage error) and 3 (the cluster
// has no leader: quorum lost), and errors are one line on stderr without
// gRPC's wording.
package cli
