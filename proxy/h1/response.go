package h1

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// pendingMax is how much body a response without a Content-Length holds
// back: a body that ends within it gets a Content-Length, a longer one is
// sent chunked.
const pendingMax = 4 << 10

// sniffLen is how much of the body http.DetectContentType looks at.
const sniffLen = 512

// response is the http.ResponseWriter of one request; a connection reuses
// it (and its header map) for every request it serves.
type response struct {
	c    *conn
	bw   *bufio.Writer
	hdr  http.Header
	head bool // HEAD request: no body on the wire

	status      int
	wroteHeader bool  // WriteHeader called with a final status
	committed   bool  // status line and header are in bw
	declared    int64 // Content-Length sent, or -1
	written     int64 // body bytes accepted
	chunked     bool
	noBody      bool // status or method forbids a body
	closeAfter  bool // close the connection after this response
	err         error
	pending     []byte
	num         [20]byte // formats lengths without allocating
}

func (w *response) reset(head, closeAfter bool) {
	clear(w.hdr)
	w.head = head
	w.status = 0
	w.wroteHeader, w.committed, w.chunked, w.noBody = false, false, false, false
	w.declared, w.written = -1, 0
	w.closeAfter = closeAfter
	w.err = nil
	w.pending = w.pending[:0]
}

func (w *response) Header() http.Header { return w.hdr }

// WriteHeader records the status; the header goes out with the first body
// bytes, a Flush or the end of the handler, so that a short body can be
// given a Content-Length. 1xx statuses other than 101 are written at once
// and the handler goes on to its final status.
func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		writeStatus(w.bw, code)
		writeHeaderMap(w.bw, w.hdr, true)
		w.bw.WriteString("\r\n")
		w.flushErr()
		return
	}
	w.wroteHeader = true
	w.status = code
	if code == http.StatusNoContent || code == http.StatusNotModified || code < 200 {
		w.noBody = true
	}
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	if !w.committed {
		if cl, ok := w.contentLength(); ok {
			w.commit(cl, false, false, p)
		} else if len(w.pending)+len(p) <= pendingMax {
			w.pending = append(w.pending, p...)
			w.written += int64(len(p))
			return len(p), nil
		} else {
			w.commit(-1, true, false, w.sniffData(p))
		}
	}
	n := len(p)
	var err error
	if w.declared >= 0 && w.written+int64(n) > w.declared {
		n = int(w.declared - w.written)
		err = http.ErrContentLength
	}
	w.written += int64(n)
	if w.head {
		return n, err
	}
	if w.chunked {
		if n > 0 {
			w.writeChunk(p[:n])
		}
	} else {
		w.bw.Write(p[:n])
	}
	if e := w.writeErr(); e != nil {
		return 0, e
	}
	return n, err
}

// Flush sends the header and the body so far.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError is Flush for http.ResponseController.
func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		if cl, ok := w.contentLength(); ok {
			w.commit(cl, false, false, w.pending)
		} else {
			w.commit(-1, true, false, w.pending)
		}
	}
	return w.flushErr()
}

// finish completes the response after the handler returned.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		cl, ok := w.contentLength()
		// The whole body is known: give it a length (a HEAD response only
		// when the handler wrote the body it would have sent, as net/http).
		addCL := !ok && !w.noBody && !(w.head && w.written == 0)
		if addCL {
			cl = int64(len(w.pending))
		}
		w.commit(cl, false, addCL, w.pending)
	}
	if w.chunked {
		w.bw.WriteString("0\r\n\r\n")
	}
	if w.declared >= 0 && w.written != w.declared && !w.head && !w.noBody {
		w.closeAfter = true // the client cannot find the end of this body
	}
	if w.writeErr() != nil {
		w.closeAfter = true
	}
}

