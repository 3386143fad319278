package lazyfs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountT mounts a lazyfs for the test, skipping (or failing under
// CI=true) when this machine cannot.
func mountT(t *testing.T) *FS {
	t.Helper()
	if ok, why := Usable(); !ok {
		if os.Getenv("CI") == "true" && ShouldMount() {
			t.Fatalf("lazyfs: %s", why)
		}
		t.Skipf("SKIPPING: lazyfs cannot mount here: %s", why)
	}
	dir := t.TempDir()
	b, m := filepath.Join(dir, "backing"), filepath.Join(dir, "mnt")
	for _, d := range []string{b, m} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	l, err := Mount(b, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Unmount() })
	return l
}

func writeAt(t *testing.T, f *os.File, s string, off int64) {
	t.Helper()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}

func content(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPowerLossKeepsOnlySyncedData: synced writes survive a power loss,
// later overwrites, appends and truncates are undone, a file created and
// never synced comes back empty, and what the file held before the mount
// counts as synced.
func TestPowerLossKeepsOnlySyncedData(t *testing.T) {
	l := mountT(t)
	if err := os.WriteFile(filepath.Join(l.backing, "old"), []byte("before mount"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(l.Dir(), "log")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, f, "hello world", 0)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	writeAt(t, f, "HELLO", 0)             // overwrite of synced bytes
	writeAt(t, f, " and more", 11)        // append
	if err := f.Truncate(5); err != nil { // then cut synced bytes
		t.Fatal(err)
	}
	writeAt(t, f, "?????????????????", 3) // and write across the old end
	f.Close()

	if err := os.WriteFile(filepath.Join(l.Dir(), "unsynced"), []byte("gone"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Dir(), "old"), []byte("rewritten, not synced"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := content(t, p); got != "HEL?????????????????" {
		t.Fatalf("before the power loss the file reads %q", got)
	}
	if err := l.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	if got := content(t, p); got != "hello world" {
		t.Errorf("after the power loss the file reads %q, want its synced content %q", got, "hello world")
	}
	if got := content(t, filepath.Join(l.Dir(), "unsynced")); got != "" {
		t.Errorf("a file never synced reads %q after the power loss, want it empty", got)
	}
	if got := content(t, filepath.Join(l.Dir(), "old")); got != "before mount" {
		t.Errorf("a file rewritten with O_TRUNC and not synced reads %q, want %q", got, "before mount")
	}
	if st := l.Stats(); st.FilesRolledBack != 3 || st.PowerLosses != 1 {
		t.Errorf("stats %+v: want 3 files rolled back by 1 power loss", st)
	}
}

// TestIgnoreSyncLosesEverything is the negative control's disk: fsync
// succeeds and nothing written after SetIgnoreSync(true) survives.
func TestIgnoreSyncLosesEverything(t *testing.T) {
	l := mountT(t)
	p := filepath.Join(l.Dir(), "f")
	if err := os.WriteFile(p, []byte("synced"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	l.SetIgnoreSync(true)
	writeAt(t, f, "SYNCED, or so it said", 0)
	if err := f.Sync(); err != nil {
		t.Fatalf("a lying fsync must succeed: %v", err)
	}
	f.Close()
	if err := l.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	if got := content(t, p); got != "synced" {
		t.Errorf("with fsync ignored the file reads %q after the power loss, want %q", got, "synced")
	}
}

// TestMmapReadsSeeWrites: bolt reads its pages through a shared read-only
// mmap while it writes them with pwrite; the two must agree through the
// mount, and after a power loss a mapping shows the rolled-back bytes
// (the page cache is gone with the old mount). The mapping is read by a
// child process: a page fault on a FUSE mount served by the faulting
// process itself can deadlock it (the fault blocks a thread the Go
// runtime must stop for a collection, while the server goroutine that
// would answer the fault waits for that collection).
func TestMmapReadsSeeWrites(t *testing.T) {
	l := mountT(t)
	p := filepath.Join(l.Dir(), "db")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	page := bytes.Repeat([]byte("a"), 4096)
	if _, err := f.WriteAt(page, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	writeAt(t, f, "bbbb", 100)
	if got := mmapRead(t, p); got != "bbbb" {
		t.Errorf("mmap reads %q after pwrite, want %q", got, "bbbb")
	}
	f.Close()
	if err := l.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	if got := mmapRead(t, p); got != "aaaa" {
		t.Errorf("after the power loss mmap reads %q, want the synced %q", got, "aaaa")
	}
}

// mmapRead maps path in a child process (this test binary, running
// TestMmapChild) and returns bytes 100–103 as it reads them.
func mmapRead(t *testing.T, path string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMmapChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LAZYFS_MMAP_FILE="+path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mmap child: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "mmap:"); ok {
			return v
		}
	}
	t.Fatalf("mmap child printed no bytes:\n%s", out)
	return ""
}

// TestMmapChild is mmapRead's child: it does nothing unless
// LAZYFS_MMAP_FILE names a file to map.
func TestMmapChild(t *testing.T) {
	path := os.Getenv("LAZYFS_MMAP_FILE")
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	fmt.Printf("mmap:%s\n", m[100:104])
}

// TestUnmountStaleDetachesADeadProcesssMount: a test process killed
// before its cleanup leaves its mount behind; the next run detaches it
// without touching it (a dead server's mount can block every access).
func TestUnmountStaleDetachesADeadProcesssMount(t *testing.T) {
	if dir := os.Getenv("LAZYFS_TEST_CHILD_MOUNT"); dir != "" {
		if _, err := Mount(filepath.Join(dir, "backing"), filepath.Join(dir, "mnt")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute) // killed by the parent
		return
	}
	mountT(t) // skips where FUSE cannot be mounted
	dir := t.TempDir()
	for _, d := range []string{"backing", "mnt"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnmountStaleDetachesADeadProcesssMount$")
	cmd.Env = append(os.Environ(), "LAZYFS_TEST_CHILD_MOUNT="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	deadline := time.Now().Add(10 * time.Second)
	for !mounted(t, mnt) {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the child did not mount in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if got := UnmountStale(); !slices.Contains(got, mnt) {
		t.Fatalf("UnmountStale detached %v, want %s among them", got, mnt)
	}
	if mounted(t, mnt) {
		t.Fatalf("%s is still mounted", mnt)
	}
}

func mounted(t *testing.T, mnt string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), " "+mnt+" ")
}
