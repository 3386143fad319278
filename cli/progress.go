package cli

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progressEvery is the shortest time between two progress lines: often
// enough to look alive, rare enough not to cost anything.
const progressEvery = 200 * time.Millisecond

// progress is one long operation's status line on a terminal: it is
// rewritten in place on stderr ("\r" and erase-line), at most every
// progressEvery, and erased when the operation ends, so the command's
// own output (stdout, maybe JSON) is never mixed with it. When stderr is
// not a terminal (a script, CI, a pipe) it writes nothing at all.
type progress struct {
	w    io.Writer // nil: quiet
	last time.Time
	now  func() time.Time
}

// progress returns the status line for a long operation, quiet unless
// stderr is a terminal.
func (g *globals) progress() *progress {
	f, ok := g.stderr.(*os.File)
	if !ok || !isTerminal(f) {
		return &progress{}
	}
	return &progress{w: f, now: time.Now}
}

// printf shows the status, unless one was shown less than progressEvery
// ago; force shows it regardless (a last value worth seeing).
func (p *progress) printf(force bool, format string, args ...any) {
	if p.w == nil {
		return
	}
	if now := p.now(); force || now.Sub(p.last) >= progressEvery {
		p.last = now
		fmt.Fprintf(p.w, "\r\033[K"+format, args...)
	}
}

// done erases the status line.
func (p *progress) done() {
	if p.w != nil && !p.last.IsZero() {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// byteCount formats n as people read sizes: 512 B, 3.4 MiB.
func byteCount(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
