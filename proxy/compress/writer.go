package compress

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
)

// ResponseWriter compresses a response for the client as the package doc
// describes. Get one with Compressor.Wrap and Close it when the handler is
// done; it must not be used after Close.
type ResponseWriter struct {
	rw   http.ResponseWriter
	c    *Compressor
	enc  Encoding // negotiated for the client
	code int
	head bool

	state state
	buf   []byte // body held while undecided (unknown length, < MinSize)
	zw    encoder
}

type state uint8

const (
	stateNew         state = iota // no status written
	statePending                  // eligible, length unknown, buffering
	stateCompressing              // headers sent, body through zw
	statePassThrough              // headers sent, body as is
	stateClosed
)

var errClosed = errors.New("compress: write after Close")

var (
	_ http.Flusher                              = (*ResponseWriter)(nil)
	_ interface{ Unwrap() http.ResponseWriter } = (*ResponseWriter)(nil)
)

// Wrap returns a ResponseWriter for the response to r, which compresses with
// the encoding Negotiate picks from r's Accept-Encoding. For HEAD requests
// it sets the headers a GET would get and writes no body.
func (c *Compressor) Wrap(w http.ResponseWriter, r *http.Request) *ResponseWriter {
	cw := c.writers.Get().(*ResponseWriter)
	cw.rw, cw.c = w, c
	cw.enc = Negotiate(hget(r.Header, "Accept-Encoding"))
	cw.head = r.Method == http.MethodHead
	cw.state = stateNew
	return cw
}

// Encoding returns the encoding the response is being compressed with, or
// Identity (also before the decision is made).
func (cw *ResponseWriter) Encoding() Encoding {
	if cw.state == stateCompressing {
		return cw.enc
	}
	return Identity
}

// Header returns the response header map of the wrapped writer.
func (cw *ResponseWriter) Header() http.Header { return cw.rw.Header() }

// Unwrap returns the wrapped writer, for http.ResponseController.
func (cw *ResponseWriter) Unwrap() http.ResponseWriter { return cw.rw }

// WriteHeader decides whether to compress and sends the status, except for
// an eligible response of unknown length, whose status is held until
// MinSize bytes are written, Flush or Close.
func (cw *ResponseWriter) WriteHeader(code int) {
	if cw.state != stateNew {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		cw.rw.WriteHeader(code) // informational: the real status follows
		return
	}
	h := cw.rw.Header()
	if !cw.c.eligible(h, code) {
		cw.state = statePassThrough
		cw.rw.WriteHeader(code)
		return
	}
	addVary(h)
	if cw.enc == Identity {
		cw.state = statePassThrough
		cw.rw.WriteHeader(code)
		return
	}
	cw.code = code
	if hget(h, "Content-Length") != "" { // known and ≥ MinSize
		cw.start()
		return
	}
	cw.state = statePending
}

// start sends the headers of a compressed response and sets up the encoder.
func (cw *ResponseWriter) start() {
	h := cw.rw.Header()
	h.Del("Content-Length")
	h.Del("Accept-Ranges")
	h.Set("Content-Encoding", cw.enc.String())
	weakenETag(h)
	cw.rw.WriteHeader(cw.code)
	cw.state = stateCompressing
	if cw.head {
		return
	}
	cw.zw = cw.c.getEncoder(cw.enc, cw.rw)
}

// Write compresses or passes p on, sending the status 200 first if none was.
func (cw *ResponseWriter) Write(p []byte) (int, error) {
	if cw.state == stateNew {
		cw.WriteHeader(http.StatusOK)
	}
	switch cw.state {
	case stateCompressing:
		if cw.zw == nil { // HEAD
			return len(p), nil
		}
		return cw.zw.Write(p)
	case statePending:
		if len(cw.buf)+len(p) < cw.c.cfg.MinSize {
			cw.buf = append(cw.buf, p...)
			return len(p), nil
		}
		cw.start()
		if err := cw.writeBuffered(); err != nil {
			return 0, err
		}
		return cw.Write(p)
	case stateClosed:
		return 0, errClosed
	}
	return cw.rw.Write(p)
}

func (cw *ResponseWriter) writeBuffered() error {
	if len(cw.buf) == 0 {
		return nil
	}
	var err error
	if cw.zw != nil {
		_, err = cw.zw.Write(cw.buf)
	} else if !cw.head {
		_, err = cw.rw.Write(cw.buf)
	}
	cw.buf = cw.buf[:0]
	return err
}

// Flush sends what was written so far to the client. A response still held
// for its length is compressed from here on, as a stream.
func (cw *ResponseWriter) Flush() { _ = cw.FlushError() }

// FlushError is Flush returning the error, as http.ResponseController uses.
func (cw *ResponseWriter) FlushError() error {
	switch cw.state {
	case stateNew:
		cw.WriteHeader(http.StatusOK)
		if cw.state == statePending {
			cw.start()
		}
	case statePending:
		cw.start()
		if err := cw.writeBuffered(); err != nil {
			return err
		}
	case stateClosed:
		return nil
	}
	if cw.zw != nil {
		if err := cw.zw.Flush(); err != nil {
			return err
		}
	}
	if f, ok := cw.rw.(http.Flusher); ok {
		f.Flush()
		return nil
	}
	return http.NewResponseController(cw.rw).Flush()
}

// Hijack lets upgraded connections (101) through the wrapper.
func (cw *ResponseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(cw.rw).Hijack()
}

// Close finishes the response: a held short body is sent as is with its
// Content-Length, an encoder is closed and returned to its pool, and cw
// goes back to the Compressor's pool.
func (cw *ResponseWriter) Close() error {
	var err error
	switch cw.state {
	case statePending:
		cw.rw.Header().Set("Content-Length", strconv.Itoa(len(cw.buf)))
		cw.rw.WriteHeader(cw.code)
		cw.state = statePassThrough
		if !cw.head {
			err = cw.writeBuffered()
		}
	case stateCompressing:
		if cw.zw != nil {
			err = cw.zw.Close()
			cw.c.putEncoder(cw.enc, cw.zw)
			cw.zw = nil
		}
	case stateClosed:
		return nil
	}
	c := cw.c
	buf := cw.buf[:0]
	if cap(buf) > 4*c.cfg.MinSize {
		buf = nil
	}
	*cw = ResponseWriter{buf: buf, state: stateClosed}
	c.writers.Put(cw)
	return err
}
