package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/api/edgev1"
)

// TestDamagedDataDir restarts a node on a torn or truncated raft.db, or a
// torn snapshot, and checks that it either recovers (every acknowledged
// write is there) or refuses to start with one clear line naming the file
// and what to do; never that it comes back with a shorter history as if
// nothing happened.
//
// The setup makes a shorter history observable: of three nodes A (leader),
// B and C, C is stopped and misses the last adds, which A and B
// acknowledge. Then A and B are stopped, B's data is damaged, and only B
// and C are started. They are a quorum: if B comes up with less than it
// had acknowledged, B and C elect a leader without those adds and the
// acknowledged writes are gone, which the test reports. Each case starts
// from copies of B's and C's data dirs taken before any damage.
func TestDamagedDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("fault suite: skipped with -short")
	}
	sd := seed(t)
	const n = 3
	c := startCluster(t, newLoopback(t, n), n)
	w := newWorkload(c, sd, 0)
	addAcked(t, w, 10)
	// A user restore writes a raft snapshot on the leader, and the
	// followers install it: every node then has a snapshot file.
	restoreOwnSnapshot(t, c)
	addAcked(t, w, 10)
	if m := w.waitAddsEverywhere(20 * time.Second); len(m) > 0 {
		t.Fatalf("adds missing before any damage: %v", m)
	}
	l := c.leader()
	if l < 0 {
		t.Fatal("no leader")
	}
	a, b, stale := c.nodes[l], c.nodes[(l+1)%n], c.nodes[(l+2)%n]
	c.kill(stale)
	addAcked(t, w, 10)
	c.kill(a, b)
	history := w.snapshot()
	dir := t.TempDir()
	for _, p := range []*proc{b, stale} {
		if err := copyDir(dataDirOf(p), filepath.Join(dir, p.id)); err != nil {
			t.Fatal(err)
		}
	}
	info, err := os.Stat(filepath.Join(dataDirOf(b), "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	size := info.Size()
	t.Logf("%s's raft.db: %d bytes (%d pages of 4 KiB); snapshots: %v", b.id, size, size/4096, snapshotDirs(t, dataDirOf(b)))

	type damage struct {
		name string
		file string // relative to the data dir, for the message check
		do   func(t *testing.T, dataDir string)
	}
	cases := []damage{
		{"raft.db truncated to zero", "raft.db", truncateTo(func(int64) int64 { return 0 })},
		{"raft.db cut inside its second meta page", "raft.db", truncateTo(func(int64) int64 { return 4096 + 100 })},
		{"raft.db cut mid-page among its first data pages", "raft.db", truncateTo(func(int64) int64 { return 3*4096 + 1000 })},
		// Bolt grows the file ahead of its pages in use: a cut past them
		// loses nothing.
		{"raft.db cut in half, mid-page", "raft.db", truncateTo(func(s int64) int64 { return s/2/4096*4096 + 1000 })},
		{"raft.db loses its last page and a byte", "raft.db", truncateTo(func(s int64) int64 { return s - 4096 - 1 })},
		{"raft.db's last 4 pages overwritten with garbage", "raft.db", garbleAt(func(s int64) (int64, int64) { return s - 4*4096, 4 * 4096 })},
		{"raft.db's meta pages overwritten with garbage", "raft.db", garbleAt(func(int64) (int64, int64) { return 0, 2 * 4096 })},
		{"raft.db's first data pages overwritten with garbage", "raft.db", garbleAt(func(int64) (int64, int64) { return 2 * 4096, 4 * 4096 })},
		{"raft.db deleted, snapshots kept", "raft.db", func(t *testing.T, d string) {
			if err := os.Remove(filepath.Join(d, "raft.db")); err != nil {
				t.Fatal(err)
			}
		}},
		{"newest snapshot's state torn (bytes flipped)", "state.bin", func(t *testing.T, d string) {
			garble(t, filepath.Join(newestSnapshot(t, d), "state.bin"), 10, 64)
		}},
		{"newest snapshot's state truncated", "state.bin", func(t *testing.T, d string) {
			p := filepath.Join(newestSnapshot(t, d), "state.bin")
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"newest snapshot's meta.json truncated", "meta.json", func(t *testing.T, d string) {
			p := filepath.Join(newestSnapshot(t, d), "meta.json")
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, st.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
	}
	summary := map[string]string{}
	for _, dc := range cases {
		t.Run(strings.ReplaceAll(dc.name, " ", "_"), func(t *testing.T) {
			for _, p := range []*proc{b, stale} {
				if err := os.RemoveAll(dataDirOf(p)); err != nil {
					t.Fatal(err)
				}
				if err := copyDir(filepath.Join(dir, p.id), dataDirOf(p)); err != nil {
					t.Fatal(err)
				}
			}
			dc.do(t, dataDirOf(b))
			c.start(b)
			c.start(stale)
			defer func() {
				c.kill(b, stale)
				c.exitsMu.Lock()
				c.exits = nil // b's refusal is the outcome under test, not a crash of the suite
				c.exitsMu.Unlock()
			}()
			summary[dc.name] = judgeRestart(t, c, w, history, b, stale, dc.file)
			t.Logf("%s: %s", dc.name, summary[dc.name])
		})
	}
	for _, dc := range cases {
		t.Logf("%-55s %s", dc.name, summary[dc.name])
	}

	// The untouched data dirs still make a healthy cluster with every add.
	for _, p := range []*proc{b, stale} {
		if err := os.RemoveAll(dataDirOf(p)); err != nil {
			t.Fatal(err)
		}
		if err := copyDir(filepath.Join(dir, p.id), dataDirOf(p)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range c.nodes {
		c.start(p)
	}
	c.waitHealthy(45 * time.Second)
	if m := w.waitAddsEverywhere(20 * time.Second); len(m) > 0 {
		t.Errorf("undamaged restart: acknowledged adds missing: %v", m)
	}
}

// judgeRestart waits for the damaged node b (started with stale) to either
// exit with a clear message, or to form a quorum with stale that holds
// every acknowledged add, and fails the test otherwise. It returns what
// happened, for the summary.
func judgeRestart(t *testing.T, c *cluster, w *workload, history []op, b, stale *proc, file string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		b.mu.Lock()
		done, cmd := b.done, b.cmd
		b.mu.Unlock()
		select {
		case <-done:
			code := cmd.ProcessState.ExitCode()
			msg := edgedErrorLine(b.logPath)
			if code == 0 {
				t.Errorf("%s exited with status 0 on a damaged data dir; last words %q", b.id, msg)
			}
			if msg == "" {
				t.Errorf("%s exited (status %d) without an \"edged: …\" line saying why", b.id, code)
				return "exited without a message"
			}
			for _, want := range []string{file, "docs/operations.md"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s's refusal does not mention %q: %s", b.id, want, msg)
				}
			}
			if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") {
				t.Errorf("%s crashed instead of refusing: %s", b.id, msg)
			}
			return fmt.Sprintf("refused (status %d): %s", code, msg)
		default:
		}
		if l := c.leader(); l == b.i || l == stale.i {
			mb, errB := w.missingAdds(b.i, history)
			ms, errS := w.missingAdds(stale.i, history)
			if errB == nil && errS == nil && len(mb) == 0 && len(ms) == 0 {
				return fmt.Sprintf("recovered: edge-%d leads, both nodes hold all %d acknowledged adds", l, countAcked(history))
			}
			last = fmt.Sprintf("leader edge-%d; %s lacks %d acknowledged adds (%v), %s lacks %d (%v)", l, b.id, len(mb), errB, stale.id, len(ms), errS)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if last != "" {
		t.Errorf("%s came back on its damaged data and the cluster serves a shorter history: %s", b.id, last)
		return "SHORTER HISTORY: " + last
	}
	t.Errorf("%s neither exited nor formed a quorum with %s in 30s", b.id, stale.id)
	return "neither refused nor recovered"
}

// edgedErrorLine returns the last line of a node's output that edged
// prints when it gives up ("edged: …").
func edgedErrorLine(logPath string) string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "edged: ") {
			return lines[i]
		}
		if strings.HasPrefix(lines[i], "panic: ") || strings.HasPrefix(lines[i], "fatal error: ") ||
			strings.HasPrefix(lines[i], "unexpected fault address") {
			return lines[i]
		}
	}
	return ""
}

func countAcked(history []op) int {
	acked, _ := addOutcomes(history)
	return acked
}

// addAcked adds k fresh tenants, retrying until k were acknowledged.
func addAcked(t *testing.T, w *workload, k int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for got := 0; got < k; {
		before := countAcked(w.snapshot())
		w.add(0, rand.IntN(len(w.c.nodes)))
		if countAcked(w.snapshot()) > before {
			got++
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d adds acknowledged in 30s", got, k)
		}
	}
}

// restoreOwnSnapshot saves the cluster's state and restores it, the way
// edgectl snapshot save/restore does.
func restoreOwnSnapshot(t *testing.T, c *cluster) {
	t.Helper()
	l := c.leader()
	if l < 0 {
		t.Fatal("no leader for the snapshot restore")
	}
	ctx, cancel := opContext(t.Context(), 20*time.Second, "")
	defer cancel()
	save, err := edgev1.NewSnapshotServiceClient(c.conns[l]).Save(ctx, &edgev1.SaveSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	for {
		ch, err := save.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("snapshot save: %v", err)
		}
		snap.Write(ch.GetData())
	}
	up, err := edgev1.NewSnapshotServiceClient(c.conns[l]).Restore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Send(&edgev1.SnapshotChunk{Data: snap.Bytes()}); err != nil {
		t.Fatal(err)
	}
	if _, err := up.CloseAndRecv(); err != nil {
		t.Fatalf("snapshot restore: %v", err)
	}
	// Wait until every node has a snapshot on disk.
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range c.nodes {
		for len(snapshotDirs(t, dataDirOf(p))) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s has no raft snapshot 20s after the restore", p.id)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func dataDirOf(p *proc) string {
	for _, a := range p.args {
		if d, ok := strings.CutPrefix(a, "--data-dir="); ok {
			return d
		}
	}
	panic("no --data-dir in " + p.id + "'s arguments")
}

func snapshotDirs(t *testing.T, dataDir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out) // term-index-ms; the test makes one snapshot per node
	return out
}

func newestSnapshot(t *testing.T, dataDir string) string {
	t.Helper()
	s := snapshotDirs(t, dataDir)
	if len(s) == 0 {
		t.Fatal("no snapshot to damage")
	}
	return filepath.Join(dataDir, "snapshots", s[len(s)-1])
}

func truncateTo(at func(size int64) int64) func(*testing.T, string) {
	return func(t *testing.T, d string) {
		p := filepath.Join(d, "raft.db")
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, at(st.Size())); err != nil {
			t.Fatal(err)
		}
	}
}

func garbleAt(at func(size int64) (off, n int64)) func(*testing.T, string) {
	return func(t *testing.T, d string) {
		p := filepath.Join(d, "raft.db")
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		off, n := at(st.Size())
		garble(t, p, off, n)
	}
}

// garble overwrites n bytes at off with bytes that differ from the old.
func garble(t *testing.T, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(off), uint64(n)))
	for i := range buf {
		buf[i] ^= byte(1 + rng.IntN(255))
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies a data dir (regular files and directories).
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
}
