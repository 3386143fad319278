package rawconn

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns two ends of a loopback TCP connection: a (the accepted
// end) wrapped when raw is set, b plain.
func pair(t testing.TB, raw bool) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- nil
			return
		}
		done <- c
	}()
	b, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a = <-done
	if a == nil {
		t.Fatal("accept failed")
	}
	if raw {
		a = Wrap(a)
		if _, ok := a.(*Conn); !ok && runtime.GOOS == "linux" {
			t.Fatalf("Wrap(*net.TCPConn) = %T on linux", a)
		}
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func modes(t *testing.T, f func(t *testing.T, raw bool)) {
	for _, raw := range []bool{false, true} {
		name := "net"
		if raw {
			name = "raw"
		}
		t.Run(name, func(t *testing.T) { f(t, raw) })
	}
}

// Writes much larger than the socket buffers go out whole (the raw write
// waits for room and goes on where it stopped) and reads get every byte
// in order, both ways at once.
func TestFullDuplexLargeTransfers(t *testing.T) {
	modes(t, func(t *testing.T, raw bool) {
		a, b := pair(t, raw)
		out := make([]byte, 8<<20)
		rand.Read(out)
		in := make([]byte, 8<<20)
		rand.Read(in)
		var wg sync.WaitGroup
		var gotA, gotB []byte
		var errs [4]error
		wg.Add(4)
		go func() { defer wg.Done(); _, errs[0] = a.Write(out) }()
		go func() { defer wg.Done(); _, errs[1] = b.Write(in) }()
		go func() { defer wg.Done(); gotB, errs[2] = readN(b, len(out)) }()
		go func() { defer wg.Done(); gotA, errs[3] = readN(a, len(in)) }()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
		}
		if !bytes.Equal(gotB, out) || !bytes.Equal(gotA, in) {
			t.Fatal("bytes differ from what was written")
		}
	})
}

func readN(c net.Conn, n int) ([]byte, error) {
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return buf, err
}

// Every way a read or write ends shows the same error, by errors.Is and
// by Op, as the net package's own connection gives.
func TestErrorsMatchNet(t *testing.T) {
	type outcome struct {
		n       int
		eof     bool
		timeout bool
		closed  bool
		reset   bool
		op      string
	}
	classify := func(n int, err error) outcome {
		o := outcome{n: n}
		var ne net.Error
		o.eof = err == io.EOF // bare, as net returns it
		o.timeout = errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
		o.closed = errors.Is(err, net.ErrClosed)
		o.reset = errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
		var oe *net.OpError
		if errors.As(err, &oe) {
			o.op = oe.Op
		}
		return o
	}
	cases := []struct {
		name string
		run  func(t *testing.T, a, b net.Conn) (int, error)
		want outcome
	}{
		{"read data", func(t *testing.T, a, b net.Conn) (int, error) {
			b.Write([]byte("hello"))
			return io.ReadFull(a, make([]byte, 5))
		}, outcome{n: 5}},
		{"empty read", func(t *testing.T, a, b net.Conn) (int, error) {
			return a.Read(nil)
		}, outcome{}},
		{"peer closed", func(t *testing.T, a, b net.Conn) (int, error) {
			b.Close()
			return a.Read(make([]byte, 8))
		}, outcome{eof: true}},
		{"peer half-closed after data", func(t *testing.T, a, b net.Conn) (int, error) {
			b.Write([]byte("ab"))
			b.(*net.TCPConn).CloseWrite()
			buf, err := io.ReadAll(a)
			return len(buf), err
		}, outcome{n: 2}},
		{"read deadline passed", func(t *testing.T, a, b net.Conn) (int, error) {
			a.SetReadDeadline(time.Now().Add(-time.Second))
			return a.Read(make([]byte, 8))
		}, outcome{timeout: true, op: "read"}},
		{"read deadline while waiting", func(t *testing.T, a, b net.Conn) (int, error) {
			a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			return a.Read(make([]byte, 8))
		}, outcome{timeout: true, op: "read"}},
		{"read after close", func(t *testing.T, a, b net.Conn) (int, error) {
			a.Close()
			return a.Read(make([]byte, 8))
		}, outcome{closed: true, op: "read"}},
		{"closed while reading", func(t *testing.T, a, b net.Conn) (int, error) {
			time.AfterFunc(50*time.Millisecond, func() { a.Close() })
			return a.Read(make([]byte, 8))
		}, outcome{closed: true, op: "read"}},
		{"peer reset", func(t *testing.T, a, b net.Conn) (int, error) {
			b.(*net.TCPConn).SetLinger(0)
			b.Close() // the read waits for the reset if it is not there yet
			return a.Read(make([]byte, 8))
		}, outcome{reset: true, op: "read"}},
		{"write after close", func(t *testing.T, a, b net.Conn) (int, error) {
			a.Close()
			return a.Write([]byte("x"))
		}, outcome{closed: true, op: "write"}},
		{"write deadline while the peer reads nothing", func(t *testing.T, a, b net.Conn) (int, error) {
			// Long enough that a loaded machine still runs the write
			// before the deadline (100 ms saw 0 bytes at load 20).
			a.SetWriteDeadline(time.Now().Add(time.Second))
			n, err := a.Write(make([]byte, 64<<20))
			if n == 0 || n >= 64<<20 {
				t.Errorf("wrote %d bytes before the deadline: want some, not all", n)
			}
			return 0, err
		}, outcome{timeout: true, op: "write"}},
		{"write to a reset peer", func(t *testing.T, a, b net.Conn) (int, error) {
			b.(*net.TCPConn).SetLinger(0)
			b.Close()
			a.SetWriteDeadline(time.Now().Add(2 * time.Second)) // bounds the loop if no reset came
			var err error
			for err == nil {
				_, err = a.Write([]byte("x")) // one may go out before the reset is seen
			}
			return 0, err
		}, outcome{reset: true, op: "write"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			modes(t, func(t *testing.T, raw bool) {
				a, b := pair(t, raw)
				if got := classify(tc.run(t, a, b)); got != tc.want {
					t.Fatalf("got %+v, want %+v", got, tc.want)
				}
			})
		})
	}
}

// The wrapper keeps what callers look for on a TCP connection.
func TestWrapKeepsConnMethods(t *testing.T) {
	a, b := pair(t, true)
	if runtime.GOOS != "linux" {
		t.Skip("Wrap returns the connection itself off linux")
	}
	if _, ok := a.(syscall.Conn); !ok {
		t.Fatal("no SyscallConn")
	}
	cw, ok := a.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("no CloseWrite")
	}
	a.Write([]byte("bye"))
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "bye" {
		t.Fatalf("peer read %q, %v after CloseWrite", got, err)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if Wrap(p1) != p1 {
		t.Fatal("Wrap changed a connection without a descriptor")
	}
}

// BenchmarkPingPong: one byte each way per iteration over loopback, the
// server end net's or raw. Run with both cores busy elsewhere the gap
// grows (sysmon's retakes); alone it shows the per-call cost.
func BenchmarkPingPong(b *testing.B) {
	for _, raw := range []bool{false, true} {
		name := "net"
		if raw {
			name = "raw"
		}
		b.Run(name, func(b *testing.B) {
			srv, cli := pair(b, raw)
			go func() {
				buf := make([]byte, 1)
				for {
					if _, err := srv.Read(buf); err != nil {
						return
					}
					if _, err := srv.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := cli.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(cli, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
