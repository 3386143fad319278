package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore/tenantcfg/tenantcfgtest"
	"github.com/edgeproxy/edge/scripts/testkit"
)

const sampleFile = `tenants:
  - domain: a.example
    origin: http://127.0.0.1:8081
  - domain: b.example
    aliases: [www.b.example]
    origin: https://origin.b.example
`

func parseString(t *testing.T, name, data string) ([]*tenantState, error) {
	t.Helper()
	return parseDesired([]source{{Name: name, Dir: t.TempDir(), Data: []byte(data)}})
}

func mustParse(t *testing.T, data string) []*tenantState {
	t.Helper()
	ts, err := parseString(t, "tenants.yaml", data)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return ts
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func TestParseSampleFile(t *testing.T) {
	ts := mustParse(t, sampleFile)
	if len(ts) != 2 {
		t.Fatalf("got %d tenants", len(ts))
	}
	a, b := ts[0], ts[1]
	if a.Domain != "a.example" || a.Origin != "http://127.0.0.1:8081" || a.Aliases != nil {
		t.Errorf("a = %+v", a)
	}
	if b.Domain != "b.example" || b.Origin != "https://origin.b.example" || len(b.Aliases) != 1 || b.Aliases[0] != "www.b.example" {
		t.Errorf("b = %+v", b)
	}
	if a.Where != "tenants.yaml:2" || b.Where != "tenants.yaml:4" {
		t.Errorf("where = %q, %q", a.Where, b.Where)
	}
}

func TestParseNormalises(t *testing.T) {
	ts := mustParse(t, `tenants:
  - domain: Shop.EXAMPLE.
    aliases: [WWW.shop.example, b.shop.example]
    origin: https://Origin.Shop.example/
    expires: 2027-01-31T01:00:00+01:00
    suspended: true
    cache: {default_ttl: 1h30m, cache_cookies: true}
`)
	s := ts[0]
	if s.Domain != "shop.example" || strings.Join(s.Aliases, ",") != "b.shop.example,www.shop.example" {
		t.Errorf("names = %s %v", s.Domain, s.Aliases)
	}
	if s.Origin != "https://origin.shop.example" {
		t.Errorf("origin = %s", s.Origin)
	}
	if !s.Expires.Equal(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)) || !s.Suspended {
		t.Errorf("license = %v %v", s.Expires, s.Suspended)
	}
	if s.CacheTTL != 90*time.Minute || !s.CacheCookies || s.CacheOverride {
		t.Errorf("cache = %+v", s)
	}
}

