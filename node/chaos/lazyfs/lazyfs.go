// Package lazyfs is a FUSE file system for tests that loses what was not
// synced, like a disk after a power cut. It passes every operation through
// to a backing directory (so bolt's mmap reads, file locks and renames work
// as on a real disk) and keeps, per file, how to undo every change made
// since that file's last fsync or fdatasync: the old bytes of each range a
// write or a truncate replaced, and the size the file had when it was last
// synced. PowerLoss detaches the mount (the kernel's page cache for it
// goes with it: the next mount is a new superblock), rolls every file
// back to its last synced state and mounts a fresh one; calls still in
// flight on the old mount fail with EIO.
//
// What it models:
//   - File data: a write is lost at a power cut unless the file was synced
//     after it (fsync and fdatasync count alike, on any descriptor of the
//     file). Every unsynced write is lost, never a part of one; a real disk
//     may keep some and tear others, which the torn-file tests elsewhere
//     cover by truncating and corrupting files directly.
//   - A file created since its last sync comes back empty: its name
//     survives, its content does not (ext4's data=ordered after a crash).
//   - SetIgnoreSync(true) makes fsync succeed without making anything
//     durable, a disk that lies: the negative control of a durability test.
//
// What it does not model: the namespace itself. Creates, renames, unlinks
// and mkdirs are durable as soon as they return (as if the file system
// journalled them at once), so a program that forgets to fsync a directory
// after a rename is not caught; one that renames a file it did not fsync
// is (the file comes back empty). Writes through a shared writable mmap,
// fallocate and copy_file_range are not supported (bolt and raft use none).
// Reordering, and the lost write that a later sync should have covered
// (a disk that drops its cache), are not modelled.
//
// Mounting needs /dev/fuse and root (the mount is made with mount(2)
// directly, no fusermount): Usable says whether this process can.
package lazyfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// FS is one mounted lazy file system.
type FS struct {
	backing, mnt string

	mu         sync.Mutex
	mounted    *mounting        // the current mount; nil when unmounted
	ignoreSync bool             // fsync lies
	undo       map[uint64]*undo // by backing inode number
	stats      Stats
}

// Stats counts what the file system saw and what a power cut undid.
type Stats struct {
	Writes, Syncs, PowerLosses int
	// FilesRolledBack and BytesRestored count what PowerLoss undid, over
	// every power loss so far.
	FilesRolledBack int
	BytesRestored   int64
}

// mounting is one mount of the file system. Its files fail every call
// once it is retired (unmounted): a mount copied into another mount
// namespace (ip netns exec copies them all) outlives the unmount, and
// must not change a file after the power loss.
type mounting struct {
	retired bool // guarded by FS.mu
}

// undo is how to bring one file back to its last synced state.
type undo struct {
	f          *os.File // the backing file, opened by the file system itself
	syncedSize int64
	saved      []saved // in the order the changes were made
}

type saved struct {
	off int64
	old []byte
}

// Usable reports whether this process can mount a lazyfs, and why not.
// It first detaches the mounts of test processes that died without
// unmounting (see UnmountStale).
func Usable() (bool, string) {
	UnmountStale()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return false, "no /dev/fuse (the fuse kernel module is not loaded, or the container does not expose the device)"
	}
	if os.Geteuid() != 0 {
		return false, "not running as root (lazyfs mounts with mount(2) directly)"
	}
	dir, err := os.MkdirTemp("", "lazyfs-probe-")
	if err != nil {
		return false, err.Error()
	}
	defer os.RemoveAll(dir)
	b, m := filepath.Join(dir, "b"), filepath.Join(dir, "m")
	_ = os.Mkdir(b, 0o700)
	_ = os.Mkdir(m, 0o700)
	l, err := Mount(b, m)
	if err != nil {
		return false, fmt.Sprintf("mount a FUSE file system: %v", err)
	}
	if err := l.Unmount(); err != nil {
		return false, fmt.Sprintf("unmount the probe: %v", err)
	}
	return true, ""
}

