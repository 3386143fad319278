package raftstore

import (
	"encoding/base64"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// The scale tests load a million synthetic tenants (issue 20). They take a
// minute and ~3 GiB, so they run only with EDGE_SCALE=1:
//
//	EDGE_SCALE=1 go test -run TestScale -count 1 -v ./raftstore
//	EDGE_SCALE=1 go test -run '^$' -bench 1M -benchtime 2000000x -count 1 ./raftstore
//
// EDGE_SCALE_N overrides the tenant count (default 1,000,000).

// scaleTenants is the tenant count of the scale tests, or 0 when they are off.
func scaleTenants(tb testing.TB) int {
	tb.Helper()
	if os.Getenv("EDGE_SCALE") == "" {
		tb.Skip("scale test: set EDGE_SCALE=1 to load 1M tenants (~1 min, ~3 GiB)")
	}
	if s := os.Getenv("EDGE_SCALE_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			tb.Fatalf("EDGE_SCALE_N: %v", err)
		}
		return n
	}
	return 1_000_000
}

var (
	synthTLDs  = []string{"com", "net", "io", "shop", "co.uk", "com.br", "de", "example"}
	synthPlans = []string{"free", "pro", "business", "enterprise"}
	synthCDNs  = []string{"origin.example-cloud.net", "lb.hosting-provider.com", "backend.internal.example"}
)

// synthTenant returns tenant i of a deterministic synthetic population with
// realistic field sizes: a 20–40 character domain, an origin URL, a
// license with a plan (half with an expiry), a cache policy on half; 10%
// have 1–3 aliases and 1% a ~2 KB CA bundle. The same i always gives the
// same tenant, so a test can regenerate hosts instead of keeping them.
func synthTenant(i int) *tenantcfg.Tenant {
	r := rand.New(rand.NewPCG(uint64(i), 0x20_1))
	label := func(n int) string {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte('a' + r.IntN(26))
		}
		return string(b)
	}
	id := strconv.FormatInt(int64(i), 36)
	tld := synthTLDs[r.IntN(len(synthTLDs))]
	// label-id.tld: pad the label so the domain is 20–40 characters.
	want := 20 + r.IntN(21)
	n := want - len(id) - len(tld) - 2
	if n < 3 {
		n = 3
	}
	domain := label(n) + "-" + id + "." + tld
	t := &tenantcfg.Tenant{
		Domain: domain,
		License: tenantcfg.License{
			Status: tenantcfg.LicenseActive,
			Plan:   synthPlans[r.IntN(len(synthPlans))],
		},
		Origin: tenantcfg.Origin{URL: "https://" + id + "." + synthCDNs[r.IntN(len(synthCDNs))] + ":8443"},
	}
	if r.IntN(2) == 0 {
		t.License.ExpiresAt = time.Date(2027, time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
	}
	if r.IntN(2) == 0 {
		t.Cache.DefaultTTL = time.Duration(60+r.IntN(3600)) * time.Second
	}
	if r.IntN(10) < 3 {
		t.Origin.HostHeader = domain
	}
	if r.IntN(10) == 0 {
		for k := 1 + r.IntN(3); k > 0; k-- {
			t.Aliases = append(t.Aliases, label(3+r.IntN(6))+"."+domain)
		}
	}
	if r.IntN(100) == 0 {
		t.Origin.TLS.ServerName = "origin." + domain
		t.Origin.TLS.CAPEM = synthPEM(r)
	}
	return t
}

