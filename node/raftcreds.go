package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/edgeproxy/edge/raftstore/peertls"
)

// devKeyFile is where --dev keeps the cluster key it made, so a dev node
// restarted on the same data dir keeps talking to the peers it had.
const devKeyFile = "cluster-key"

// raftCredentials builds the raft port's credential from the config: an
// operator's certificates, the cluster keys, or (--dev only) a key of the
// node's own in its data dir.
func raftCredentials(c *Config) (*peertls.Credentials, error) {
	if c.PeerTLSCert != "" {
		return peertls.FromFiles(c.PeerTLSCert, c.PeerTLSKey, c.PeerTLSCA)
	}
	keys := c.ClusterKeys
	if len(keys) == 0 {
		if !c.Dev {
			return nil, errors.New("no cluster key for the raft port")
		}
		k, err := devClusterKey(c.DataDir)
		if err != nil {
			return nil, fmt.Errorf("--dev cluster key: %w", err)
		}
		keys = [][]byte{k}
	}
	return peertls.FromClusterKeys(keys)
}

func devClusterKey(dir string) ([]byte, error) {
	p := filepath.Join(dir, devKeyFile)
	if b, err := os.ReadFile(p); err == nil {
		keys, err := peertls.ParseKeys(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return keys[0], nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	k := peertls.NewKey()
	if err := writeFileSynced(p, []byte(k+"\n"), 0o600); err != nil {
		return nil, err
	}
	return []byte(k), nil
}

// writeFileSynced writes a file that a power cut leaves either absent or
// whole: a temporary file, fsynced, renamed into place, then the directory
// fsynced. (os.WriteFile alone left an empty cluster-key after a power
// loss, and the dev node could not start again.)
func writeFileSynced(p string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(p)
	f, err := os.CreateTemp(dir, "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