// contentLength is the handler's Content-Length header, if valid.
func (w *response) contentLength() (int64, bool) {
	v, ok := w.hdr["Content-Length"]
	if !ok || len(v) != 1 {
		if ok {
			delete(w.hdr, "Content-Length")
		}
		return -1, false
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || n < 0 {
		delete(w.hdr, "Content-Length")
		return -1, false
	}
	return n, true
}

// commit writes the status line and the header into bw, then the body
// held back so far (pending). cl is the Content-Length to frame the body
// with (-1: none), and addCL writes it as a field the handler did not set;
// chunked frames it in chunks instead. body is the start of the body, for
// Content-Type sniffing. As net/http does, a response that has no body
// (1xx, 204, 304) or answers HEAD is neither framed nor chunked.
func (w *response) commit(cl int64, chunked, addCL bool, body []byte) {
	w.committed = true
	h := w.hdr
	_, hasTE := h["Transfer-Encoding"]
	delete(h, "Transfer-Encoding")
	if w.noBody {
		delete(h, "Content-Length")
		if w.status == http.StatusNotModified {
			delete(h, "Content-Type")
		}
		cl, chunked, addCL = -1, false, false
	}
	if w.head {
		chunked = false
	}
	w.declared = cl
	w.chunked = chunked

	// net/http names the type of a body whose handler did not.
	ctype := ""
	if !w.noBody && !hasTE && len(body) > 0 {
		if _, ok := h["Content-Type"]; !ok {
			if ce := h["Content-Encoding"]; len(ce) == 0 || ce[0] == "" {
				ctype = http.DetectContentType(body)
			}
		}
	}

	if w.c.srv.inShutdown.Load() {
		w.closeAfter = true
	}
	addClose := false
	if conn, ok := h["Connection"]; w.closeAfter {
		// The handler's own Connection field would tell the client to
		// expect a connection that is about to close.
		if !httpguts.HeaderValuesContainsToken(conn, "close") {
			delete(h, "Connection")
			addClose = true
		}
	} else if ok && httpguts.HeaderValuesContainsToken(conn, "close") {
		w.closeAfter = true
	}

	bw := w.bw
	writeStatus(bw, w.status)
	writeHeaderMap(bw, h, false)
	if addCL {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(w.num[:0], cl, 10))
		bw.WriteString("\r\n")
	}
	if ctype != "" {
		bw.WriteString("Content-Type: ")
		bw.WriteString(ctype)
		bw.WriteString("\r\n")
	}
	if _, ok := h["Date"]; !ok {
		bw.Write(w.c.srv.date.line())
	}
	if chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if addClose {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if len(w.pending) > 0 {
		p := w.pending
		w.pending = w.pending[:0]
		n := int64(len(p))
		if cl >= 0 && n > cl {
			w.written -= n - cl
			n = cl
		}
		switch {
		case w.head: // counted in written, never sent
		case chunked:
			w.writeChunk(p)
		default:
			bw.Write(p[:n])
		}
	}
}

// WriteHead sends a response head the handler assembled itself, for a
// proxy relaying an origin's header lines without building a header map:
// the status line for code, then fields (complete header lines, each
// ending in CRLF, with no Content-Length, Transfer-Encoding or Connection
// field, and a Date field only when hasDate), then Content-Length, a Date
// line unless hasDate, Connection: close when the connection ends after
// this response, and the blank line. The header map is not sent. The body
// follows with Write and must be contentLength bytes long (a shorter one
// closes the connection; Write refuses more). It reports false, having
// done nothing, when the header was already written or the response
// cannot carry a body (HEAD, 1xx, 204, 304): the handler then uses the
// header map as usual.
func (w *response) WriteHead(code int, fields []byte, contentLength int64, hasDate bool) bool {
	if w.wroteHeader || w.head || code < 200 || code > 999 || contentLength < 0 ||
		code == http.StatusNoContent || code == http.StatusNotModified {
		return false
	}
	w.wroteHeader, w.committed = true, true
	w.status = code
	w.declared = contentLength
	if w.c.srv.inShutdown.Load() {
		w.closeAfter = true
	}
	bw := w.bw
	writeStatus(bw, code)
	bw.Write(fields)
	bw.WriteString("Content-Length: ")
	bw.Write(strconv.AppendInt(w.num[:0], contentLength, 10))
	bw.WriteString("\r\n")
	if !hasDate {
		bw.Write(w.c.srv.date.line())
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	return true
}

// sniffData is the start of the body for Content-Type sniffing: what was
// held back, topped up from p (into pending's spare capacity).
func (w *response) sniffData(p []byte) []byte {
	s := w.pending
	if len(s) < sniffLen && len(p) > 0 {
		s = append(s, p[:min(len(p), sniffLen-len(s))]...)
	}
	return s
}

func (w *response) writeChunk(p []byte) {
	w.bw.Write(strconv.AppendInt(w.num[:0], int64(len(p)), 16))
	w.bw.WriteString("\r\n")
	w.bw.Write(p)
	w.bw.WriteString("\r\n")
}

func (w *response) flushErr() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = err
		w.closeAfter = true
	}
	return w.err
}

// writeErr reports a write bufio has failed: it keeps the first error
// and returns it from every later call, Write(nil) included.
func (w *response) writeErr() error {
	if w.err == nil {
		if _, err := w.bw.Write(nil); err != nil {
			w.err = err
			w.closeAfter = true
		}
	}
	return w.err
}

// writeHeaderMap writes every field of h, but for an informational
// response (noFraming) Content-Length and Transfer-Encoding, which belong
// to the final one. A value's CR and LF become spaces, as net/http does,
// so no handler can split a response; a field name that is not a token is
// skipped.
func writeHeaderMap(bw *bufio.Writer, h http.Header, noFraming bool) {
	for k, vv := range h {
		if !validFieldName(k) || noFraming && (k == "Content-Length" || k == "Transfer-Encoding") {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 {
				v = newlineToSpace.Replace(v)
			}
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
}

var newlineToSpace = strings.NewReplacer("\r", " ", "\n", " ")

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// statusLines holds "HTTP/1.1 NNN Text\r\n" for the known statuses.
var statusLines = func() (t [600]string) {
	for code := 100; code < 600; code++ {
		if txt := http.StatusText(code); txt != "" {
			t[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + txt + "\r\n"
		}
	}
	return t
}()

func writeStatus(bw *bufio.Writer, code int) {
	if code < len(statusLines) && statusLines[code] != "" {
		bw.WriteString(statusLines[code])
		return
	}
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteString(" status code ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteString("\r\n")
}

// dateCache holds the "Date: …\r\n" line, rebuilt once a second.
type dateCache struct {
	v atomic.Pointer[dateLine]
}

type dateLine struct {
	sec  int64
	line []byte
}

func (d *dateCache) line() []byte {
	now := time.Now()
	if l := d.v.Load(); l != nil && l.sec == now.Unix() {
		return l.line
	}
	l := &dateLine{sec: now.Unix()}
	l.line = now.UTC().AppendFormat([]byte("Date: "), http.TimeFormat)
	l.line = append(l.line, "\r\n"...)
	d.v.Store(l)
	return l.line
}
