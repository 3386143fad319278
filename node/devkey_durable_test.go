package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edgeproxy/edge/node/chaos/lazyfs"
)

// TestDevClusterKeySurvivesPowerLoss: the key --dev makes for itself is on
// disk before the node uses it, so after a power cut the node finds the
// same key (and its peers still accept it), not an empty file.
func TestDevClusterKeySurvivesPowerLoss(t *testing.T) {
	if ok, why := lazyfs.Usable(); !ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("lazyfs: %s", why)
		}
		t.Skipf("SKIPPING: cannot mount a FUSE file system: %s", why)
	}
	dir := t.TempDir()
	backing, mnt := filepath.Join(dir, "backing"), filepath.Join(dir, "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	disk, err := lazyfs.Mount(backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = disk.Unmount() })
	data := filepath.Join(mnt, "data")
	k1, err := devClusterKey(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := disk.PowerLoss(); err != nil {
		t.Fatal(err)
	}
	k2, err := devClusterKey(data)
	if err != nil {
		t.Fatalf("after a power loss the dev cluster key cannot be read: %v", err)
	}
	if string(k1) != string(k2) {
		t.Fatal("after a power loss --dev made a new cluster key: its peers would refuse it")
	}
}