func TestParseMultiDocument(t *testing.T) {
	ts := mustParse(t, `tenants:
  - domain: a.example
    origin: http://127.0.0.1:8081
---
# second team
tenants:
  - domain: c.example
    origin: http://127.0.0.1:8082
---
`)
	if len(ts) != 2 || ts[0].Domain != "a.example" || ts[1].Domain != "c.example" || ts[1].Where != "tenants.yaml:7" {
		t.Fatalf("got %+v %+v", ts[0], ts[1])
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"malformed", "tenants:\n  - domain: a.example\n    origin: http://x.example\n   oops: [\n", []string{"f.yaml:4:"}},
		{"tab", "tenants:\n\t- domain: a.example\n", []string{"f.yaml:2:"}},
		{"unknown field", "tenants:\n  - domain: a.example\n    origin: http://x.example\n    colour: red\n", []string{"f.yaml:4:", `unknown field "colour"`}},
		{"unknown top-level field", "tenant:\n  - domain: a.example\n", []string{"f.yaml:1:", `unknown field "tenant"`}},
		{"unknown cache field", "tenants:\n  - domain: a.example\n    origin: http://x.example\n    cache:\n      ttl: 5m\n", []string{"f.yaml:5:", `unknown field "ttl"`}},
		{"wrong type", "tenants:\n  - domain: a.example\n    origin: http://x.example\n    aliases: www.a.example\n", []string{"f.yaml:4:", "into a list"}},
		{"unknown field in second document", "tenants: []\n---\ntenants:\n  - domain: a.example\n    origin: http://x.example\n    orign: x\n", []string{"f.yaml:6:", `unknown field "orign"`}},
		{"duplicate key", "tenants:\n  - domain: a.example\n    domain: b.example\n    origin: http://x.example\n", []string{"f.yaml:3:", "already defined"}},
		{"empty", "", []string{`no "tenants:" list`}},
		{"comment only", "# nothing\n", []string{`no "tenants:" list`}},
		{"duplicate domain across documents", "tenants:\n  - domain: a.example\n    origin: http://x.example\n---\ntenants:\n  - domain: A.example\n    origin: http://y.example\n",
			[]string{"f.yaml:6: tenant a.example is defined twice (also at f.yaml:2)"}},
		{"alias used twice", "tenants:\n  - domain: a.example\n    aliases: [www.example]\n    origin: http://x.example\n  - domain: b.example\n    aliases: [WWW.example]\n    origin: http://x.example\n",
			[]string{"f.yaml:5: alias www.example of b.example is already used by tenant a.example (f.yaml:2)"}},
		{"alias is another tenant's domain", "tenants:\n  - domain: a.example\n    origin: http://x.example\n  - domain: b.example\n    aliases: [a.example]\n    origin: http://x.example\n",
			[]string{"alias a.example of b.example is already used by tenant a.example"}},
		{"alias listed twice in one tenant", "tenants:\n  - domain: a.example\n    aliases: [w.a.example, W.a.example]\n    origin: http://x.example\n", []string{"f.yaml:3: a.example: aliases: w.a.example is listed twice"}},
		{"alias is own domain", "tenants:\n  - domain: a.example\n    aliases: [a.example]\n    origin: http://x.example\n", []string{"own domain"}},
		{"missing origin", "tenants:\n  - domain: a.example\n", []string{"f.yaml:2: a.example: origin: required"}},
		{"bad origin", "tenants:\n  - domain: a.example\n    origin: ftp://x.example\n", []string{"f.yaml:3:", "scheme must be http or https"}},
		{"bad domain", "tenants:\n  - domain: localhost\n    origin: http://x.example\n", []string{"f.yaml:2: domain:", "two labels"}},
		{"bad expires", "tenants:\n  - domain: a.example\n    origin: http://x.example\n    expires: next week\n", []string{"f.yaml:4: a.example: expires:", "RFC 3339"}},
		{"bad ttl", "tenants:\n  - domain: a.example\n    origin: http://x.example\n    cache:\n      default_ttl: 1.5s\n", []string{"whole seconds"}},
		{"transform not a mapping", "tenants:\n  - domain: a.example\n    origin: http://x.example\n    transform: [a]\n", []string{"f.yaml:4:", "transform: must be a mapping"}},
		{"key without cert", "tenants:\n  - domain: a.example\n    origin: http://x.example\n    origin_client_key: <unchanged>\n", []string{"needs origin_client_cert"}},
		{"ca file missing", "tenants:\n  - domain: a.example\n    origin: http://x.example\n    origin_ca_file: nope.pem\n", []string{"f.yaml:4: a.example: origin_ca_file:", "nope.pem"}},
		{"bad ca", "tenants:\n  - domain: a.example\n    origin: http://x.example\n    origin_ca_pem: hello\n", []string{"f.yaml:4: a.example: origin_ca_pem:", "PEM"}},
		{"several errors at once", "tenants:\n  - domain: a.example\n  - domain: b.example\n", []string{"f.yaml:2: a.example: origin: required", "f.yaml:3: b.example: origin: required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseString(t, "f.yaml", tc.data)
			wantErr(t, err, tc.want...)
		})
	}
}

func TestParseEmptyListIsAllowed(t *testing.T) {
	if ts := mustParse(t, "tenants: []\n"); len(ts) != 0 {
		t.Fatalf("got %d tenants", len(ts))
	}
}

