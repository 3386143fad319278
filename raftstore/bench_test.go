package raftstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// bigView builds a view with n tenants (each with one alias) through real
// applies, batched the way raft delivers them.
func bigView(b testing.TB, n int) *fsm {
	a := newApplier(b)
	const batch = 1024
	logs := make([]*raft.Log, 0, batch)
	for i := 0; i < n; i++ {
		logs = append(logs, a.log(CmdTenantAdd, "", tenant(fmt.Sprintf("tenant-%d.example", i), fmt.Sprintf("www.tenant-%d.example", i))))
		if len(logs) == batch || i == n-1 {
			a.f.ApplyBatch(logs)
			logs = logs[:0]
		}
	}
	return a.f
}

func BenchmarkLookup100k(b *testing.B) {
	f := bigView(b, 100_000)
	hosts := make([]string, 4096)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("www.tenant-%d.example", (i*7919)%100_000)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if f.view.Load().Lookup(hosts[i&4095]) == nil {
			b.Fatal("miss")
		}
		i++
	}
}

func BenchmarkLookup100kParallel(b *testing.B) {
	f := bigView(b, 100_000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		h := []string{"tenant-1.example", "www.tenant-99999.example", "unknown.example"}
		for pb.Next() {
			f.view.Load().Lookup(h[i%3])
			i++
		}
	})
}

// BenchmarkApplyBatch measures FSM apply throughput at 100k tenants, in
// batches of 256 as raft delivers them under load.
func BenchmarkApplyBatch(b *testing.B) {
	f := bigView(b, 100_000)
	a := &applier{t: b, f: f, index: f.view.Load().Index()}
	b.ReportAllocs()
	b.ResetTimer()
	logs := make([]*raft.Log, 0, 256)
	for i := 0; b.Loop(); i++ {
		logs = append(logs, a.log(CmdTenantAdd, "", tenant(fmt.Sprintf("new-%d.example", i))))
		if len(logs) == 256 {
			f.ApplyBatch(logs)
			logs = logs[:0]
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
}

// BenchmarkRaftApply measures end-to-end commits on a single-node raft
// with concurrent proposers, so raft batches log writes.
func BenchmarkRaftApply(b *testing.B) {
	s, err := Open(Config{ID: "bench", DataDir: b.TempDir(), BindAddr: "127.0.0.1:0", Timings: fastTimings, RaftLogLevel: "error", PeerTLS: testPeerTLS(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Bootstrap([]raft.Server{{ID: "bench", Address: raft.ServerAddress(s.Addr())}}); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !s.IsLeader() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	ch := make(chan int)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ch {
				cmd, _ := NewCommand(CmdTenantAdd, "", time.Now(), tenant(fmt.Sprintf("r-%d.example", i)))
				if _, err := s.Apply(context.Background(), cmd); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		ch <- i
	}
	close(ch)
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
}

func BenchmarkSnapshot100k(b *testing.B) {
	f := bigView(b, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		snap, _ := f.Snapshot()
		if err := snap.(*fsmSnapshot).writeTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRestore100k(b *testing.B) {
	f := bigView(b, 100_000)
	snap, _ := f.Snapshot()
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).writeTo(&buf); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		g := newFSM(nil, nil)
		if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
			b.Fatal(err)
		}
	}
}
