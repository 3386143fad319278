package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
)

// floor is the least a Go HTTP/1.1 reverse proxy can do per request: it
// relays each request's header block to the origin over a pool of
// keep-alive connections and the response (Content-Length bodies only)
// back, with no routing, header rewriting, cache, logs or metrics. It is a
// reference for docs/benchmarks.md: the CPU per request a Go proxy needs
// on this machine before any feature, to compare edged and nginx with.
// Not a proxy to use: no bodies, no chunked responses, no timeouts.
func floor(ctx context.Context, addr, origin string, stdout io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "floor proxy on %s → %s\n", ln.Addr(), origin)
	go func() { <-ctx.Done(); ln.Close() }()
	p := &floorPool{origin: origin}
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go p.serve(c)
	}
}

type floorPool struct {
	origin string
	mu     sync.Mutex
	idle   []*floorConn
}

type floorConn struct {
	c  net.Conn
	br *bufio.Reader
}

func (p *floorPool) get() (*floorConn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		u := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return u, nil
	}
	p.mu.Unlock()
	c, err := net.Dial("tcp", p.origin)
	if err != nil {
		return nil, err
	}
	return &floorConn{c: c, br: bufio.NewReader(c)}, nil
}

func (p *floorPool) put(u *floorConn) {
	p.mu.Lock()
	p.idle = append(p.idle, u)
	p.mu.Unlock()
}

var errNoLength = errors.New("floor: response without Content-Length")

func (p *floorPool) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req := make([]byte, 0, 1024)
	resp := make([]byte, 0, 4096)
	for {
		req = req[:0]
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			req = append(req, line...)
			if len(line) <= 2 {
				break
			}
		}
		u, err := p.get()
		if err != nil {
			return
		}
		if resp, err = u.exchange(req, resp[:0]); err != nil {
			u.c.Close()
			return
		}
		p.put(u)
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

func (u *floorConn) exchange(req, resp []byte) ([]byte, error) {
	if _, err := u.c.Write(req); err != nil {
		return resp, err
	}
	cl := -1
	for {
		line, err := u.br.ReadSlice('\n')
		if err != nil {
			return resp, err
		}
		resp = append(resp, line...)
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			cl, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if cl < 0 {
		return resp, errNoLength
	}
	n := len(resp)
	resp = append(resp, make([]byte, cl)...)
	_, err := io.ReadFull(u.br, resp[n:])
	return resp, err
}
