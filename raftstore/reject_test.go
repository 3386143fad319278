package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/hashicorp/raft"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// logBuffer collects one store's log lines; raft and the FSM write to it
// from their own goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testCluster is n stores on loopback TCP, bootstrapped together.
type testCluster struct {
	t      *testing.T
	stores []*Store
	dirs   []string
	logs   []*logBuffer
	mut    func(*Config)
}

func (c *testCluster) config(i int, addr string) Config {
	// The library's default timings, not fastTimings: these tests count
	// entries proposed straight through raft, which cannot be retried
	// safely after a leadership change, and the test machine is shared.
	cfg := Config{ID: fmt.Sprintf("n%d", i), DataDir: c.dirs[i], BindAddr: addr, Timings: DefaultTimings(), PeerTLS: testPeerTLS(c.t),
		RaftLogLevel: "error", Logger: slog.New(slog.NewTextHandler(c.logs[i], &slog.HandlerOptions{Level: slog.LevelError}))}
	if c.mut != nil {
		c.mut(&cfg)
	}
	return cfg
}

func newTestCluster(t *testing.T, n int, mut func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, stores: make([]*Store, n), mut: mut}
	var servers []raft.Server
	for i := range c.stores {
		c.dirs = append(c.dirs, t.TempDir())
		c.logs = append(c.logs, &logBuffer{})
		s, err := Open(c.config(i, "127.0.0.1:0"))
		if err != nil {
			t.Fatal(err)
		}
		c.stores[i] = s
		servers = append(servers, raft.Server{ID: raft.ServerID(s.ID()), Address: raft.ServerAddress(s.Addr()), Suffrage: raft.Voter})
	}
	t.Cleanup(func() {
		for _, s := range c.stores {
			if s != nil {
				s.Close()
			}
		}
	})
	if err := c.stores[0].Bootstrap(servers); err != nil {
		t.Fatal(err)
	}
	// A leader that has committed a barrier of its term is settled.
	testkit.Eventually(t, 10*time.Second, "a settled leader", func() bool {
		l := leaderOf(c.stores)
		return l != nil && l.Raft().Barrier(time.Second).Error() == nil
	})
	return c
}

// restart closes store i and reopens it from its data dir on the same
// address, with a fresh log buffer.
func (c *testCluster) restart(i int) {
	c.t.Helper()
	addr := c.stores[i].Addr()
	if err := c.stores[i].Close(); err != nil {
		c.t.Fatal(err)
	}
	c.stores[i] = nil
	c.logs[i] = &logBuffer{}
	testkit.Eventually(c.t, 5*time.Second, "port "+addr, func() bool {
		s, err := Open(c.config(i, addr))
		c.stores[i] = s
		return err == nil
	})
}

// waitApplied waits until every store has applied index.
func (c *testCluster) waitApplied(index uint64) {
	c.t.Helper()
	for _, s := range c.stores {
		testkit.Eventually(c.t, 5*time.Second, fmt.Sprintf("%s to apply index %d", s.ID(), index), func() bool { return s.AppliedIndex() >= index })
	}
}

