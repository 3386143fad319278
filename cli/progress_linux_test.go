package cli

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: what edgectl's stderr is when a
// person runs it.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestProgressOnlyOnATerminal: a long operation's status line reaches a
// terminal, rewritten in place at most every progressEvery and erased at
// the end; a pipe or a file (a script, CI) gets nothing at all.
func TestProgressOnlyOnATerminal(t *testing.T) {
	master, tty := openPTY(t)
	clock := time.Unix(0, 0)
	g := &globals{stderr: tty}
	p := g.progress()
	if p.w == nil {
		t.Fatal("stderr is a terminal, but progress is quiet")
	}
	p.now = func() time.Time { return clock }
	p.printf(false, "saving snapshot: %s received", byteCount(3<<20))
	p.printf(false, "saving snapshot: %s received", byteCount(4<<20)) // same instant: skipped
	clock = clock.Add(progressEvery)
	p.printf(false, "saving snapshot: %s received", byteCount(5<<20))
	p.done()

	buf := make([]byte, 4096)
	_ = master.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := master.Read(buf)
	if err != nil {
		t.Fatalf("read the terminal: %v", err)
	}
	got := string(buf[:n])
	want := "\r\033[Ksaving snapshot: 3.0 MiB received\r\033[Ksaving snapshot: 5.0 MiB received\r\033[K"
	if got != want {
		t.Fatalf("terminal got %q, want %q", got, want)
	}

	var pipe bytes.Buffer
	g = &globals{stderr: &pipe}
	p = g.progress()
	p.printf(true, "applying: %d of %d writes", 1, 2)
	p.done()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if q := (&globals{stderr: devnull}).progress(); q.w != nil {
		t.Error("/dev/null is not a terminal, but progress writes to it")
	}
	if pipe.Len() != 0 {
		t.Errorf("a non-terminal stderr got %q", pipe.String())
	}
	if s := byteCount(512); s != "512 B" {
		t.Errorf("byteCount(512) = %q", s)
	}
	if s := byteCount(1536); !strings.HasPrefix(s, "1.5 KiB") {
		t.Errorf("byteCount(1536) = %q", s)
	}
}
