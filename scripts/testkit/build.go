package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Version is the build version stamped into the test binaries, so that a
// test can check it is reported (edged --version, edgectl version).
const Version = "v0.0.0-e2e"

// build is the one build of the binaries in this test process: tests run
// them as users do, and building once keeps a package's tests from paying
// for it each time.
var build struct {
	once sync.Once
	dir  string
	err  error
}

// Binaries builds edged and edgectl once per test process, with the flags
// `make build` uses (static, -trimpath) and Version stamped in, and
// returns their paths. A package that calls it removes them by running its
// tests through Main.
func Binaries(t testing.TB) (edged, edgectl string) {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "edge-test-bin-")
		if build.err != nil {
			return
		}
		ldflags := "-X github.com/edgeproxy/edge/cli.Version=" + Version + " -X main.version=" + Version
		for _, b := range []string{"edged", "edgectl"} {
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(build.dir, b), "github.com/edgeproxy/edge/cmd/"+b)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				build.err = fmt.Errorf("go build %s: %v\n%s", b, err, out)
				return
			}
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return filepath.Join(build.dir, "edged"), filepath.Join(build.dir, "edgectl")
}

// Main runs a package's tests and then removes what testkit kept for the
// whole process (the built binaries). Use it as the package's TestMain:
//
//	func TestMain(m *testing.M) { testkit.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}
