package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// applier feeds commands to an FSM as raft would.
type applier struct {
	t     testing.TB
	f     *fsm
	index uint64
}

func newApplier(t testing.TB) *applier { return &applier{t: t, f: newFSM(nil, nil)} }

func (a *applier) log(typ CommandType, rid string, payload any) *raft.Log {
	a.t.Helper()
	cmd, err := NewCommand(typ, rid, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), payload)
	if err != nil {
		a.t.Fatal(err)
	}
	b, err := cmd.Encode()
	if err != nil {
		a.t.Fatal(err)
	}
	a.index++
	return &raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: b}
}

func (a *applier) apply(typ CommandType, rid string, payload any) *Result {
	a.t.Helper()
	return a.f.Apply(a.log(typ, rid, payload)).(*Result)
}

func tenant(domain string, aliases ...string) *tenantcfg.Tenant {
	return &tenantcfg.Tenant{Domain: domain, Aliases: aliases, License: tenantcfg.License{Status: tenantcfg.LicenseActive}, Origin: tenantcfg.Origin{URL: "http://127.0.0.1:9"}}
}

func TestFSMTenantLifecycle(t *testing.T) {
	a := newApplier(t)
	r := a.apply(CmdTenantAdd, "", tenant("shop.example", "www.shop.example"))
	if r.Err != nil || r.Tenant.Index != 1 {
		t.Fatalf("add: %+v", r)
	}
	v1 := a.f.view.Load()
	for _, h := range []string{"shop.example", "www.shop.example"} {
		if got := v1.Lookup(h); got == nil || got.Domain != "shop.example" {
			t.Fatalf("Lookup(%s) = %v", h, got)
		}
	}
	if got := v1.Lookup("other.example"); got != nil {
		t.Fatalf("Lookup(unknown) = %v", got)
	}

	// Aliases owned by another tenant are rejected, and change nothing.
	r = a.apply(CmdTenantAdd, "", tenant("blog.example", "www.shop.example"))
	if !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("conflicting alias: err = %v", r.Err)
	}
	if a.f.view.Load().Lookup("blog.example") != nil {
		t.Fatal("rejected add left blog.example behind")
	}
	r = a.apply(CmdTenantAdd, "", tenant("www.shop.example"))
	if !errors.Is(r.Err, ErrConflict) {
		t.Fatalf("alias as new tenant: err = %v", r.Err)
	}
	r = a.apply(CmdTenantAdd, "", tenant("shop.example"))
	if !errors.Is(r.Err, ErrAlreadyExists) {
		t.Fatalf("duplicate add: err = %v", r.Err)
	}

	// Update replaces aliases and keeps the old view intact.
	aliases := []string{"m.shop.example"}
	susp := true
	r = a.apply(CmdTenantUpdate, "", TenantUpdate{Domain: "shop.example", Patch: tenantcfg.Patch{Aliases: &aliases, Suspended: &susp}})
	if r.Err != nil {
		t.Fatalf("update: %v", r.Err)
	}
	v2 := a.f.view.Load()
	if v2.Lookup("www.shop.example") != nil || v2.Lookup("m.shop.example") == nil {
		t.Fatal("update did not move aliases")
	}
	if v2.Lookup("shop.example").License.Active(time.Now()) {
		t.Fatal("suspended tenant is active")
	}
	if v1.Lookup("www.shop.example") == nil || !v1.Lookup("shop.example").License.Active(time.Now()) {
		t.Fatal("an applied update changed an already published view")
	}

	// Optimistic concurrency.
	r = a.apply(CmdTenantUpdate, "", TenantUpdate{Domain: "shop.example", ExpectIndex: 1, Patch: tenantcfg.Patch{Suspended: &susp}})
	if !errors.Is(r.Err, ErrStaleIndex) {
		t.Fatalf("stale expect_index: err = %v", r.Err)
	}

	r = a.apply(CmdTenantRemove, "", DomainRef{Domain: "shop.example"})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if v := a.f.view.Load(); v.Lookup("shop.example") != nil || v.Lookup("m.shop.example") != nil || v.Len() != 0 {
		t.Fatal("remove left hosts behind")
	}
	if r = a.apply(CmdTenantRemove, "", DomainRef{Domain: "shop.example"}); !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("second remove: err = %v", r.Err)
	}
}

