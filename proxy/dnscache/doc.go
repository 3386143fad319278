// Package dnscache resolves origin host names for the proxy's upstream pools
// and caches the answers for as long as DNS says they are valid.
//
// A Resolver asks the configured nameservers (by default those of
// /etc/resolv.conf) for A and AAAA records with github.com/miekg/dns, so it
// sees the records' TTLs, which the standard library hides. Each answer is
// cached for its TTL clamped to [MinTTL, MaxTTL]: the floor protects the
// nameservers (and the hot path) from zero-TTL records, the ceiling bounds how
// long an origin move goes unnoticed.
//
// When an answer has expired and the refresh fails (timeout, SERVFAIL,
// unreachable nameserver), the stale answer keeps being served for up to
// MaxStale and the failure is logged; the next refresh is attempted MinTTL
// later, so a dead nameserver does not add its timeout to every dial.
// Concurrent lookups of one name share one query (singleflight).
//
// IP literals are returned as is. Names in the hosts file (e.g. localhost) are
// answered from it, and single-label names (which rely on resolv.conf search
// domains, as in Kubernetes) go to net.DefaultResolver; both are cached for
// MinTTL.
//
// DialContext has the signature of http.Transport.DialContext: it resolves
// through the cache and tries the addresses in order, each with its own
// connect timeout.
package dnscache