// Mount mounts a lazy view of backing (a directory) on mountpoint. What is
// in backing when it is mounted counts as synced.
func Mount(backing, mountpoint string) (*FS, error) {
	l := &FS{backing: backing, mnt: mountpoint, undo: map[uint64]*undo{}}
	if err := l.mount(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *FS) mount() error {
	var st syscall.Stat_t
	if err := syscall.Stat(l.backing, &st); err != nil {
		return fmt.Errorf("lazyfs: backing dir: %w", err)
	}
	m := &mounting{}
	root := &fs.LoopbackRoot{Path: l.backing, Dev: uint64(st.Dev)}
	// NewNode is deprecated for NodeWrapChilder, which hands over a
	// LoopbackNode already built, that ours would have to copy (it holds
	// an Inode with locks): build ours directly instead.
	//lint:ignore SA1019 see above
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, l: l, m: m}
	}
	//lint:ignore SA1019 see above
	rootNode := root.NewNode(root, nil, "", &st)
	root.RootNode = rootNode
	// go-fuse's direct mount opens /dev/fuse without O_CLOEXEC: every
	// process started afterwards (the nodes under test) would hold the
	// connection open, and a dead test's mounts would hang instead of
	// failing. No fork may happen until the flag is set.
	syscall.ForkLock.Lock()
	_, err := fs.Mount(l.mnt, rootNode, &fs.Options{
		MountOptions: fuse.MountOptions{
			// The source names the serving process, so that a later
			// run can tell a dead process's mount (UnmountStale).
			FsName:            fmt.Sprintf("lazyfs-%d", os.Getpid()),
			Name:              "lazyfs",
			DirectMountStrict: true,
		},
	})
	closeOnExecFuseFds()
	syscall.ForkLock.Unlock()
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.mounted = m
	l.mu.Unlock()
	return nil
}

// Dir is the mount point.
func (l *FS) Dir() string { return l.mnt }

// SetIgnoreSync makes fsync and fdatasync succeed without making anything
// durable (on), or honest again (off).
func (l *FS) SetIgnoreSync(on bool) {
	l.mu.Lock()
	l.ignoreSync = on
	l.mu.Unlock()
}

// Stats returns the counters so far.
func (l *FS) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// PowerLoss cuts the power: every file loses what was written since its
// last sync, and the kernel forgets what it cached. Kill the processes
// using the mount first: a file still open on the old mount gets EIO.
func (l *FS) PowerLoss() error {
	if err := l.unmount(); err != nil {
		return err
	}
	l.mu.Lock()
	var errs []error
	for ino, u := range l.undo {
		n, err := u.rollBack()
		if err != nil {
			errs = append(errs, err)
		}
		l.stats.FilesRolledBack++
		l.stats.BytesRestored += n
		delete(l.undo, ino)
	}
	l.stats.PowerLosses++
	l.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lazyfs: roll back: %w", err)
	}
	return l.mount()
}

// Unmount unmounts the file system, keeping what is in the backing dir
// as it is (written data stays, synced or not).
func (l *FS) Unmount() error {
	err := l.unmount()
	l.mu.Lock()
	for ino, u := range l.undo {
		u.f.Close()
		delete(l.undo, ino)
	}
	l.mu.Unlock()
	return err
}

// unmount detaches the mount and retires it. It does not wait for the
// server to end: that happens when no mount namespace holds the mount any
// more, and a process of another test run under ip netns exec may hold a
// copy for a while. The next mount is a new superblock, without the old
// one's page cache.
func (l *FS) unmount() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mounted == nil {
		return nil
	}
	l.mounted.retired = true // a request still in flight must not change a file now
	l.mounted = nil
	if err := syscall.Unmount(l.mnt, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("lazyfs: unmount %s: %w", l.mnt, err)
	}
	return nil
}

