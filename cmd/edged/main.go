// Command edged runs one Edge node: a Raft member and the proxy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/edgeproxy/edge/node"
	"github.com/edgeproxy/edge/node/gctune"
	"github.com/edgeproxy/edge/proxy/accesslog"
)

// version is set at build time with -ldflags "-X main.version=…" (Makefile).
var version = "dev"

func main() {
	// Every log line goes through one buffered writer: no write(2) per
	// request, and a stuck stdout never stalls the proxy
	// (docs/logging.md). It is flushed before every exit.
	out, err := accesslog.New(accesslog.Config{Out: os.Stdout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "edged:", err)
		os.Exit(1)
	}
	code := run(out)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := out.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "edged:", err)
	}
	cancel()
	os.Exit(code)
}

func run(out *accesslog.Writer) (code int) {
	cfg, err := node.ParseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, node.ErrVersion) {
		fmt.Printf("edged %s (%s)\n", version, runtime.Version())
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "edged:", err)
		return 2
	}
	if cfg.GCMinHeap > 0 && os.Getenv("GOGC") == "" {
		defer gctune.Start(uint64(cfg.GCMinHeap), 100).Stop()
	}
	cfg.Version = version
	if cfg.TempDataDir {
		// --dev made this directory; a clean exit leaves nothing behind
		// (a failed one keeps it for a look).
		defer func() {
			if code == 0 {
				_ = os.RemoveAll(cfg.DataDir)
			}
		}()
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(out, nil))
	cfg.LogWriter = out
	n, err := node.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "edged:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "edged:", err)
		return 1
	}
	return 0
}
