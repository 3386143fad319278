package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// connsConfig says how many idle keep-alive connections to hold and where.
type connsConfig struct {
	Addr     string
	Host     string
	Path     string
	N        int
	Parallel int
	Hold     time.Duration
}

// holdConns opens c.N connections to c.Addr, completes one request on each
// (so the server has seen a full request and now keeps an idle keep-alive
// connection), prints "ready N" and holds them until c.Hold passes (or,
// with c.Hold 0, until stdin reaches EOF) or ctx ends.
func holdConns(ctx context.Context, c connsConfig, stdin io.Reader, stdout io.Writer) error {
	if c.Addr == "" || c.N <= 0 || c.Parallel <= 0 {
		return fmt.Errorf("conns: -addr, -n > 0 and -parallel > 0 are required")
	}
	req := []byte("GET " + c.Path + " HTTP/1.1\r\nHost: " + c.Host + "\r\nUser-Agent: benchorigin-conns\r\n\r\n")
	var (
		mu    sync.Mutex
		conns = make([]net.Conn, 0, c.N)
	)
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.Parallel)
	d := net.Dialer{Timeout: 10 * time.Second}
	for i := 0; i < c.N; i++ {
		g.Go(func() error {
			cn, err := d.DialContext(gctx, "tcp", c.Addr)
			if err != nil {
				return fmt.Errorf("conn %d: dial: %w", i, err)
			}
			mu.Lock()
			conns = append(conns, cn)
			mu.Unlock()
			_ = cn.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := cn.Write(req); err != nil {
				return fmt.Errorf("conn %d: write: %w", i, err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(cn), nil)
			if err != nil {
				return fmt.Errorf("conn %d: read response: %w", i, err)
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				return fmt.Errorf("conn %d: read body: %w", i, err)
			}
			if resp.StatusCode != http.StatusOK || resp.Close {
				return fmt.Errorf("conn %d: status %d, close %v: want 200 on a kept-alive connection", i, resp.StatusCode, resp.Close)
			}
			_ = cn.SetDeadline(time.Time{})
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ready %d in %s\n", len(conns), time.Since(start).Round(time.Millisecond))

	if c.Hold > 0 {
		t := time.NewTimer(c.Hold)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		return nil
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}
