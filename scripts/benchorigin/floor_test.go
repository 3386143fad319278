package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestFloorRelays drives the floor proxy like wrk does: keep-alive GETs on
// one connection, each answered with the origin's object; the origin is
// reached once per request.
func TestFloorRelays(t *testing.T) {
	o := newOrigin()
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // floor binds it again
	go floor(ctx, addr, strings.TrimPrefix(srv.URL, "http://"), io.Discard)

	var c net.Conn
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err = net.Dial("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		io.WriteString(c, "GET /nostore HTTP/1.1\r\nHost: bench.example\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || len(body) != 1024 {
			t.Fatalf("request %d: %d, %d bytes", i, resp.StatusCode, len(body))
		}
	}
	if n := o.total.Load(); n != 3 {
		t.Fatalf("origin saw %d requests, want 3", n)
	}
}
