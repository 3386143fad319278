package tenantcfg

import "time"

// Patch lists optional changes to a tenant: a nil field stays as it is.
// It is the payload of raftstore's tenant.update command, so its JSON tags
// are part of the raft log's format.
type Patch struct {
	OriginURL                *string    `json:"origin_url,omitempty"`
	Aliases                  *[]string  `json:"aliases,omitempty"`
	Plan                     *string    `json:"plan,omitempty"`
	ExpiresAt                *time.Time `json:"expires_at,omitempty"`
	ClearExpires             bool       `json:"clear_expires,omitempty"`
	OriginHost               *string    `json:"origin_host,omitempty"`
	OriginServerName         *string    `json:"origin_server_name,omitempty"`
	OriginCAPEM              *string    `json:"origin_ca_pem,omitempty"`
	OriginClientCertPEM      *string    `json:"origin_client_cert_pem,omitempty"`
	OriginClientKeyPEM       *string    `json:"origin_client_key_pem,omitempty"`
	OriginInsecureSkipVerify *bool      `json:"origin_insecure_skip_verify,omitempty"`
	Suspended                *bool      `json:"suspended,omitempty"`
	HTTPSRedirect            *bool      `json:"https_redirect,omitempty"`
	Metrics                  *bool      `json:"metrics,omitempty"`
	CacheDefaultTTL          *int64     `json:"cache_default_ttl_s,omitempty"`
	CacheOverrideTTL         *bool      `json:"cache_override_ttl,omitempty"`
	CacheCookies             *bool      `json:"cache_cookies,omitempty"`
	CacheAuthorized          *bool      `json:"cache_authorized,omitempty"`
	CacheStaleIfError        *int64     `json:"cache_stale_if_error_s,omitempty"`
	CacheStaleWhileRevalid   *int64     `json:"cache_stale_while_revalidate_s,omitempty"`
	CacheKeepCDNCacheControl *bool      `json:"cache_keep_cdn_cache_control,omitempty"`
	CacheClientNoCache       *bool      `json:"cache_client_no_cache,omitempty"`
	Transform                *string    `json:"transform,omitempty"`
	EarlyHints               *bool      `json:"early_hints,omitempty"`
}

// NeedsProtocol2 reports whether the patch sets a field that builds of
// protocol level 1 do not know (they would drop it without a word):
// raftstore proposes such a patch as tenant.update.v2.
func (p *Patch) NeedsProtocol2() bool { return p.EarlyHints != nil }

// ApplyPatch returns a copy of t with p applied. The copy is not validated.
func ApplyPatch(t *Tenant, p *Patch) *Tenant {
	n := *t
	n.Aliases = append([]string(nil), t.Aliases...)
	if p.OriginURL != nil {
		n.Origin.URL = *p.OriginURL
	}
	if p.Aliases != nil {
		n.Aliases = append([]string(nil), (*p.Aliases)...)
	}
	if p.Plan != nil {
		n.License.Plan = *p.Plan
	}
	if p.ExpiresAt != nil {
		n.License.ExpiresAt = p.ExpiresAt.UTC()
	}
	if p.ClearExpires {
		n.License.ExpiresAt = time.Time{}
	}
	if p.OriginHost != nil {
		n.Origin.HostHeader = *p.OriginHost
	}
	if p.OriginServerName != nil {
		n.Origin.TLS.ServerName = *p.OriginServerName
	}
	if p.OriginCAPEM != nil {
		n.Origin.TLS.CAPEM = *p.OriginCAPEM
	}
	if p.OriginClientCertPEM != nil {
		n.Origin.TLS.ClientCertPEM = *p.OriginClientCertPEM
	}
	if p.OriginClientKeyPEM != nil {
		n.Origin.TLS.ClientKeyPEM = *p.OriginClientKeyPEM
	}
	if p.OriginInsecureSkipVerify != nil {
		n.Origin.TLS.InsecureSkipVerify = *p.OriginInsecureSkipVerify
	}
	if p.Suspended != nil {
		if *p.Suspended {
			n.License.Status = LicenseSuspended
		} else {
			n.License.Status = LicenseActive
		}
	}
	if p.HTTPSRedirect != nil {
		n.HTTPSRedirect = *p.HTTPSRedirect
	}
	if p.Metrics != nil {
		n.Metrics = *p.Metrics
	}
	if p.CacheDefaultTTL != nil {
		n.Cache.DefaultTTL = seconds(*p.CacheDefaultTTL)
	}
	if p.CacheOverrideTTL != nil {
		n.Cache.OverrideTTL = *p.CacheOverrideTTL
	}
	if p.CacheCookies != nil {
		n.Cache.CacheCookies = *p.CacheCookies
	}
	if p.CacheAuthorized != nil {
		n.Cache.CacheAuthorized = *p.CacheAuthorized
	}
	if p.CacheStaleIfError != nil {
		n.Cache.StaleIfError = seconds(*p.CacheStaleIfError)
	}
	if p.CacheStaleWhileRevalid != nil {
		n.Cache.StaleWhileRevalidate = seconds(*p.CacheStaleWhileRevalid)
	}
	if p.CacheKeepCDNCacheControl != nil {
		n.Cache.KeepCDNCacheControl = *p.CacheKeepCDNCacheControl
	}
	if p.CacheClientNoCache != nil {
		n.Cache.ClientNoCache = *p.CacheClientNoCache
	}
	if p.Transform != nil {
		n.Transform = *p.Transform
	}
	if p.EarlyHints != nil {
		n.EarlyHints = *p.EarlyHints
	}
	return &n
}

func seconds(s int64) time.Duration { return time.Duration(s) * time.Second }