// rollBack restores the old bytes newest first, then the synced size.
func (u *undo) rollBack() (int64, error) {
	defer u.f.Close()
	var n int64
	for i := len(u.saved) - 1; i >= 0; i-- {
		s := u.saved[i]
		if _, err := u.f.WriteAt(s.old, s.off); err != nil {
			return n, err
		}
		n += int64(len(s.old))
	}
	return n, u.f.Truncate(u.syncedSize)
}

// record returns the undo record of the file behind fd, making one (the
// file's current state is its synced state) when there is none. Called
// with l.mu held.
func (l *FS) record(fd int, syncedSize int64) (*undo, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if u := l.undo[st.Ino]; u != nil {
		return u, nil
	}
	if syncedSize < 0 {
		syncedSize = st.Size
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	u := &undo{f: f, syncedSize: syncedSize}
	l.undo[st.Ino] = u
	return u, nil
}

// save keeps the bytes in [off, off+size) that a change is about to replace,
// as far as they lie within the synced size (what lies beyond is cut off
// by the rollback anyway).
func (u *undo) save(off, size int64) error {
	end := min(off+size, u.syncedSize)
	if off >= end {
		return nil
	}
	old := make([]byte, end-off)
	// Bytes past the current end were cut by a truncate, which saved
	// them: keep only what is still there.
	n, err := u.f.ReadAt(old, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if n > 0 {
		u.saved = append(u.saved, saved{off: off, old: old[:n]})
	}
	return nil
}

// node is a loopback node whose files record their changes.
type node struct {
	fs.LoopbackNode
	l *FS
	m *mounting
}

var (
	_ fs.NodeOpener    = (*node)(nil)
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeSetattrer = (*node)(nil)
)

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	trunc := flags&syscall.O_TRUNC != 0
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags&^syscall.O_TRUNC)
	if errno != 0 {
		return nil, 0, errno
	}
	f := &file{lf: fh.(*fs.LoopbackFile), l: n.l, m: n.m}
	if trunc {
		if errno := f.truncate(0); errno != 0 {
			f.lf.Release(ctx)
			return nil, 0, errno
		}
	}
	return f, fuseFlags, 0
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	// The kernel calls Create only for a name its lookup did not find
	// (an existing file is opened with Open), so the file is new.
	ch, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	f := &file{lf: fh.(*fs.LoopbackFile), l: n.l, m: n.m}
	n.l.mu.Lock()
	defer n.l.mu.Unlock()
	if n.m.retired {
		f.lf.Release(ctx)
		return nil, nil, 0, syscall.EIO
	}
	if errno := f.withFd(func(fd int) syscall.Errno {
		_, err := n.l.record(fd, 0) // a new file's content is not durable yet
		return fs.ToErrno(err)
	}); errno != 0 {
		return nil, nil, 0, errno
	}
	return ch, f, fuseFlags, 0
}

// Setattr handles a truncate by path (truncate(2)) like one by descriptor.
func (n *node) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		f, isOurs := fh.(*file)
		if !isOurs {
			lf, _, errno := n.LoopbackNode.Open(ctx, syscall.O_RDWR)
			if errno != 0 {
				return errno
			}
			f = &file{lf: lf.(*fs.LoopbackFile), l: n.l, m: n.m}
			defer f.lf.Release(ctx)
		}
		if errno := f.truncate(sz); errno != 0 {
			return errno
		}
		in.Valid &^= fuse.FATTR_SIZE
		return n.LoopbackNode.Setattr(ctx, f.lf, in, out)
	}
	if f, isOurs := fh.(*file); isOurs {
		fh = f.lf
	}
	return n.LoopbackNode.Setattr(ctx, fh, in, out)
}

// file wraps a loopback file; it implements only the operations it
// records or that cannot change data.
type file struct {
	lf *fs.LoopbackFile
	l  *FS
	m  *mounting
}

var (
	_ fs.FileReader    = (*file)(nil)
	_ fs.FileWriter    = (*file)(nil)
	_ fs.FileFsyncer   = (*file)(nil)
	_ fs.FileFlusher   = (*file)(nil)
	_ fs.FileReleaser  = (*file)(nil)
	_ fs.FileGetattrer = (*file)(nil)
	_ fs.FileLseeker   = (*file)(nil)
)

