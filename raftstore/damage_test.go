package raftstore

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/hashicorp/raft"
)

// damagedDir returns the data dir of a single-node store that committed
// some tenants and a snapshot and was closed cleanly.
func damagedDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s := openStore(t, "n1", dir)
	if err := s.Bootstrap([]raft.Server{{ID: "n1", Address: raft.ServerAddress(s.Addr())}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "leadership", s.IsLeader)
	for i := 0; i < 5; i++ {
		addTenant(t, s, fmt.Sprintf("t%d.example", i))
	}
	// Two snapshots: the check reads only the newest, the one raft
	// restores.
	for _, d := range []string{"between-snapshots.example", "after-snapshot.example"} {
		if err := s.Raft().Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
		addTenant(t, s, d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestOpenRefusesDamagedState: Open returns ErrDamaged, naming the file
// and pointing to the operator's procedure, for each kind of damage the
// check looks for; a cleanly closed data dir opens.
func TestOpenRefusesDamagedState(t *testing.T) {
	// snapshotFile returns a file of the newest (last) or oldest snapshot.
	snapshotFile := func(t *testing.T, dir, name string, last bool) string {
		m, err := filepath.Glob(filepath.Join(dir, "snapshots", "*", name))
		if err != nil || len(m) != 2 {
			t.Fatalf("want 2 snapshots with %s in %s, have %v", name, dir, m)
		}
		index := func(p string) (i uint64) {
			var term, ms uint64
			fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d-%d-%d", &term, &i, &ms)
			return i
		}
		slices.SortFunc(m, func(a, b string) int { return cmp.Compare(index(a), index(b)) })
		if last {
			return m[1]
		}
		return m[0]
	}
	cases := []struct {
		name, want string
		damage     func(t *testing.T, dir string)
	}{
		{"undamaged", "", func(*testing.T, string) {}},
		{"raft.db empty", "raft.db is empty", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "raft.db"), 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"raft.db truncated mid-page", "the file was truncated", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "raft.db"), 2*4096+100); err != nil {
				t.Fatal(err)
			}
		}},
		{"older snapshot half deleted", "", func(t *testing.T, dir string) {
			// A crash while raft reaps an old snapshot leaves it so.
			if err := os.Remove(snapshotFile(t, dir, "state.bin", false)); err != nil {
				t.Fatal(err)
			}
		}},
		{"raft.db gone, snapshots kept", "raft.db is missing while snapshots/ holds 2", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "raft.db")); err != nil {
				t.Fatal(err)
			}
		}},
		{"snapshot state flipped", "does not match the checksum", func(t *testing.T, dir string) {
			p := snapshotFile(t, dir, "state.bin", true)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"snapshot meta torn", "meta.json is not valid JSON", func(t *testing.T, dir string) {
			if err := os.Truncate(snapshotFile(t, dir, "meta.json", true), 10); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := damagedDir(t)
			tc.damage(t, dir)
			s, err := Open(Config{ID: "n1", DataDir: dir, BindAddr: "127.0.0.1:0", Timings: fastTimings, RaftLogLevel: "error", PeerTLS: testPeerTLS(t)})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("a cleanly closed data dir was refused: %v", err)
				}
				defer s.Close()
				testkit.Eventually(t, 5*time.Second, "the tenant added after the snapshot", func() bool {
					return s.View().Lookup("after-snapshot.example") != nil && s.View().Lookup("t0.example") != nil
				})
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("Open accepted a data dir with %s", tc.name)
			}
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("error is not ErrDamaged: %v", err)
			}
			msg := err.Error()
			for _, want := range []string{tc.want, dir, "docs/operations.md"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q: %s", want, msg)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message is not one line: %q", msg)
			}
		})
	}
}
