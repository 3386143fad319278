package raftstore

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// The data dir holds the whole control state: tenants, the cluster's TLS
// private keys (certificates live in the replicated KV) and raft's log.
// Nobody but the node's own user may read it, whatever umask the process
// runs under or whoever created the directory first.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
)

// tighten makes dir and everything under it private: directories 0700,
// files 0600. It runs at every start, so a data dir created by hand, by an
// older version or by a restore with looser modes is fixed before raft
// opens anything in it.
func tighten(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		want := fileMode
		if d.IsDir() {
			want = dirMode
		} else if !d.Type().IsRegular() {
			return nil // sockets, symlinks: not ours to change
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm() != want {
			if err := os.Chmod(p, want); err != nil {
				return fmt.Errorf("chmod %s: %w", p, err)
			}
		}
		return nil
	})
}

// privateSnapshots wraps raft's file snapshot store, which creates its
// directories 0755 and its files 0644 (before umask): each snapshot is
// tightened as soon as it is complete, before raft reports it taken.
type privateSnapshots struct {
	raft.SnapshotStore
	dir string // <data dir>/snapshots
}

func (p *privateSnapshots) Create(version raft.SnapshotVersion, index, term uint64, cfg raft.Configuration, cfgIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	// The snapshots dir itself, and the temporary dir the sink writes in,
	// are made private before any state is written into them.
	sink, err := p.SnapshotStore.Create(version, index, term, cfg, cfgIndex, trans)
	if err != nil {
		return nil, err
	}
	if err := tighten(p.dir); err != nil {
		sink.Cancel()
		return nil, fmt.Errorf("raftstore: snapshot dir: %w", err)
	}
	return &privateSink{SnapshotSink: sink, dir: p.dir}, nil
}

type privateSink struct {
	raft.SnapshotSink
	dir string
}

// Close finishes the snapshot (raft renames it into place) and then fixes
// the modes of the files raft created while it was written.
func (s *privateSink) Close() error {
	if err := s.SnapshotSink.Close(); err != nil {
		return err
	}
	return tighten(s.dir)
}