func TestFSMRetriedCommandAppliesOnce(t *testing.T) {
	a := newApplier(t)
	first := a.apply(CmdTenantAdd, "req-1", tenant("shop.example"))
	again := a.apply(CmdTenantAdd, "req-1", tenant("shop.example"))
	if first.Err != nil || again.Err != nil || again.Index != first.Index {
		t.Fatalf("retry: first=%+v again=%+v, want the first result twice", first, again)
	}
	other := a.apply(CmdTenantAdd, "req-2", tenant("shop.example"))
	if !errors.Is(other.Err, ErrAlreadyExists) {
		t.Fatalf("a different request must not be deduplicated: %v", other.Err)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	a := newApplier(t)
	for i := 0; i < 500; i++ {
		a.apply(CmdTenantAdd, fmt.Sprintf("r%d", i), tenant(fmt.Sprintf("t%d.example", i), fmt.Sprintf("www.t%d.example", i)))
	}
	a.apply(CmdMemberPut, "", Member{ID: "n1", RaftAddr: "a:1", AdminAddr: "a:2", Protocol: 7})
	a.apply(CmdMemberPut, "", Member{ID: "n0", RaftAddr: "b:1", AdminAddr: "b:2"}) // recorded before levels
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	b := newFSM(nil, nil)
	if err := b.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	v := b.view.Load()
	if v.Len() != 500 || v.Index() != a.index {
		t.Fatalf("restored %d tenants at index %d, want 500 at %d", v.Len(), v.Index(), a.index)
	}
	if got := v.Lookup("www.t42.example"); got == nil || got.Domain != "t42.example" {
		t.Fatalf("restored alias lookup = %v", got)
	}
	if m, ok := v.Member("n1"); !ok || m.AdminAddr != "a:2" || m.ProtocolLevel() != 7 {
		t.Fatalf("restored member = %+v %v, want admin a:2 at protocol 7", m, ok)
	}
	if m, ok := v.Member("n0"); !ok || m.ProtocolLevel() != BaseProtocol {
		t.Fatalf("restored member without a level = %+v %v, want protocol %d", m, ok, BaseProtocol)
	}
	// The dedupe table survives too: a retry after restore is not re-applied.
	r, ok := b.dedupe.get("r7")
	if !ok || r.Tenant == nil || r.Tenant.Domain != "t7.example" {
		t.Fatalf("dedupe entry after restore = %+v %v", r, ok)
	}

	// A truncated snapshot fails loudly instead of restoring half a state.
	c := newFSM(nil, nil)
	if err := c.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()[:buf.Len()/2]))); err == nil {
		t.Fatal("truncated snapshot restored without error")
	}
	if c.view.Load().Len() != 0 {
		t.Fatal("failed restore changed the state")
	}
}

// badEntries are log entries no replica can decode: garbage bytes, an
// unknown command type (as a newer build would propose it), and a known
// type whose payload does not parse.
func badEntries() map[string][]byte {
	return map[string][]byte{
		"garbage":        []byte("{garbage"),
		"unknown type":   []byte(`{"v":1,"t":999,"rid":"from-the-future","ts":"2026-01-02T03:04:05Z","p":{"domain":"x.example"}}`),
		"bad payload":    []byte(`{"v":1,"t":1,"rid":"bad-payload","ts":"2026-01-02T03:04:05Z","p":[1,2,3]}`),
		"no payload":     []byte(`{"v":1,"t":1,"rid":"no-payload","ts":"2026-01-02T03:04:05Z"}`),
		"newer envelope": []byte(`{"v":2,"t":1,"ts":"2026-01-02T03:04:05Z","p":{}}`),
	}
}

// An entry that cannot be decoded is applied as a rejected no-op: the
// proposer gets ErrRejectedEntry, the state is unchanged but for the
// index, and the next entries apply normally. (It used to panic, and a
// restarted node replayed it and panicked again, forever.)
func TestUndecodableEntryIsRejectedNoOp(t *testing.T) {
	for name, data := range badEntries() {
		t.Run(name, func(t *testing.T) {
			a := newApplier(t)
			a.apply(CmdTenantAdd, "", tenant("shop.example"))
			before := a.f.view.Load()
			a.index++
			r, ok := a.f.Apply(&raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: data}).(*Result)
			if !ok || !errors.Is(r.Err, ErrRejectedEntry) || r.Index != a.index {
				t.Fatalf("result = %+v, want ErrRejectedEntry at index %d", r, a.index)
			}
			if got := a.f.rejected.Load(); got != 1 {
				t.Fatalf("rejected count = %d, want 1", got)
			}
			v := a.f.view.Load()
			if v.Index() != a.index || v.Len() != before.Len() || len(v.History("", 0)) != len(before.History("", 0)) {
				t.Fatalf("view after rejection: index %d, %d tenants, %d history; want index %d and nothing else changed",
					v.Index(), v.Len(), len(v.History("", 0)), a.index)
			}
			if r := a.apply(CmdTenantAdd, "", tenant("blog.example")); r.Err != nil || a.f.view.Load().Lookup("blog.example") == nil {
				t.Fatalf("the next entry did not apply: %+v", r)
			}
		})
	}
}

// TestSnapshotWhileApplying: Snapshot is also called off raft's FSM
// goroutine (backups, edgectl snapshot save). Taken while batches are
// applied, each snapshot is one moment of the state: as many remembered
// request IDs as tenants, when every command added one tenant under its
// own ID. Under the race detector, this is also the check that reading
// the request IDs does not race the applies.
func TestSnapshotWhileApplying(t *testing.T) {
	a := newApplier(t)
	const n = 600
	logs := make([]*raft.Log, n)
	for i := range logs {
		logs[i] = a.log(CmdTenantAdd, fmt.Sprintf("req-%d", i), tenant(fmt.Sprintf("t%d.example", i)))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i += 3 {
			a.f.ApplyBatch(logs[i : i+3])
		}
	}()
	snaps := 0
	for finished := false; !finished; snaps++ {
		select {
		case <-done:
			finished = true
		default:
		}
		s, err := a.f.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		fs := s.(*fsmSnapshot)
		if got, want := len(fs.requests), fs.view.tenants; got != want {
			t.Fatalf("snapshot %d: %d request IDs, %d tenants: not one moment", snaps, got, want)
		}
		if err := fs.writeTo(io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	if v := a.f.view.Load(); v.tenants != n {
		t.Fatalf("%d tenants after the applies, want %d", v.tenants, n)
	}
}
