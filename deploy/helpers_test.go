package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds edged and edgectl once per test process, with the flags
// `make build` uses.
func binaries(t *testing.T) (edged, edgectl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "edge-deploy-bin-")
		if buildErr != nil {
			return
		}
		for _, b := range []string{"edged", "edgectl"} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(binDir, b), "github.com/edgeproxy/edge/cmd/"+b)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "edged"), filepath.Join(binDir, "edgectl")
}
