package deploy

import (
	"testing"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestMain removes the binaries testkit built for this test process.
func TestMain(m *testing.M) { testkit.Main(m) }

// binaries builds edged and edgectl once per test process, with the flags
// `make build` uses (testkit).
func binaries(t *testing.T) (edged, edgectl string) { return testkit.Binaries(t) }
