package raftstore

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

var updateCompat = flag.Bool("update-compat", false,
	"rewrite testdata/compat/{log,snapshot}.jsonl from this build (only when the encoding is meant to change, which breaks old clusters)")

// compatCommands is a tenant's life with every setting set, the input the
// fixtures in testdata/compat were written from. The fixtures are frozen:
// a build that encodes these commands, or the state they lead to,
// differently cannot read an older node's log or snapshots.
func compatCommands(t *testing.T) []struct {
	typ     CommandType
	rid     string
	payload any
} {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", "compat", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cert, key := read("client.pem"), read("client.key")
	str := func(s string) *string { return &s }
	yes := func() *bool { b := true; return &b }
	secs := func(n int64) *int64 { return &n }
	expires := time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)
	aliases := []string{"m.compat.example", "www.compat.example"}
	return []struct {
		typ     CommandType
		rid     string
		payload any
	}{
		{CmdTenantAdd, "rid-add", &tenantcfg.Tenant{
			Domain: "compat.example", Aliases: []string{"www.compat.example"},
			License: tenantcfg.License{Status: tenantcfg.LicenseSuspended, Plan: "gold", ExpiresAt: expires},
			Origin: tenantcfg.Origin{URL: "https://origin.compat.example:8443", HostHeader: "origin.internal", TLS: tenantcfg.OriginTLS{
				ServerName: "sni.internal", CAPEM: cert, ClientCertPEM: cert, ClientKeyPEM: key, InsecureSkipVerify: true}},
			HTTPSRedirect: true, Metrics: true,
			Cache: tenantcfg.CachePolicy{DefaultTTL: 5 * time.Minute, OverrideTTL: true, CacheCookies: true, CacheAuthorized: true,
				StaleIfError: time.Hour, StaleWhileRevalidate: 30 * time.Second, KeepCDNCacheControl: true, ClientNoCache: true},
			Transform: `{"rewrite_links":true}`,
		}},
		{CmdTenantUpdate, "rid-update", TenantUpdate{Domain: "compat.example", ExpectIndex: 1, Patch: tenantcfg.Patch{
			OriginURL: str("https://origin2.compat.example"), Aliases: &aliases, Plan: str("platinum"),
			ExpiresAt: &expires, OriginHost: str("origin2.internal"), OriginServerName: str("sni2.internal"),
			OriginCAPEM: str(cert), OriginClientCertPEM: str(cert), OriginClientKeyPEM: str(key),
			OriginInsecureSkipVerify: yes(), Suspended: yes(), HTTPSRedirect: yes(), Metrics: yes(),
			CacheDefaultTTL: secs(600), CacheOverrideTTL: yes(), CacheCookies: yes(), CacheAuthorized: yes(),
			CacheStaleIfError: secs(7200), CacheStaleWhileRevalid: secs(45), CacheKeepCDNCacheControl: yes(),
			CacheClientNoCache: yes(), Transform: str(`{"rewrite_links":false}`),
		}}},
		{CmdTenantUpdate, "rid-clear", TenantUpdate{Domain: "compat.example", Patch: tenantcfg.Patch{ClearExpires: true}}},
		{CmdTenantAdd, "rid-second", &tenantcfg.Tenant{Domain: "second.compat.example", Origin: tenantcfg.Origin{URL: "http://127.0.0.1:9"}}},
		{CmdTenantRemove, "rid-remove", DomainRef{Domain: "second.compat.example"}},
	}
}

func snapshotBytes(t *testing.T, f *fsm) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestOldLogAndSnapshotStillRead: the log entries and the snapshot an
// earlier build wrote for a tenant with every setting set are what this
// build writes for the same commands, and this build replays and restores
// them to the same state, byte for byte. Moving or renaming the tenant
// types must not change their encoding.
func TestOldLogAndSnapshotStillRead(t *testing.T) {
	dir := filepath.Join("testdata", "compat")
	a := newApplier(t)
	var log bytes.Buffer
	for _, c := range compatCommands(t) {
		l := a.log(c.typ, c.rid, c.payload)
		if r := a.f.Apply(l).(*Result); r.Err != nil {
			t.Fatalf("%s: %v", c.typ, r.Err)
		}
		log.Write(l.Data)
		log.WriteByte('\n')
	}
	snap := snapshotBytes(t, a.f)
	if *updateCompat {
		for name, b := range map[string][]byte{"log.jsonl": log.Bytes(), "snapshot.jsonl": snap} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	oldLog, err := os.ReadFile(filepath.Join(dir, "log.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	oldSnap, err := os.ReadFile(filepath.Join(dir, "snapshot.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(log.Bytes(), oldLog) {
		t.Errorf("commands encode differently from the fixture:\n got %s\nwant %s", log.Bytes(), oldLog)
	}
	if !bytes.Equal(snap, oldSnap) {
		t.Errorf("the state snapshots differently from the fixture:\n got %s\nwant %s", snap, oldSnap)
	}

	// Replay the old log on a fresh state machine: same state.
	replay := newFSM(nil, nil)
	for i, entry := range bytes.Split(bytes.TrimSuffix(oldLog, []byte("\n")), []byte("\n")) {
		l := &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: entry}
		if r := replay.Apply(l).(*Result); r.Err != nil {
			t.Fatalf("old entry %d: %v", i+1, r.Err)
		}
	}
	if got := snapshotBytes(t, replay); !bytes.Equal(got, oldSnap) {
		t.Errorf("replaying the old log leads elsewhere:\n got %s\nwant %s", got, oldSnap)
	}

	// Restore the old snapshot: same state again.
	restored := newFSM(nil, nil)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(oldSnap))); err != nil {
		t.Fatalf("restore old snapshot: %v", err)
	}
	if got := snapshotBytes(t, restored); !bytes.Equal(got, oldSnap) {
		t.Errorf("the old snapshot restores to a different state:\n got %s\nwant %s", got, oldSnap)
	}
	if tn := restored.view.Load().Lookup("m.compat.example"); tn == nil || !tn.Metrics || !tn.Cache.ClientNoCache || tn.Origin.TLS.ClientKeyPEM == "" {
		t.Errorf("restored tenant = %+v", tn)
	}
}
