package node

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// tenantToProto converts a stored tenant for the API. The client key never
// leaves the cluster; reads only say whether one is set.
func tenantToProto(t *tenantcfg.Tenant, now time.Time) *edgev1.Tenant {
	if t == nil {
		return nil
	}
	return &edgev1.Tenant{
		Domain:  t.Domain,
		Aliases: append([]string(nil), t.Aliases...),
		License: &edgev1.License{
			Status:    string(t.License.Status),
			Plan:      t.License.Plan,
			ExpiresAt: ts(t.License.ExpiresAt),
		},
		Origin: &edgev1.Origin{
			Url:        t.Origin.URL,
			HostHeader: t.Origin.HostHeader,
			Tls: &edgev1.OriginTLS{
				ServerName:         t.Origin.TLS.ServerName,
				CaPem:              t.Origin.TLS.CAPEM,
				ClientCertPem:      t.Origin.TLS.ClientCertPEM,
				ClientKeySet:       t.Origin.TLS.ClientKeyPEM != "",
				InsecureSkipVerify: t.Origin.TLS.InsecureSkipVerify,
			},
		},
		HttpsRedirect: t.HTTPSRedirect,
		Metrics:       t.Metrics,
		EarlyHints:    t.EarlyHints,
		Cache: &edgev1.CachePolicy{
			DefaultTtlSeconds: int64(t.Cache.DefaultTTL / time.Second),
			OverrideTtl:       t.Cache.OverrideTTL,
			CacheCookies:      t.Cache.CacheCookies,
			CacheAuthorized:   t.Cache.CacheAuthorized,

			StaleIfErrorSeconds:         int64(t.Cache.StaleIfError / time.Second),
			StaleWhileRevalidateSeconds: int64(t.Cache.StaleWhileRevalidate / time.Second),
			KeepCdnCacheControl:         t.Cache.KeepCDNCacheControl,
			ClientNoCache:               t.Cache.ClientNoCache,
		},
		Transform: t.Transform,
		CreatedAt: ts(t.CreatedAt),
		UpdatedAt: ts(t.UpdatedAt),
		Index:     t.Index,
		Expired:   t.License.Expired(now),
	}
}

func tenantFromProto(p *edgev1.Tenant) *tenantcfg.Tenant {
	t := &tenantcfg.Tenant{
		Domain:        p.GetDomain(),
		Aliases:       append([]string(nil), p.GetAliases()...),
		HTTPSRedirect: p.GetHttpsRedirect(),
		Metrics:       p.GetMetrics(),
		Transform:     p.GetTransform(),
		EarlyHints:    p.GetEarlyHints(),
	}
	if l := p.GetLicense(); l != nil {
		t.License.Status = tenantcfg.LicenseStatus(l.GetStatus())
		t.License.Plan = l.GetPlan()
		if l.GetExpiresAt() != nil {
			t.License.ExpiresAt = l.GetExpiresAt().AsTime().UTC()
		}
	}
	if o := p.GetOrigin(); o != nil {
		t.Origin.URL = o.GetUrl()
		t.Origin.HostHeader = o.GetHostHeader()
		if tl := o.GetTls(); tl != nil {
			t.Origin.TLS = tenantcfg.OriginTLS{
				ServerName:         tl.GetServerName(),
				CAPEM:              tl.GetCaPem(),
				ClientCertPEM:      tl.GetClientCertPem(),
				ClientKeyPEM:       tl.GetClientKeyPem(),
				InsecureSkipVerify: tl.GetInsecureSkipVerify(),
			}
		}
	}
	if c := p.GetCache(); c != nil {
		t.Cache = tenantcfg.CachePolicy{
			DefaultTTL:      time.Duration(c.GetDefaultTtlSeconds()) * time.Second,
			OverrideTTL:     c.GetOverrideTtl(),
			CacheCookies:    c.GetCacheCookies(),
			CacheAuthorized: c.GetCacheAuthorized(),

			StaleIfError:         time.Duration(c.GetStaleIfErrorSeconds()) * time.Second,
			StaleWhileRevalidate: time.Duration(c.GetStaleWhileRevalidateSeconds()) * time.Second,
			KeepCDNCacheControl:  c.GetKeepCdnCacheControl(),
			ClientNoCache:        c.GetClientNoCache(),
		}
	}
	return t
}

func patchFromProto(p *edgev1.TenantPatch) tenantcfg.Patch {
	var out tenantcfg.Patch
	if p == nil {
		return out
	}
	out.OriginURL = p.OriginUrl
	if p.GetSetAliases() {
		a := append([]string{}, p.GetAliases()...)
		out.Aliases = &a
	}
	out.Plan = p.Plan
	if p.ExpiresAt != nil {
		t := p.ExpiresAt.AsTime().UTC()
		out.ExpiresAt = &t
	}
	out.ClearExpires = p.GetClearExpires()
	out.OriginHost = p.OriginHost
	out.OriginServerName = p.OriginServerName
	out.OriginCAPEM = p.OriginCaPem
	out.OriginClientCertPEM = p.OriginClientCertPem
	out.OriginClientKeyPEM = p.OriginClientKeyPem
	out.OriginInsecureSkipVerify = p.OriginInsecureSkipVerify
	out.Suspended = p.Suspended
	out.HTTPSRedirect = p.HttpsRedirect
	out.Metrics = p.Metrics
	out.CacheDefaultTTL = p.CacheDefaultTtlSeconds
	out.CacheOverrideTTL = p.CacheOverrideTtl
	out.CacheCookies = p.CacheCookies
	out.CacheAuthorized = p.CacheAuthorized
	out.CacheStaleIfError = p.CacheStaleIfErrorSeconds
	out.CacheStaleWhileRevalid = p.CacheStaleWhileRevalidateSeconds
	out.CacheKeepCDNCacheControl = p.CacheKeepCdnCacheControl
	out.CacheClientNoCache = p.CacheClientNoCache
	out.Transform = p.Transform
	out.EarlyHints = p.EarlyHints
	return out
}
