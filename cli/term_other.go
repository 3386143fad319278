//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package cli

import "os"

// isTerminal is false where edgectl cannot tell: confirmations then need
// --yes.
func isTerminal(*os.File) bool { return false }
