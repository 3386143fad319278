package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchorigin:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: benchorigin serve|conns|floor [flags]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		var c serveConfig
		fs.StringVar(&c.Addr, "addr", "127.0.0.1:0", "listen address")
		fs.StringVar(&c.TLSAddr, "tls-addr", "", "also serve https (HTTP/1.1 only, certificate for "+originTLSName+") on this address")
		fs.StringVar(&c.TLSCA, "tls-ca", "", "with -tls-addr: write the PEM of the CA that verifies its certificate to this file")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return serve(ctx, c, stdout)
	case "conns":
		fs := flag.NewFlagSet("conns", flag.ContinueOnError)
		var c connsConfig
		fs.StringVar(&c.Addr, "addr", "", "proxy address to connect to (host:port)")
		fs.StringVar(&c.Host, "host", "bench.example", "Host header")
		fs.StringVar(&c.Path, "path", "/small", "path requested once on every connection")
		fs.IntVar(&c.N, "n", 10000, "connections to open")
		fs.IntVar(&c.Parallel, "parallel", 200, "connections being opened at once")
		fs.DurationVar(&c.Hold, "hold", 0, "release the connections after this long; 0 waits for EOF on stdin instead")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return holdConns(ctx, c, stdin, stdout)
	case "floor":
		fs := flag.NewFlagSet("floor", flag.ContinueOnError)
		addr := fs.String("addr", "127.0.0.1:0", "listen address")
		origin := fs.String("origin", "", "origin address (host:port)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *origin == "" {
			return errors.New("floor: -origin is required")
		}
		return floor(ctx, *addr, *origin, stdout)
	default:
		return fmt.Errorf("unknown command %q (serve, conns or floor)", args[0])
	}
}