func TestParseReadsFilesRelativeToTheFile(t *testing.T) {
	cert, key := testkit.SelfSigned(t, "client").PEMStrings()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"pki/ca.pem": cert, "pki/client.pem": cert, "pki/client.key": key} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(file, []byte(`tenants:
  - domain: a.example
    origin: https://x.example
    origin_ca_file: pki/ca.pem
    origin_client_cert_file: pki/client.pem
    origin_client_key_file: pki/client.key
`), 0o600); err != nil {
		t.Fatal(err)
	}
	srcs, err := readSources([]string{file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := parseDesired(srcs)
	if err != nil {
		t.Fatal(err)
	}
	if ts[0].CAPEM != cert || ts[0].ClientCertPEM != cert || ts[0].ClientKeyPEM != key {
		t.Fatalf("PEMs not read: %+v", ts[0])
	}
	// A key that does not match the certificate is refused before any write.
	_, otherKey := testkit.SelfSigned(t, "client").PEMStrings()
	_, err = parseString(t, "f.yaml", "tenants:\n  - domain: a.example\n    origin: https://x.example\n    origin_client_cert: |\n"+indent(cert, 6)+"    origin_client_key: |\n"+indent(otherKey, 6))
	wantErr(t, err, "do not form a pair")
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString(pad + l)
		}
	}
	return b.String()
}

// stored builds a tenant the way the cluster returns it.
func stored(domain string, index uint64, aliases ...string) *edgev1.Tenant {
	return &edgev1.Tenant{
		Domain: domain, Aliases: aliases, Index: index,
		License: &edgev1.License{Status: "active"},
		Origin:  &edgev1.Origin{Url: "http://127.0.0.1:8081", Tls: &edgev1.OriginTLS{}},
		Cache:   &edgev1.CachePolicy{},
	}
}

func states(ts ...*edgev1.Tenant) []*tenantState {
	out := make([]*tenantState, len(ts))
	for i, t := range ts {
		out[i] = stateFromProto(t)
	}
	return out
}

func planOf(t *testing.T, desired, current []*tenantState, prune bool) *plan {
	t.Helper()
	p, err := computePlan(desired, current, prune)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return p
}

