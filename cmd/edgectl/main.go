// Command edgectl is the operator's CLI for an Edge cluster.
package main

import (
	"context"
	"os"

	"github.com/edgeproxy/edge/cli"
)

func main() {
	os.Exit(cli.Execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}