// stateOf renders what a user can read from a View, in a stable order.
func stateOf(t *testing.T, v *View) string {
	t.Helper()
	b, err := json.Marshal(struct {
		Index   uint64
		Tenants []*tenantcfg.Tenant
		Members []Member
		History []HistoryEntry
		Purges  []PurgeRecord
	}{v.Index(), v.Tenants("", 0), v.Members(), v.History("", 0), v.Purges(0)})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// One entry no replica can decode, of each kind, proposed straight
// through raft (past the leader's validation, as a bug, a newer build or
// an intruder could): no node panics, each entry is counted and logged
// with its index on every node, later writes apply everywhere, every node
// ends with the same state, and a node restarted from its data dir
// replays the entries the same way instead of crash-looping on them.
func TestClusterSurvivesUndecodableEntries(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := leaderOf(c.stores)
	addTenant(t, leader, "before.example")

	bad := badEntries()
	names := make([]string, 0, len(bad))
	for name := range bad {
		names = append(names, name)
	}
	sort.Strings(names)
	var indexes []uint64
	for _, name := range names {
		f := leader.Raft().Apply(bad[name], 5*time.Second)
		if err := f.Error(); err != nil {
			t.Fatalf("%s: raft apply: %v", name, err)
		}
		r, ok := f.Response().(*Result)
		if !ok || !errors.Is(r.Err, ErrRejectedEntry) || r.Index != f.Index() {
			t.Fatalf("%s: response %#v, want ErrRejectedEntry at index %d", name, f.Response(), f.Index())
		}
		indexes = append(indexes, f.Index())
	}
	last := addTenant(t, leader, "after.example")
	c.waitApplied(last.Index)

	check := func(when string) {
		t.Helper()
		want := stateOf(t, leader.View())
		for i, s := range c.stores {
			if got := s.RejectedEntries(); got != uint64(len(bad)) {
				t.Errorf("%s: %s counted %d rejected entries, want %d", when, s.ID(), got, len(bad))
			}
			if s.Lookup("before.example") == nil || s.Lookup("after.example") == nil {
				t.Errorf("%s: %s is missing a tenant written around the bad entries", when, s.ID())
			}
			if got := stateOf(t, s.View()); got != want {
				t.Errorf("%s: %s state differs from the leader's:\n%s\nleader:\n%s", when, s.ID(), got, want)
			}
			logs := c.logs[i].String()
			for _, idx := range indexes {
				if !strings.Contains(logs, fmt.Sprintf("raft log entry rejected: cannot decode it, applied as a no-op\" index=%d ", idx)) {
					t.Errorf("%s: %s logged no rejection naming index %d:\n%s", when, s.ID(), idx, logs)
				}
			}
		}
	}
	check("after the bad entries")

	// A follower restarted from its data dir replays the log through the
	// bad entries (no snapshot covers them) and keeps applying.
	var f int
	for i, s := range c.stores {
		if s != leader {
			f = i
			break
		}
	}
	c.restart(f)
	c.waitApplied(last.Index)
	more := addTenant(t, leader, "later.example")
	c.waitApplied(more.Index)
	check("after a follower restarted")
}

// The leader proposes a command only when every server of the raft
// configuration reports a protocol level that can apply it, and names
// the ones that do not; once the lagging member's record reports the
// level, the same command goes through. No released command needs more
// than BaseProtocol yet, so the stores run with a table in which
// cache.purge needs protocol 2.
func TestLeaderGatesCommandsOnMemberProtocol(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.commandProtocol = func(ct CommandType) int {
			if ct == CmdPurge {
				return 2
			}
			return ct.Protocol()
		}
	})
	leader := leaderOf(c.stores)
	ctx := context.Background()
	apply := func(typ CommandType, payload any) *Result {
		t.Helper()
		cmd, err := NewCommand(typ, "", time.Now(), payload)
		if err != nil {
			t.Fatal(err)
		}
		r, err := leader.Apply(ctx, cmd)
		if err != nil {
			t.Fatalf("apply %s: %v", typ, err)
		}
		return r
	}
	putMember := func(id string, protocol int) {
		t.Helper()
		if r := apply(CmdMemberPut, Member{ID: id, RaftAddr: id + ":1", Protocol: protocol}); r.Err != nil {
			t.Fatalf("member.put %s: %v", id, r.Err)
		}
	}
	purge := Purge{ID: "p1", All: true}
	refused := func(lagging ...string) {
		t.Helper()
		lastIndex := leader.Raft().LastIndex()
		r := apply(CmdPurge, purge)
		if !errors.Is(r.Err, ErrUnsupportedByCluster) || r.Index != 0 {
			t.Fatalf("purge with lagging %v: %+v, want ErrUnsupportedByCluster before the log", lagging, r)
		}
		for _, s := range c.stores {
			named := strings.Contains(r.Err.Message, s.ID()+" (protocol 1)")
			if want := contains(lagging, s.ID()); named != want {
				t.Errorf("error %q: names %s = %v, want %v", r.Err.Message, s.ID(), named, want)
			}
		}
		if got := leader.Raft().LastIndex(); got != lastIndex {
			t.Fatalf("a refused command reached the log: last index %d → %d", lastIndex, got)
		}
	}

	// No member records yet: every server counts as the base protocol.
	refused("n0", "n1", "n2")
	putMember("n0", 2)
	putMember("n1", 2)
	refused("n2")
	putMember("n2", BaseProtocol)
	refused("n2")

	// A command type the leader does not know is refused the same way.
	if r := apply(CommandType(999), DomainRef{Domain: "x.example"}); !errors.Is(r.Err, ErrUnsupportedByCluster) || r.Index != 0 {
		t.Fatalf("unknown type: %+v, want ErrUnsupportedByCluster", r)
	}

	// The lagging member reports the level (as a node does at startup
	// after an upgrade): the purge goes through and reaches every node.
	putMember("n2", 2)
	r := apply(CmdPurge, purge)
	if r.Err != nil || r.Index == 0 {
		t.Fatalf("purge once every member runs protocol 2: %+v", r)
	}
	c.waitApplied(r.Index)
	for _, s := range c.stores {
		if p := s.View().Purges(0); len(p) != 1 || p[0].ID != "p1" {
			t.Fatalf("%s: purges %+v, want p1", s.ID(), p)
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
