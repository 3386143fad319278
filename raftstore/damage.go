package raftstore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// ErrDamaged marks a data dir whose raft state cannot be trusted: a
// truncated or corrupt raft.db, a snapshot that does not match its
// checksum, raft.db gone while snapshots remain. A node must not start on
// it. Starting anyway would have it come back with less than it had
// acknowledged (or with its vote forgotten), and with one other stale
// node it could elect a leader that lacks acknowledged writes; hashicorp
// raft itself either starts on such a state or panics. The node has to be
// replaced as a new member (docs/operations.md).
var ErrDamaged = errors.New("damaged raft state")

// damage is an ErrDamaged naming the file and what is wrong with it, in
// one line that says what the operator should do.
type damage struct {
	path, what string
}

func (d *damage) Error() string {
	return fmt.Sprintf("%s %s; this node's raft state cannot be trusted and it will not start on it: "+
		"move its data dir aside and add it back as a new member (docs/operations.md, \"A node's data is damaged\")", d.path, d.what)
}

func (d *damage) Is(target error) bool { return target == ErrDamaged }

func damaged(path, format string, args ...any) error {
	return &damage{path: path, what: fmt.Sprintf(format, args...)}
}

// checkDataDir refuses a data dir whose raft state is damaged. It reads
// every snapshot and every log entry once, which bounds what raft will
// find later: raft-boltdb and bolt panic, or raft starts on less than the
// node had, where this check returns an error.
func checkDataDir(dir string) error {
	snap, err := checkSnapshots(filepath.Join(dir, "snapshots"))
	if err != nil {
		return err
	}
	return checkRaftDB(filepath.Join(dir, "raft.db"), snap)
}

// newestSnapshot is what checkSnapshots learnt: how many snapshots there
// are and the index and term of the newest.
type newestSnapshot struct {
	count       int
	index, term uint64
}

// snapshotMeta is the part of raft's FileSnapshotStore meta.json that the
// check reads.
type snapshotMeta struct {
	ID    string
	Index uint64
	Term  uint64
	Size  int64
	CRC   []byte
}

// checkSnapshots checks the newest complete snapshot, the one raft
// restores (it ignores the .tmp directories of unfinished ones): its
// meta.json parses and its state.bin has the size and CRC-64 the meta
// records, as raft's own Open checks it. Raft names a snapshot directory
// term-index-milliseconds; the newest is found by name, because raft
// skips a snapshot whose meta.json it cannot read and would restore an
// older one, then find the log entries since that one gone. Older
// snapshots are not read: raft does not use them while the newest is
// sound, and one half deleted by a crash during raft's reaping of old
// snapshots is harmless.
func checkSnapshots(dir string) (newestSnapshot, error) {
	var out newestSnapshot
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("raftstore: read %s: %w", dir, err)
	}
	newest, nt, ni, nms := "", uint64(0), uint64(0), uint64(0)
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		var term, index, ms uint64
		if _, err := fmt.Sscanf(e.Name(), "%d-%d-%d", &term, &index, &ms); err != nil {
			continue // not raft's
		}
		out.count++
		if newest == "" || term > nt || (term == nt && (index > ni || (index == ni && ms > nms))) {
			newest, nt, ni, nms = e.Name(), term, index, ms
		}
	}
	if newest == "" {
		return out, nil
	}
	metaPath := filepath.Join(dir, newest, "meta.json")
	b, err := os.ReadFile(metaPath)
	if err != nil {
		return out, damaged(metaPath, "cannot be read (%v)", err)
	}
	var m snapshotMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return out, damaged(metaPath, "is not valid JSON (%v)", err)
	}
	if m.Term != nt || m.Index != ni {
		return out, damaged(metaPath, "says term %d index %d, its directory name term %d index %d", m.Term, m.Index, nt, ni)
	}
	statePath := filepath.Join(dir, newest, "state.bin")
	f, err := os.Open(statePath)
	if err != nil {
		return out, damaged(statePath, "cannot be opened (%v)", err)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		return out, damaged(statePath, "cannot be read (%v)", err)
	}
	if n != m.Size {
		return out, damaged(statePath, "is %d bytes, its meta.json says %d (the snapshot is torn)", n, m.Size)
	}
	if !bytes.Equal(h.Sum(nil), m.CRC) {
		return out, damaged(statePath, "does not match the checksum in its meta.json (the snapshot is corrupt)")
	}
	out.index, out.term = m.Index, m.Term
	return out, nil
}

// Bolt's file layout (go.etcd.io/bbolt, format version 2): pages 0 and 1
// are meta pages, written alternately; after a 16-byte page header, a
// meta holds magic, version, page size, flags, the root bucket (16
// bytes), the freelist's page, the high-water mark (pages in use), the
// transaction ID and an FNV-64a checksum of the fields before it. Bolt
// writes them in the machine's byte order.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSize   = 64
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high-water mark: pages [0, pgid) are in use
	txid     uint64
}

// readBoltMeta decodes the meta page at off, or reports why it is invalid.
func readBoltMeta(f *os.File, off int64) (boltMeta, error) {
	buf := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := f.ReadAt(buf, off); err != nil {
		return boltMeta{}, err
	}
	m := buf[boltPageHeader:]
	e := binary.NativeEndian
	if e.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, errors.New("bad magic")
	}
	if e.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, fmt.Errorf("version %d", e.Uint32(m[4:]))
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != e.Uint64(m[56:]) {
		return boltMeta{}, errors.New("checksum mismatch")
	}
	return boltMeta{pageSize: e.Uint32(m[8:]), pgid: e.Uint64(m[40:]), txid: e.Uint64(m[48:])}, nil
}

