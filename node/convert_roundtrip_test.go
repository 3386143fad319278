package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/cli"
	"github.com/edgeproxy/edge/raftstore"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
	"github.com/edgeproxy/edge/raftstore/tenantcfg/tenantcfgtest"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// inputOnly are the API fields a read never fills: the client key goes
// into the cluster and never comes out (reads say client_key_set).
var inputOnly = []string{"origin.tls.client_key_pem"}

// TestConvertCarriesEveryTenantField: a tenant with every setting set
// fills every field of its API message (but the input-only key), and the
// message converts back to the same tenant. A model field or a proto
// field that convert.go forgets fails here by name.
func TestConvertCarriesEveryTenantField(t *testing.T) {
	m := tenantcfgtest.Tenant(t)
	now := m.License.ExpiresAt.Add(time.Hour) // so "expired" is set too
	p := tenantToProto(m, now)
	if unset := tenantcfgtest.UnsetFields(p, inputOnly...); len(unset) > 0 {
		t.Errorf("tenantToProto leaves %v unset", unset)
	}
	if p.GetOrigin().GetTls().GetClientKeyPem() != "" {
		t.Error("tenantToProto returns the client key")
	}
	in := proto.Clone(p).(*edgev1.Tenant)
	in.Origin.Tls.ClientKeyPem = m.Origin.TLS.ClientKeyPEM // what an add request carries
	if diff := tenantcfgtest.Diff(m, tenantFromProto(in)); len(diff) > 0 {
		t.Errorf("model → proto → model changed %v", diff)
	}
}

// TestPatchCarriesEveryTenantField: a patch with every field set reaches
// every setting of the tenant, so each setting can be changed by `tenant
// update` and by apply, and none is read from the wrong field.
func TestPatchCarriesEveryTenantField(t *testing.T) {
	pp := &edgev1.TenantPatch{}
	tenantcfgtest.FillMessage(pp)
	pp.ClearExpires = false // it would undo expires_at; checked below
	p := patchFromProto(pp)
	if unset := tenantcfgtest.Unset(&p, "ClearExpires"); len(unset) > 0 {
		t.Errorf("patchFromProto leaves %v unset", unset)
	}
	got := tenantcfg.ApplyPatch(&tenantcfg.Tenant{Domain: tenantcfgtest.Domain}, &p)
	if unset := tenantcfgtest.Unset(got, tenantcfgtest.ServerOwned...); len(unset) > 0 {
		t.Errorf("no patch field sets %v", unset)
	}
	if got.Origin.TLS.ClientKeyPEM != pp.GetOriginClientKeyPem() || got.Cache.StaleIfError != time.Duration(pp.GetCacheStaleIfErrorSeconds())*time.Second ||
		got.Cache.StaleWhileRevalidate != time.Duration(pp.GetCacheStaleWhileRevalidateSeconds())*time.Second {
		t.Errorf("patched tenant = %+v", got)
	}
	clear := patchFromProto(&edgev1.TenantPatch{ClearExpires: true})
	if got = tenantcfg.ApplyPatch(got, &clear); !got.License.ExpiresAt.IsZero() {
		t.Errorf("clear_expires left %v", got.License.ExpiresAt)
	}
}

// TestTenantSettingsSurviveExportAndApply walks a tenant with every
// setting set through the whole GitOps loop on a real node: added over
// the API, exported by edgectl, applied back by edgectl over a bare
// tenant (the update path) and into an empty cluster (the create path).
// Each time the stored tenant must equal the original in every field but
// the ones the cluster owns (times, indexes), so a setting that any of
// model, proto, convert.go, the apply file, export, diff or apply drops
// fails here.
func TestTenantSettingsSurviveExportAndApply(t *testing.T) {
	cfg := testConfig(t, "solo")
	cfg.BootstrapExpect = 1
	n := startNode(t, cfg)
	testkit.Eventually(t, 5*time.Second, "leader", func() bool { return n.store.IsLeader() })
	// Settings of protocol level 2 (early_hints) are refused until the
	// node's member record says it runs that level.
	testkit.Eventually(t, 5*time.Second, "member record at this build's level", func() bool {
		m, ok := n.store.View().Member("solo")
		return ok && m.ProtocolLevel() == raftstore.Protocol
	})
	ctx := authCtx(testToken)
	api := edgev1.NewTenantServiceClient(dial(t, n.AdminAddr(), testToken))
	dir := t.TempDir()

	m := tenantcfgtest.Tenant(t)
	key := m.Origin.TLS.ClientKeyPEM
	check := func(stage string) {
		t.Helper()
		got := n.store.View().Tenant(m.Domain)
		if got == nil {
			t.Fatalf("%s: tenant %s not stored", stage, m.Domain)
		}
		if diff := tenantcfgtest.Diff(m, got); len(diff) > 0 {
			t.Fatalf("%s: stored tenant differs from the original in %v", stage, diff)
		}
	}
	ctl := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		args = append([]string{"--server", n.AdminAddr(), "--token", testToken}, args...)
		if code := cli.Execute(context.Background(), args, &out, &errb, func(string) string { return "" }); code != 0 {
			t.Fatalf("edgectl %s: exit %d: %s%s", strings.Join(args[4:], " "), code, errb.String(), out.String())
		}
		return out.String()
	}
	remove := func() {
		t.Helper()
		if _, err := api.Remove(ctx, &edgev1.TenantRef{Domain: m.Domain}); err != nil {
			t.Fatal(err)
		}
	}

	add := tenantToProto(m, time.Now())
	add.Origin.Tls.ClientKeyPem = key
	if _, err := api.Add(ctx, &edgev1.AddTenantRequest{Tenant: add}); err != nil {
		t.Fatalf("add: %v", err)
	}
	check("add over the API")

	exported := ctl("export")
	file := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(file, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl("diff", "-f", file) // exit 0: the export matches the cluster

	// Update path: the same domain with only what the key needs (its
	// certificate), everything else at its zero value.
	remove()
	bare := &edgev1.Tenant{Domain: m.Domain, Origin: &edgev1.Origin{Url: "http://127.0.0.1:9", Tls: &edgev1.OriginTLS{
		ClientCertPem: m.Origin.TLS.ClientCertPEM, ClientKeyPem: key}}}
	if _, err := api.Add(ctx, &edgev1.AddTenantRequest{Tenant: bare}); err != nil {
		t.Fatalf("add bare: %v", err)
	}
	ctl("apply", "-f", file)
	check("apply over a bare tenant")

	// Create path: the key is not in the export (it never leaves the
	// cluster), so the file names it the way a user would.
	remove()
	const marker = `origin_client_key: <unchanged>`
	if strings.Count(exported, marker) != 1 {
		t.Fatalf("export does not mark the kept client key once:\n%s", exported)
	}
	keyFile := filepath.Join(dir, "client.key")
	if err := os.WriteFile(keyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(exported, marker, "origin_client_key_file: "+keyFile, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl("apply", "-f", file)
	check("apply into an empty cluster")
}