func (f *file) withFd(fn func(fd int) syscall.Errno) syscall.Errno {
	fd, ok := f.lf.PassthroughFd()
	if !ok {
		return syscall.EBADF
	}
	return fn(fd)
}

func (f *file) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.lf.Read(ctx, buf, off)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	f.l.mu.Lock()
	defer f.l.mu.Unlock()
	if f.m.retired {
		return 0, syscall.EIO
	}
	var n int
	errno := f.withFd(func(fd int) syscall.Errno {
		u, err := f.l.record(fd, -1)
		if err != nil {
			return fs.ToErrno(err)
		}
		if err := u.save(off, int64(len(data))); err != nil {
			return fs.ToErrno(err)
		}
		n, err = syscall.Pwrite(fd, data, off)
		return fs.ToErrno(err)
	})
	f.l.stats.Writes++
	return uint32(max(n, 0)), errno
}

func (f *file) truncate(sz uint64) syscall.Errno {
	f.l.mu.Lock()
	defer f.l.mu.Unlock()
	if f.m.retired {
		return syscall.EIO
	}
	return f.withFd(func(fd int) syscall.Errno {
		u, err := f.l.record(fd, -1)
		if err != nil {
			return fs.ToErrno(err)
		}
		if err := u.save(int64(sz), max(0, u.syncedSize-int64(sz))); err != nil {
			return fs.ToErrno(err)
		}
		return fs.ToErrno(syscall.Ftruncate(fd, int64(sz)))
	})
}

// Fsync makes the file's current content its synced state. The backing
// file is not synced itself: the backing disk's durability is not what a
// test with lazyfs asks about.
func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	f.l.mu.Lock()
	defer f.l.mu.Unlock()
	if f.m.retired {
		return syscall.EIO
	}
	f.l.stats.Syncs++
	if f.l.ignoreSync {
		return 0
	}
	return f.withFd(func(fd int) syscall.Errno {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			return fs.ToErrno(err)
		}
		if u := f.l.undo[st.Ino]; u != nil {
			u.f.Close()
			delete(f.l.undo, st.Ino)
		}
		return 0
	})
}

func (f *file) Flush(ctx context.Context) syscall.Errno   { return f.lf.Flush(ctx) }
func (f *file) Release(ctx context.Context) syscall.Errno { return f.lf.Release(ctx) }
func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return f.lf.Getattr(ctx, out)
}
func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	return f.lf.Lseek(ctx, off, whence)
}

// UnmountStale detaches every lazyfs mount whose serving process is gone
// (a test process killed before its cleanup ran). It reads only the
// mount table: touching such a mount may block forever, when a process
// started by the dead one still holds the FUSE connection open. Mounts
// of live processes are left alone. It returns the mount points it
// detached.
func UnmountStale() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		// mountinfo: id parent major:minor root mountpoint opts ... - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 2 || qf[0] != "fuse.lazyfs" {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(qf[1], "lazyfs-"))
		if err != nil || processAlive(pid) {
			continue
		}
		mnt := unescapeMountinfo(pf[4])
		if syscall.Unmount(mnt, syscall.MNT_DETACH) == nil {
			out = append(out, mnt)
		}
	}
	return out
}

// processAlive reports whether pid is a running (not zombie) process.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// closeOnExecFuseFds sets FD_CLOEXEC on every /dev/fuse descriptor of
// this process.
func closeOnExecFuseFds() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			syscall.CloseOnExec(fd)
		}
	}
}

// ShouldMount reports whether this machine offers what a FUSE mount needs
// (the /dev/fuse device and root): where it does, a failure to mount is a
// bug to report, not a machine to skip. Tests use it under CI=true, as the
// fault suite does for network namespaces.
func ShouldMount() bool {
	_, err := os.Stat("/dev/fuse")
	return err == nil && os.Geteuid() == 0
}
