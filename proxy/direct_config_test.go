package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// A direct path that would disagree with the full path is refused at New:
// without a way to know a tenant's stages pass responses through, or
// without the compressor behind the compression hooks.
func TestDirectConfigRefusedWhenIncomplete(t *testing.T) {
	c, comp := newCacheCompressor(t, cache.Config{})
	untransformed := func(*tenantcfg.Tenant) bool { return true }
	base := Config{Routes: routesOf(), Upstreams: newTransportUpstreams(t, nil), Cache: c}

	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"no Untransformed", func(cfg *Config) { cfg.Direct = &DirectConfig{} }, "Untransformed is required"},
		{"compression without Compressor", func(cfg *Config) {
			cfg.WrapWriter = CompressWriter(comp)
			cfg.Direct = &DirectConfig{Untransformed: untransformed}
		}, "Compressor is required"},
		{"decoding without Compressor", func(cfg *Config) {
			cfg.DecodeOrigin = func(*http.Response, string) error { return nil }
			cfg.Direct = &DirectConfig{Untransformed: untransformed}
		}, "Compressor is required"},
		{"complete", func(cfg *Config) {
			cfg.WrapWriter, cfg.DecodeOrigin = CompressWriter(comp), CompressDecoder(comp)
			cfg.Direct = &DirectConfig{Untransformed: untransformed, Compressor: comp}
		}, ""},
		{"no compression at all", func(cfg *Config) {
			cfg.Direct = &DirectConfig{Untransformed: untransformed}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			_, err := New(cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("New: %v, want an error saying %q", err, tc.wantErr)
			}
		})
	}
}
