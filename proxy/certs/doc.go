// Package certs is Edge's certificate manager: it picks the certificate for
// every TLS handshake and obtains certificates from an ACME CA for domains
// with an active license, once per cluster.
//
// A handshake is answered, in this order, from (1) a certificate in the
// replicated store for the SNI name (exact, then wildcard), parsed once per
// stored version and never served past its expiry; (2) an on-demand ACME
// order when the name belongs to a licensed tenant, which only the Raft
// leader places (followers ask the leader through a Forwarder and then serve
// from the replicated store); (3) otherwise the handshake fails at once,
// without touching the CA or storage, and a bounded negative cache absorbs
// repeats of the same unknown name. A TLS-ALPN-01 hello (ALPN acme-tls/1
// only) is answered from the store only with tls-alpn-01 configured and a
// licensed name; any other fails at once.
//
// Everything the ACME flow needs on more than one node lives in the
// replicated KV space: certificates with their keys and metadata, the ACME
// account key, HTTP-01 tokens, TLS-ALPN-01 challenge certificates and the
// URL of an order in flight, so a new leader resumes an interrupted order
// instead of placing a second one. Writes carry the raft term the work
// started in, so a deposed leader cannot overwrite newer state.
//
// The renewal loop (Run) runs on the leader: it renews ahead of expiry with
// jitter, paces orders, backs off per domain and retires certificates of
// tenants removed or suspended for longer than a grace period. An optional
// Mirror (S3) keeps a copy of every certificate so that an empty cluster
// restores instead of ordering again. See docs/certs.md.
package certs
