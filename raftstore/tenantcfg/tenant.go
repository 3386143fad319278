// Package tenantcfg is the tenant model: the settings a tenant has
// (domain, aliases, license, origin, cache policy, transform rules), the
// patch that changes them, and the validators that normalise them.
//
// It is the one home of these types. The replicated store applies and
// snapshots them, the node converts them to and from the admin API, the
// proxy serves from them, and edgectl checks an apply file with the very
// validators the cluster runs. It imports no raft, bolt or proxy package
// (a test checks), so edgectl and the proxy can use it without linking the
// store. Like tailscale's tailcfg, it is a leaf shared by both sides of a
// wire.
//
// The JSON encoding of Tenant and Patch is the encoding of the raft log
// and of snapshots: a field's tag, once released, never changes
// (raftstore's TestOldLogAndSnapshotStillRead holds old bytes).
// docs/raftstore.md, "Adding a tenant setting", lists every place a new
// field must reach.
package tenantcfg

import (
	"time"
)

// LicenseStatus is the commercial state of a tenant's license.
type LicenseStatus string

// License states. A license past its ExpiresAt counts as expired whatever
// its status says.
const (
	LicenseActive    LicenseStatus = "active"
	LicenseSuspended LicenseStatus = "suspended"
)

// License is what the proxy checks before serving a tenant's domain.
type License struct {
	Status    LicenseStatus `json:"status"`
	Plan      string        `json:"plan,omitempty"`
	ExpiresAt time.Time     `json:"expires_at,omitzero"`
}

// Active reports whether the license allows serving traffic at now.
func (l License) Active(now time.Time) bool {
	return l.Status == LicenseActive && !l.Expired(now)
}

// Expired reports whether the license has an expiry and it is past.
func (l License) Expired(now time.Time) bool {
	return !l.ExpiresAt.IsZero() && !now.Before(l.ExpiresAt)
}

// OriginTLS holds the upstream TLS settings of a tenant's origin.
type OriginTLS struct {
	ServerName         string `json:"server_name,omitempty"`
	CAPEM              string `json:"ca_pem,omitempty"`
	ClientCertPEM      string `json:"client_cert_pem,omitempty"`
	ClientKeyPEM       string `json:"client_key_pem,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// Origin is where a tenant's traffic goes.
type Origin struct {
	// URL is the origin's base URL: scheme http or https, host and optional port.
	URL string `json:"url"`
	// HostHeader, when set, replaces the Host header sent to the origin.
	HostHeader string    `json:"host_header,omitempty"`
	TLS        OriginTLS `json:"tls,omitzero"`
}

// CachePolicy is a tenant's cache configuration.
type CachePolicy struct {
	// DefaultTTL applies to cacheable responses without explicit freshness.
	DefaultTTL time.Duration `json:"default_ttl,omitempty"`
	// OverrideTTL, when true, uses DefaultTTL even when the origin says otherwise.
	OverrideTTL bool `json:"override_ttl,omitempty"`
	// CacheCookies allows storing responses that carry Set-Cookie.
	CacheCookies bool `json:"cache_cookies,omitempty"`
	// CacheAuthorized lets requests with Authorization use the cache; their
	// responses are stored only when public, s-maxage or must-revalidate
	// allows a shared cache to (RFC 9111 section 3.5).
	CacheAuthorized bool `json:"cache_authorized,omitempty"`
	// StaleIfError and StaleWhileRevalidate are the stale windows used
	// when the origin sends none (RFC 5861), so a tenant can ride out an
	// origin outage without changing its origin's headers.
	StaleIfError         time.Duration `json:"stale_if_error,omitempty"`
	StaleWhileRevalidate time.Duration `json:"stale_while_revalidate,omitempty"`
	// KeepCDNCacheControl relays CDN-Cache-Control to clients (another
	// CDN in front of Edge); by default Edge strips it.
	KeepCDNCacheControl bool `json:"keep_cdn_cache_control,omitempty"`
	// ClientNoCache lets a client's Cache-Control: no-cache or max-age=0
	// make Edge revalidate with the origin; by default it is ignored.
	ClientNoCache bool `json:"client_no_cache,omitempty"`
}

// Tenant is one customer: a primary domain, its aliases, its license and its
// origin. Tenants are immutable once published in a View: every change
// builds a new value.
type Tenant struct {
	Domain        string   `json:"domain"`
	Aliases       []string `json:"aliases,omitempty"`
	License       License  `json:"license"`
	Origin        Origin   `json:"origin"`
	HTTPSRedirect bool     `json:"https_redirect,omitempty"`
	// Metrics opts the tenant into per-tenant metric series (labels stay
	// bounded: only opted-in tenants get their own).
	Metrics bool        `json:"metrics,omitempty"`
	Cache   CachePolicy `json:"cache,omitzero"`
	// EarlyHints sends a 103 Early Hints with the preload and preconnect
	// Link headers of a cached HTML page before the page itself (the
	// origin's own 103s are forwarded whatever this says). Writes that
	// set it need protocol level 2 (raftstore.CmdTenantAddV2).
	EarlyHints bool `json:"early_hints,omitempty"`
	// Transform holds the tenant's HTML transform rules in their canonical
	// encoding (see proxy/transform); empty means no transformation.
	Transform string `json:"transform,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Index is the raft log index of the tenant's last change.
	Index uint64 `json:"index"`
	// OriginIndex is the raft log index at which the tenant was added or
	// its origin (URL, Host header, TLS server name) last changed. The
	// cache keys the tenant's objects on it, so a removed tenant's objects,
	// or an old origin's, are unreachable for the domain's next owner on
	// every node and tier. 0 for tenants added before it existed.
	OriginIndex uint64 `json:"origin_index,omitempty"`
}

// SameOrigin reports whether a and b fetch the same content: the same
// origin URL, Host header and TLS server name (a CA or client
// certificate rotation does not change what the origin serves).
func SameOrigin(a, b *Origin) bool {
	return a.URL == b.URL && a.HostHeader == b.HostHeader && a.TLS.ServerName == b.TLS.ServerName
}

// Hosts returns the primary domain followed by the aliases.
func (t *Tenant) Hosts() []string {
	return append([]string{t.Domain}, t.Aliases...)
}