func summary(p *plan) string {
	var parts []string
	for _, c := range p.Changes {
		s := c.Action + " " + c.Domain
		for _, f := range c.Fields {
			s += " " + f.Field
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func TestPlanCreateUpdateDelete(t *testing.T) {
	desired := mustParse(t, sampleFile)
	b := stored("b.example", 7)
	b.Origin.Url = "https://old.b.example"
	current := states(b, stored("c.example", 9))

	p := planOf(t, desired, current, false)
	if got, want := summary(p), "create a.example origin; update b.example origin aliases"; got != want {
		t.Errorf("plan = %q, want %q", got, want)
	}
	if strings.Join(p.Unmanaged, ",") != "c.example" {
		t.Errorf("unmanaged = %v", p.Unmanaged)
	}
	upd := p.Changes[1]
	if upd.Index != 7 || upd.later != nil {
		t.Errorf("update = %+v", upd)
	}
	// Only the changed fields are in the patch.
	want := &edgev1.TenantPatch{OriginUrl: proto.String("https://origin.b.example"), SetAliases: true, Aliases: []string{"www.b.example"}}
	if !proto.Equal(upd.patch, want) {
		t.Errorf("patch = %v, want %v", upd.patch, want)
	}
	if add := p.Changes[0].add; add.GetDomain() != "a.example" || add.GetOrigin().GetUrl() != "http://127.0.0.1:8081" || add.GetLicense().GetStatus() != "active" {
		t.Errorf("add = %v", add)
	}

	p = planOf(t, desired, current, true)
	if got, want := summary(p), "create a.example origin; update b.example origin aliases; delete c.example"; got != want {
		t.Errorf("pruned plan = %q, want %q", got, want)
	}
	if p.Unmanaged != nil || p.Changes[2].Index != 9 {
		t.Errorf("pruned plan = %+v", p)
	}
}

func TestPlanIsEmptyWhenClusterMatches(t *testing.T) {
	desired := mustParse(t, sampleFile)
	b := stored("b.example", 4, "www.b.example")
	b.Origin.Url = "https://origin.b.example"
	current := states(stored("a.example", 3), b)
	if p := planOf(t, desired, current, true); len(p.Changes) != 0 {
		t.Fatalf("plan = %q, want no changes", summary(p))
	}
}

func TestPlanEveryField(t *testing.T) {
	cert, key := testkit.SelfSigned(t, "client").PEMStrings()
	desired := mustParse(t, `tenants:
  - domain: a.example
    origin: http://127.0.0.1:8081
    origin_host: a.internal
    origin_server_name: sni.a.internal
    origin_ca_pem: |
`+indent(cert, 6)+`    origin_client_cert: |
`+indent(cert, 6)+`    origin_client_key: |
`+indent(key, 6)+`    origin_insecure_skip_verify: true
    plan: gold
    expires: 2027-01-31T00:00:00Z
    suspended: true
    https_redirect: true
    metrics: true
    cache: {default_ttl: 5m, override_ttl: true, cache_cookies: true, cache_authorized: true,
      stale_if_error: 1h, stale_while_revalidate: 30s, keep_cdn_cache_control: true, client_no_cache: true}
    transform:
      rewrite_links: true
`)
	p := planOf(t, desired, states(stored("a.example", 5)), false)
	want := "update a.example origin_host origin_server_name origin_ca origin_client_cert origin_client_key origin_insecure_skip_verify plan expires suspended https_redirect metrics " +
		"cache.default_ttl cache.override_ttl cache.cache_cookies cache.cache_authorized " +
		"cache.stale_if_error cache.stale_while_revalidate cache.keep_cdn_cache_control cache.client_no_cache transform"
	if got := summary(p); got != want {
		t.Fatalf("plan = %q\nwant   %q", got, want)
	}
	pt := p.Changes[0].patch
	if pt.GetCacheStaleIfErrorSeconds() != 3600 || pt.GetCacheStaleWhileRevalidateSeconds() != 30 ||
		!pt.GetCacheKeepCdnCacheControl() || !pt.GetCacheClientNoCache() {
		t.Errorf("cache patch = %v", pt)
	}
	if pt.GetOriginClientKeyPem() != key || pt.GetCacheDefaultTtlSeconds() != 300 || !pt.GetSuspended() || pt.GetExpiresAt().AsTime() != time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC) {
		t.Errorf("patch = %v", pt)
	}
	if !strings.Contains(pt.GetTransform(), "rewrite_links: true") {
		t.Errorf("transform sent = %q", pt.GetTransform())
	}
	// The key never appears in the plan.
	var out bytes.Buffer
	p.writeTable(&out, true)
	if strings.Contains(out.String(), "PRIVATE KEY") || strings.Contains(out.String(), "BEGIN CERTIFICATE") {
		t.Errorf("plan shows PEM:\n%s", out.String())
	}
}

func TestPlanClearsFieldsMissingFromTheFile(t *testing.T) {
	cur := stored("a.example", 5, "www.a.example")
	cur.HttpsRedirect = true
	cur.License.Plan = "gold"
	cur.License.ExpiresAt = timestamppb.New(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))
	cur.Transform = `{"rewrite_links":true}`
	p := planOf(t, mustParse(t, "tenants:\n  - domain: a.example\n    origin: http://127.0.0.1:8081\n"), states(cur), false)
	pt := p.Changes[0].patch
	if !pt.GetSetAliases() || len(pt.GetAliases()) != 0 || pt.HttpsRedirect == nil || pt.GetHttpsRedirect() || pt.GetPlan() != "" || pt.Plan == nil ||
		!pt.GetClearExpires() || pt.Transform == nil || pt.GetTransform() != "" {
		t.Fatalf("patch = %v", pt)
	}
}

func TestPlanComparesTransformSemantically(t *testing.T) {
	cur := stored("a.example", 5)
	// The cluster's canonical JSON omits empty and false fields and sorts keys.
	cur.Transform = `{"elements":[{"remove":true,"selector":".ad"}],"languages":[{"code":"fr","dictionary":{"1":"un","yes":"true"},"path_prefix":"/fr/"}],"rewrite_links":true}`
	desired := mustParse(t, `tenants:
  - domain: a.example
    origin: http://127.0.0.1:8081
    transform:
      rewrite_links: true
      source_language: ""
      inject: []
      languages:
        - code: fr
          path_prefix: /fr/
          host:
          dictionary: {1: un, "yes": true}
      elements:
        - {selector: .ad, remove: true, set_attr: {}}
`)
	if p := planOf(t, desired, states(cur), false); len(p.Changes) != 0 {
		t.Fatalf("plan = %q, want no changes", summary(p))
	}
	// A real difference is one.
	desired[0].Transform.(map[string]any)["rewrite_links"] = "false"
	desired[0].Transform = normRules(desired[0].Transform)
	if p := planOf(t, desired, states(cur), false); summary(p) != "update a.example transform" {
		t.Fatalf("plan = %q", summary(p))
	}
}

func TestPlanClientKey(t *testing.T) {
	cert, key := testkit.SelfSigned(t, "client").PEMStrings()
	cert2, key2 := testkit.SelfSigned(t, "client").PEMStrings()
	withCert := func(c string) *edgev1.Tenant {
		s := stored("a.example", 5)
		s.Origin.Tls.ClientCertPem, s.Origin.Tls.ClientKeySet = c, true
		return s
	}
	file := func(cert, key string) string {
		return "tenants:\n  - domain: a.example\n    origin: http://127.0.0.1:8081\n    origin_client_cert: |\n" + indent(cert, 6) + "    origin_client_key: " + key + "\n"
	}
	keyBlock := func(k string) string { return "|\n" + indent(k, 6) }

	// Same certificate, key kept or given again: nothing to do.
	for _, k := range []string{keepKey, keyBlock(key)} {
		if p := planOf(t, mustParse(t, file(cert, k)), states(withCert(cert)), false); len(p.Changes) != 0 {
			t.Errorf("key %.20q: plan = %q, want no changes", k, summary(p))
		}
	}
	// A new certificate sends the new key.
	p := planOf(t, mustParse(t, file(cert2, keyBlock(key2))), states(withCert(cert)), false)
	if summary(p) != "update a.example origin_client_cert origin_client_key" || p.Changes[0].patch.GetOriginClientKeyPem() != key2 {
		t.Errorf("plan = %q", summary(p))
	}
	// A new certificate with "<unchanged>" cannot work.
	_, err := computePlan(mustParse(t, file(cert2, keepKey)), states(withCert(cert)), false)
	wantErr(t, err, "tenants.yaml:2:", "the certificate changes")
	// Nor can "<unchanged>" for a tenant that does not exist yet.
	_, err = computePlan(mustParse(t, file(cert, keepKey)), nil, false)
	wantErr(t, err, "does not exist yet")
	// No certificate in the file clears both.
	p = planOf(t, mustParse(t, sampleFile)[:1], states(withCert(cert)), false)
	if pt := p.Changes[0].patch; pt.OriginClientCertPem == nil || pt.OriginClientKeyPem == nil || pt.GetOriginClientKeyPem() != "" {
		t.Errorf("patch = %v", pt)
	}
}

func TestPlanAliasOwnedByTenantNotInFile(t *testing.T) {
	desired := mustParse(t, "tenants:\n  - domain: a.example\n    aliases: [www.c.example]\n    origin: http://127.0.0.1:8081\n")
	current := states(stored("c.example", 4, "www.c.example"))
	_, err := computePlan(desired, current, false)
	wantErr(t, err, "tenants.yaml:2: alias www.c.example of a.example belongs to tenant c.example, which is not in the file")
	// With --prune the owner is deleted first, so the plan is fine.
	if p := planOf(t, desired, current, true); summary(p) != "create a.example origin aliases; delete c.example" {
		t.Errorf("plan = %q", summary(p))
	}
}

func TestPlanAliasSwapWritesInTwoSteps(t *testing.T) {
	desired := mustParse(t, `tenants:
  - domain: a.example
    aliases: [x.example, keep.a.example]
    origin: http://127.0.0.1:8081
  - domain: b.example
    aliases: [y.example]
    origin: http://127.0.0.1:8081
`)
	current := states(stored("a.example", 3, "keep.a.example", "y.example"), stored("b.example", 4, "x.example"))
	p := planOf(t, desired, current, false)
	if summary(p) != "update a.example aliases; update b.example aliases" {
		t.Fatalf("plan = %q", summary(p))
	}
	for _, c := range p.Changes {
		if c.later == nil {
			t.Fatalf("%s: no second write", c.Domain)
		}
	}
	// a first releases y.example (keeping keep.a.example), b releases x.example.
	if a := p.Changes[0]; strings.Join(a.patch.GetAliases(), ",") != "keep.a.example" || strings.Join(a.later.GetAliases(), ",") != "keep.a.example,x.example" {
		t.Errorf("a: first %v then %v", a.patch, a.later)
	}
	if b := p.Changes[1]; !b.patch.GetSetAliases() || len(b.patch.GetAliases()) != 0 || strings.Join(b.later.GetAliases(), ",") != "y.example" {
		t.Errorf("b: first %v then %v", b.patch, b.later)
	}
}

func TestExportRoundTrip(t *testing.T) {
	cert, _ := testkit.SelfSigned(t, "client").PEMStrings()
	// Every field set (a new one too), then the ones with a format of
	// their own made valid.
	full := &edgev1.Tenant{}
	tenantcfgtest.FillMessage(full)
	full.Domain, full.Aliases = "b.example", []string{"a.b.example", "www.b.example"}
	full.Origin.Url, full.Origin.Tls.CaPem, full.Origin.Tls.ClientCertPem = "https://origin.b.example", cert, cert
	full.Origin.Tls.ClientKeyPem = "" // reads never carry the key
	full.License.Status = "suspended"
	full.License.ExpiresAt = timestamppb.New(time.Date(2027, 1, 31, 12, 0, 0, 5, time.UTC))
	full.Cache.DefaultTtlSeconds, full.Cache.StaleIfErrorSeconds, full.Cache.StaleWhileRevalidateSeconds = 5430, 7200, 90
	full.Transform = `{"inject":[{"at":"head-end","html":"<b>yes</b>"}],"languages":[{"code":"fr","dictionary":{"1":"un","true":"false","x":"null"},"path_prefix":"/fr/"}]}`
	// Everything the cluster says about a tenant reaches the state apply
	// compares, but what only the cluster sets.
	if unset := tenantcfgtest.Unset(stateFromProto(full), "ClientKeyPEM", "KeepKey", "TransformText", "Where"); len(unset) > 0 {
		t.Fatalf("stateFromProto drops %v", unset)
	}
	current := []*edgev1.Tenant{stored("a.example", 3), full}

	for _, output := range []string{"yaml", "json"} {
		t.Run(output, func(t *testing.T) {
			var out bytes.Buffer
			g := &globals{output: output, stdout: &out}
			if err := g.writeExport(current, 9); err != nil {
				t.Fatal(err)
			}
			desired, err := parseString(t, "export", out.String())
			if err != nil {
				t.Fatalf("export does not parse back: %v\n%s", err, out.String())
			}
			if p := planOf(t, desired, states(current...), true); len(p.Changes) != 0 {
				t.Fatalf("round trip plan = %q\n%s", summary(p), out.String())
			}
			if strings.Contains(out.String(), "PRIVATE KEY") || !strings.Contains(out.String(), keepKey) {
				t.Fatalf("export secrets:\n%s", out.String())
			}
		})
	}
}

func TestPlanTable(t *testing.T) {
	desired := mustParse(t, sampleFile)
	b := stored("b.example", 7)
	p := planOf(t, desired, states(b, stored("c.example", 9)), true)
	p.Index = 12
	var out bytes.Buffer
	p.writeTable(&out, true)
	got := out.String()
	for _, line := range []string{
		"+ a.example\n",
		"    + origin  http://127.0.0.1:8081\n",
		"~ b.example (index 7)\n",
		"    ~ origin   http://127.0.0.1:8081 -> https://origin.b.example\n",
		"    ~ aliases  [] -> [www.b.example]\n",
		"- c.example (index 9)\n",
		"dry run: 1 to create, 1 to update, 1 to delete; nothing written (index 12)\n",
	} {
		if !strings.Contains(tabbed(got), line) {
			t.Errorf("table lacks %q:\n%s", line, tabbed(got))
		}
	}
	out.Reset()
	(&plan{Changes: []change{}, Index: 3}).writeTable(&out, false)
	if out.String() != "no changes: the cluster matches the file (index 3)\n" {
		t.Errorf("empty plan = %q", out.String())
	}
}

// tabbed aligns like the tabwriter g.print uses.
func tabbed(s string) string {
	var out bytes.Buffer
	g := &globals{output: "table", stdout: &out}
	_ = g.print(nil, func(w io.Writer) { _, _ = w.Write([]byte(s)) })
	return out.String()
}

func TestDiffExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("tenants:\n  - domain: a.example\n    colour: red\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(sampleFile), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"diff"}, 2, "-f FILE is required"},
		{[]string{"diff", "-f", bad}, 2, `bad.yaml:3: unknown field "colour"`},
		{[]string{"diff", "-f", filepath.Join(dir, "missing.yaml")}, 2, "missing.yaml"},
		{[]string{"--server", "127.0.0.1:1", "--timeout", "2s", "diff", "-f", good}, 2, "cannot reach"},
		{[]string{"apply", "-f", bad}, 1, `unknown field "colour"`},
		{[]string{"apply", "--bogus"}, 2, "unknown flag"},
	} {
		var stdout, stderr bytes.Buffer
		code := Execute(context.Background(), tc.args, &stdout, &stderr, getenv)
		if code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("edgectl %v: exit %d (%q), want %d with %q", tc.args, code, stderr.String(), tc.code, tc.msg)
		}
	}
}

func TestFormatTTL(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 90 * time.Second: "1m30s", 5 * time.Minute: "5m", 5430 * time.Second: "1h30m30s", 2 * time.Hour: "2h"} {
		if got := formatTTL(d); got != want {
			t.Errorf("formatTTL(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(formatTTL(d)); err != nil || back != d {
			t.Errorf("formatTTL(%v) does not parse back: %v %v", d, back, err)
		}
	}
}

func FuzzParseDesired(f *testing.F) {
	f.Add([]byte(sampleFile))
	f.Add([]byte("tenants: []\n---\ntenants:\n  - domain: a.example\n    origin: http://x.example\n    transform: {rewrite_links: true}\n"))
	f.Add([]byte("tenants:\n\t- x\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := parseDesired([]source{{Name: "f.yaml", Dir: t.TempDir(), Data: data}})
		if err != nil {
			return
		}
		// Whatever parses yields a plan against an empty cluster.
		if _, err := computePlan(ts, nil, false); err != nil && !strings.Contains(err.Error(), keepKey) {
			t.Fatalf("plan: %v", err)
		}
	})
}
