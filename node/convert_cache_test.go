package node

import (
	"testing"
	"time"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// TestCachePolicyConvert: every per-tenant cache setting survives the API
// both ways and a patch (the CLI → proto → raftstore path).
func TestCachePolicyConvert(t *testing.T) {
	want := tenantcfg.CachePolicy{
		DefaultTTL: time.Minute, OverrideTTL: true, CacheCookies: true, CacheAuthorized: true,
		StaleIfError: time.Hour, StaleWhileRevalidate: 30 * time.Second, KeepCDNCacheControl: true, ClientNoCache: true,
	}
	in := &tenantcfg.Tenant{Domain: "a.example", Cache: want}
	if got := tenantFromProto(tenantToProto(in, time.Now())).Cache; got != want {
		t.Fatalf("round trip: %+v, want %+v", got, want)
	}
	sie, swr, keep, nc := int64(3600), int64(30), true, true
	p := patchFromProto(&edgev1.TenantPatch{CacheStaleIfErrorSeconds: &sie, CacheStaleWhileRevalidateSeconds: &swr,
		CacheKeepCdnCacheControl: &keep, CacheClientNoCache: &nc})
	got := tenantcfg.ApplyPatch(&tenantcfg.Tenant{Domain: "a.example"}, &p).Cache
	if got.StaleIfError != time.Hour || got.StaleWhileRevalidate != 30*time.Second || !got.KeepCDNCacheControl || !got.ClientNoCache {
		t.Fatalf("patched: %+v", got)
	}
}