// checkRaftDB checks raft.db: present when snapshots are, not empty, a
// valid meta page whose pages are all in the file, and every log entry
// and the stable store's term readable and consistent with the newest
// snapshot.
func checkRaftDB(path string, snap newestSnapshot) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		if snap.count > 0 {
			return damaged(path, "is missing while snapshots/ holds %d snapshot(s) (the log, the current term and the vote are gone)", snap.count)
		}
		return nil // a new node
	}
	if err != nil {
		return fmt.Errorf("raftstore: open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("raftstore: stat %s: %w", path, err)
	}
	size := st.Size()
	if size == 0 {
		f.Close()
		return damaged(path, "is empty (bolt writes and syncs its first pages when it creates the file, so it was cut short)")
	}
	// Bolt uses the newer valid meta page; a torn write of one meta page
	// is normal after a power cut and leaves the other.
	var meta boltMeta
	var why []string
	m0, err0 := readBoltMeta(f, 0)
	if err0 == nil {
		meta = m0
	} else {
		why = append(why, fmt.Sprintf("page 0: %v", err0))
	}
	pageSize := int64(os.Getpagesize())
	if err0 == nil {
		pageSize = int64(m0.pageSize)
	}
	if m1, err1 := readBoltMeta(f, pageSize); err1 == nil {
		if err0 != nil || m1.txid > meta.txid {
			meta = m1
		}
	} else {
		why = append(why, fmt.Sprintf("page 1: %v", err1))
	}
	f.Close()
	if len(why) == 2 {
		return damaged(path, "has no valid meta page (%s)", strings.Join(why, "; "))
	}
	if need := int64(meta.pgid) * int64(meta.pageSize); size < need {
		return damaged(path, "is %d bytes, but its last committed transaction (%d) uses %d pages of %d bytes, %d bytes (the file was truncated)",
			size, meta.txid, meta.pgid, meta.pageSize, need)
	}
	return walkRaftDB(path, snap)
}

var (
	bucketLogs = []byte("logs")
	bucketConf = []byte("conf")
	keyTerm    = []byte("CurrentTerm")
)

// walkRaftDB reads every log entry and the current term through bolt,
// turning bolt's panics on corrupt pages (and faults on pages past the
// end of the file) into an ErrDamaged.
func walkRaftDB(path string, snap newestSnapshot) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var db *bolt.DB
	defer func() {
		if r := recover(); r != nil {
			err = damaged(path, "is corrupt: bolt failed reading it (%v)", r)
		}
		if db != nil {
			db.Close()
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return fmt.Errorf("raftstore: %s is locked by another process (is another edged running on this data dir?)", path)
		}
		return damaged(path, "cannot be opened by bolt (%v)", err)
	}
	return db.View(func(tx *bolt.Tx) error {
		var first, last, lastTerm uint64
		n := 0
		if b := tx.Bucket(bucketLogs); b != nil {
			hd := codec.MsgpackHandle{}
			var prev uint64
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(k) != 8 {
					return damaged(path, "is corrupt: a log key is %d bytes, want 8", len(k))
				}
				idx := binary.BigEndian.Uint64(k)
				var l raft.Log
				if err := codec.NewDecoder(bytes.NewReader(v), &hd).Decode(&l); err != nil {
					return damaged(path, "is corrupt: log entry %d does not decode (%v)", idx, err)
				}
				if l.Index != idx {
					return damaged(path, "is corrupt: the log entry stored under index %d says it is %d", idx, l.Index)
				}
				if l.Term < lastTerm {
					return damaged(path, "is corrupt: log entry %d has term %d, after an entry of term %d", idx, l.Term, lastTerm)
				}
				// Entries after the newest snapshot must all be there: raft
				// replays them. (Older gaps are normal: a restored user
				// snapshot leaves a hole.)
				if n > 0 && idx != prev+1 && idx > snap.index+1 {
					return damaged(path, "is missing log entries %d to %d", max(prev, snap.index)+1, idx-1)
				}
				if n == 0 {
					first = idx
				}
				prev, last, lastTerm = idx, idx, l.Term
				n++
			}
		}
		if n > 0 && first > snap.index+1 {
			if snap.count == 0 {
				return damaged(path, "starts at log entry %d and there is no snapshot of the entries before it", first)
			}
			return damaged(path, "starts at log entry %d but the newest snapshot ends at %d", first, snap.index)
		}
		var term uint64
		if b := tx.Bucket(bucketConf); b != nil {
			if v := b.Get(keyTerm); v != nil {
				if len(v) != 8 {
					return damaged(path, "is corrupt: the current term is %d bytes, want 8", len(v))
				}
				term = binary.BigEndian.Uint64(v)
			}
		}
		if n > 0 && term < lastTerm {
			return damaged(path, "records current term %d, but its log holds entry %d of term %d", term, last, lastTerm)
		}
		if snap.count > 0 && term < snap.term {
			return damaged(path, "records current term %d, but the newest snapshot was taken in term %d", term, snap.term)
		}
		return nil
	})
}

// openBolt opens raft.db like raftboltdb.New, turning a panic or fault in
// bolt (a corrupt freelist page, which only a read-write open reads) into
// an ErrDamaged.
func openBolt(path string, open func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damaged(path, "is corrupt: bolt failed opening it (%v)", r)
		}
	}()
	return open()
}