// synthPEM is a ~2 KB CA bundle-shaped PEM block of random bytes.
func synthPEM(r *rand.Rand) string {
	raw := make([]byte, 1400+r.IntN(200))
	for j := range raw {
		raw[j] = byte(r.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var sb strings.Builder
	sb.WriteString("-----BEGIN CERTIFICATE-----\n")
	for len(enc) > 64 {
		sb.WriteString(enc[:64])
		sb.WriteByte('\n')
		enc = enc[64:]
	}
	sb.WriteString(enc)
	sb.WriteString("\n-----END CERTIFICATE-----\n")
	return sb.String()
}

// loadSynth applies n synthetic tenants to a fresh FSM through real
// tenant.add log entries, in batches of 1024 as raft delivers them.
func loadSynth(tb testing.TB, n int) *fsm {
	tb.Helper()
	a := newApplier(tb)
	const batch = 1024
	logs := make([]*raft.Log, 0, batch)
	for i := 0; i < n; i++ {
		logs = append(logs, a.log(CmdTenantAdd, "", synthTenant(i)))
		if len(logs) == batch || i == n-1 {
			for j, r := range a.f.ApplyBatch(logs) {
				if r.(*Result).Err != nil {
					tb.Fatalf("add %d: %v", i-len(logs)+1+j, r.(*Result).Err)
				}
			}
			logs = logs[:0]
		}
	}
	if got := a.f.view.Load().Len(); got != n {
		tb.Fatalf("loaded %d tenants, want %d", got, n)
	}
	return a.f
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// rss is the process's resident set from /proc, or 0 off Linux.
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

const mib = 1 << 20

// copiedByWrite counts the shards a new View does not share with the old
// one, and the entries in them: what one write copied.
func copiedByWrite[V any](old, cur *table[V]) (shards, entries int) {
	for i := range cur.shards {
		if reflect.ValueOf(old.shards[i]).UnsafePointer() != reflect.ValueOf(cur.shards[i]).UnsafePointer() {
			shards++
			entries += len(cur.shards[i])
		}
	}
	return shards, entries
}

// TestScale measures the replicated state at a million tenants: memory,
// lookups, a single write, snapshot and restore, and a new node's join.
// Numbers go to the test log; targets that fail fail the test.
func TestScale(t *testing.T) {
	n := scaleTenants(t)
	base := heapInUse()
	start := time.Now()
	f := loadSynth(t, n)
	load := time.Since(start)
	v := f.view.Load()
	hosts := 0
	for i := range v.hosts.shards {
		hosts += len(v.hosts.shards[i])
	}
	state := heapInUse() - base
	t.Logf("load: %d tenants, %d hosts, %v through FSM applies (%.0f/s)", n, hosts, load.Round(time.Millisecond), float64(n)/load.Seconds())
	t.Logf("state: heap %d MiB (%d B/tenant), process RSS %d MiB", state/mib, state/uint64(n), rss()/mib)
	if state > 1<<30 {
		t.Errorf("state is %d MiB, target < 1024 MiB", state/mib)
	}

	// Lookups, hit and miss.
	hit := testing.Benchmark(func(b *testing.B) { benchLookup(b, f, n, true) })
	miss := testing.Benchmark(func(b *testing.B) { benchLookup(b, f, n, false) })
	t.Logf("Lookup hit:  %d ns/op, %d allocs/op", hit.NsPerOp(), hit.AllocsPerOp())
	t.Logf("Lookup miss: %d ns/op, %d allocs/op", miss.NsPerOp(), miss.AllocsPerOp())
	if hit.AllocsPerOp() != 0 || miss.AllocsPerOp() != 0 {
		t.Errorf("Lookup allocates")
	}

	// One tenant change with n present: latency and what the View copies.
	a := &applier{t: t, f: f, index: v.Index()}
	var lat []time.Duration
	var cs, ce int
	for k := 0; k < 50; k++ {
		plan := synthPlans[k%len(synthPlans)]
		aliases := []string{"www." + synthTenant(k*997).Domain}
		l := a.log(CmdTenantUpdate, "", TenantUpdate{Domain: synthTenant(k * 997).Domain, Patch: tenantcfg.Patch{Plan: &plan, Aliases: &aliases}})
		old := f.view.Load()
		t0 := time.Now()
		r := f.ApplyBatch([]*raft.Log{l})[0].(*Result)
		lat = append(lat, time.Since(t0))
		if r.Err != nil {
			t.Fatalf("update: %v", r.Err)
		}
		s, e := copiedByWrite(old.hosts, f.view.Load().hosts)
		cs, ce = max(cs, s), max(ce, e)
	}
	p50, p99 := percentiles(lat)
	t.Logf("single tenant.update with %d present: p50 %v, max %v; copies at most %d of %d shards, %d host entries", n, p50, p99, cs, shardCount, ce)

	// Snapshot (Persist into a file, as raft's file store does) and restore.
	dir := t.TempDir()
	path := filepath.Join(dir, "state.snap")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.(*fsmSnapshot).writeTo(out); err != nil {
		t.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		t.Fatal(err)
	}
	persist := time.Since(t0)
	out.Close()
	st, _ := os.Stat(path)
	t.Logf("snapshot: %v, %d MiB (%d B/tenant)", persist.Round(time.Millisecond), st.Size()/mib, st.Size()/int64(n))

	want := f.view.Load()
	wantIndex, wantLen := want.Index(), want.Len()
	probe := synthTenant(n / 2).Domain
	snap, f, v, want = nil, nil, nil, nil // only one copy of the state at a time
	heapInUse()

	g := newFSM(nil, nil)
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if err := g.Restore(in); err != nil {
		t.Fatal(err)
	}
	restore := time.Since(t0)
	gv := g.view.Load()
	if gv.Index() != wantIndex || gv.Len() != wantLen || gv.Lookup(probe) == nil {
		t.Fatalf("restored index %d len %d, want %d %d", gv.Index(), gv.Len(), wantIndex, wantLen)
	}
	t.Logf("restore: %v (%.0f MB/s)", restore.Round(time.Millisecond), float64(st.Size())/1e6/restore.Seconds())
	if persist > 5*time.Second || restore > 5*time.Second {
		t.Errorf("snapshot %v / restore %v, target < 5 s each", persist, restore)
	}
	gv, g = nil, nil
	heapInUse()

	if os.Getenv("EDGE_SCALE_JOIN") != "" || testing.Verbose() {
		scaleJoin(t, path, st.Size(), wantLen, probe)
	}
}

// scaleJoin installs the snapshot on a one-node cluster (as edgectl
// snapshot restore does), then adds a second node and times it from
// AddVoter to serving: raft ships the snapshot over loopback TLS and the
// new node restores it.
func scaleJoin(t *testing.T, path string, size int64, want int, probe string) {
	a := openStore(t, "a", t.TempDir())
	defer a.Close()
	if err := a.Bootstrap([]raft.Server{{ID: "a", Address: raft.ServerAddress(a.Addr())}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, a.IsLeader)
	t0 := time.Now()
	if _, err := a.Restore(func() (io.ReadCloser, error) { return os.Open(path) }, size); err != nil {
		t.Fatal(err)
	}
	t.Logf("leader: edgectl-style restore (check + install) %v", time.Since(t0).Round(time.Millisecond))
	if a.View().Len() != want {
		t.Fatalf("leader holds %d tenants, want %d", a.View().Len(), want)
	}
	b := openStore(t, "b", t.TempDir())
	defer b.Close()
	t0 = time.Now()
	if err := a.Raft().AddVoter("b", raft.ServerAddress(b.Addr()), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, func() bool { return b.Lookup(probe) != nil })
	t.Logf("join: AddVoter to serving on the new node %v (snapshot install over loopback TLS); state heap with both nodes %d MiB",
		time.Since(t0).Round(time.Millisecond), heapInUse()/mib)
	if b.View().Len() != want {
		t.Fatalf("new node holds %d tenants, want %d", b.View().Len(), want)
	}
}

func waitFor(t *testing.T, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not reached within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func percentiles(d []time.Duration) (p50, p100 time.Duration) {
	s := append([]time.Duration(nil), d...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2], s[len(s)-1]
}

// benchLookup looks up 4096 hosts spread over the population, all present
// (hit) or all absent (miss).
func benchLookup(b *testing.B, f *fsm, n int, hit bool) {
	hosts := make([]string, 4096)
	for i := range hosts {
		t := synthTenant((i * 7919) % n)
		hosts[i] = t.Domain
		if len(t.Aliases) > 0 && i%2 == 0 {
			hosts[i] = t.Aliases[0]
		}
		if !hit {
			hosts[i] = "x" + hosts[i]
		}
	}
	v := f.view.Load()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if (v.Lookup(hosts[i&4095]) != nil) != hit {
			b.Fatal("wrong answer")
		}
		i++
	}
}

// scaleFSM is loaded once per process for the 1M benchmarks.
var scaleFSM struct {
	f *fsm
	n int
}

func scaleState(b *testing.B) (*fsm, int) {
	n := scaleTenants(b)
	if scaleFSM.f == nil {
		scaleFSM.f, scaleFSM.n = loadSynth(b, n), n
	}
	return scaleFSM.f, scaleFSM.n
}

func BenchmarkLookup1MHit(b *testing.B) {
	f, n := scaleState(b)
	benchLookup(b, f, n, true)
}

func BenchmarkLookup1MMiss(b *testing.B) {
	f, n := scaleState(b)
	benchLookup(b, f, n, false)
}

// BenchmarkTenantUpdate1M is one tenant.update applied alone (a batch of
// one, the worst case) with 1M tenants present.
func BenchmarkTenantUpdate1M(b *testing.B) {
	f, _ := scaleState(b)
	a := &applier{t: b, f: f, index: f.view.Load().Index()}
	logs := make([]*raft.Log, 4096)
	for i := range logs {
		plan := synthPlans[i%len(synthPlans)]
		logs[i] = a.log(CmdTenantUpdate, "", TenantUpdate{Domain: synthTenant(i * 31).Domain, Patch: tenantcfg.Patch{Plan: &plan}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		l := *logs[i&4095]
		a.index++
		l.Index = a.index
		if r := f.ApplyBatch([]*raft.Log{&l})[0].(*Result); r.Err != nil {
			b.Fatal(r.Err)
		}
		i++
	}
}

func BenchmarkSnapshot1M(b *testing.B) {
	f, _ := scaleState(b)
	b.ReportAllocs()
	for b.Loop() {
		snap, _ := f.Snapshot()
		if err := snap.(*fsmSnapshot).writeTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
