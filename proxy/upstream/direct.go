package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Direct is an origin response whose head the caller relays without
// parsing it into an http.Header (RoundTripDirect): the proxy's direct
// path edits the header lines as bytes.
type Direct struct {
	// StatusCode is 200–599, never 204 or 304.
	StatusCode int
	// ContentLength is the body's length, from the one Content-Length
	// field the response has.
	ContentLength int64
	// Fields are the header field lines as the origin sent them, each
	// ending in CRLF, without the status line and the blank line; names
	// and values are valid (no obsolete line folding) and the response
	// has no Transfer-Encoding or Trailer field. They point into the
	// connection's read buffer: valid until the first Body.Read or Close.
	Fields []byte
	// Body reads the ContentLength bytes of the body; Close must be
	// called. At EOF the connection goes back to the pool.
	Body io.ReadCloser
}

// DirectTripper is implemented by the round trippers Pools hands out.
type DirectTripper interface {
	// RoundTripDirect sends a bodiless GET and returns the response as
	// a Direct when its head allows it (HTTP/1.1, Content-Length body,
	// head within the connection's buffer, …), else as an
	// *http.Response, exactly as RoundTrip would have. Only origins on
	// the lean client answer with a Direct: plain http, and https
	// origins that speak HTTP/1.1 (one that picks HTTP/2 by ALPN goes to
	// http.Transport). ok is false (and nothing was sent) for any other
	// pool or request.
	//
	// A Direct lives in buf when buf is not nil (else in a new one):
	// buf must not serve another round trip before d.Body is closed.
	RoundTripDirect(req *http.Request, buf *DirectBuf) (d *Direct, resp *http.Response, ok bool, err error)
}

// DirectBuf holds a Direct and its body readers, for a caller that keeps
// it in a value it allocates per request anyway: the round trip then
// allocates nothing for them. The zero value is ready to use.
type DirectBuf struct {
	// Interim, when set, receives the informational responses (1xx
	// other than 101) the origin sends before its final one. A response
	// that follows them is never a Direct.
	Interim Interim

	dr directResponse
}

// RoundTripDirect implements DirectTripper.
func (pl *pool) RoundTripDirect(req *http.Request, buf *DirectBuf) (*Direct, *http.Response, bool, error) {
	if !pl.usesLean(req) || req.Method != http.MethodGet ||
		(req.Body != nil && req.Body != http.NoBody) {
		return nil, nil, false, nil
	}
	if buf == nil {
		buf = new(DirectBuf)
	}
	buf.dr = directResponse{}
	d, resp, err := pl.lean.roundTripDirect(req, &buf.dr, buf.Interim)
	if errors.Is(err, errOriginH2) {
		return nil, nil, false, nil // nothing sent: the caller's full path takes it
	}
	return d, resp, true, err
}

// directResponse is a Direct with its body readers, in one allocation.
type directResponse struct {
	d         Direct
	ctx       context.Context
	cl        clBody
	lean      leanBody
	closeConn bool // the origin sent Connection: close
}

func (lp *leanPool) roundTripDirect(req *http.Request, dr *directResponse, in Interim) (*Direct, *http.Response, error) {
	ctx := req.Context()
	dr.ctx = ctx
	for attempt := 0; ; attempt++ {
		c, err := lp.conn(ctx, attempt > 0)
		if err != nil {
			return nil, nil, err
		}
		resp, err := lp.exchange(ctx, c, req, dr, in)
		switch {
		case err == nil && resp == nil:
			return &dr.d, nil, nil
		case err == nil:
			return nil, resp, nil
		}
		var oe *opError
		if attempt == 0 && c.reused && c.nread == 0 && ctx.Err() == nil && !errors.As(err, &oe) {
			continue // the origin closed a kept-alive connection: it saw nothing
		}
		return nil, nil, err
	}
}

// wrapDirect sets dr's body up to read the ContentLength bytes after the
// head. The connection goes back to the pool at the body's EOF, which
// needs a Read even for an empty body: until then no other exchange can
// refill the buffer Fields points into.
func (lp *leanPool) wrapDirect(c *leanConn, dr *directResponse, stop stopper) {
	dr.cl = clBody{br: c.br, n: dr.d.ContentLength}
	dr.lean = leanBody{lp: lp, c: c, body: &dr.cl, stop: stop, keep: !dr.closeConn, ctx: dr.ctx}
	dr.d.Body = &dr.lean
}

// peekDirect reads the response head into c's buffer and fills d from it
// when the response is one a Direct can carry, consuming nothing. ok is
// false for anything else (left for readResponse): HTTP/1.0, 1xx, 204,
// 304, no or repeated Content-Length, Transfer-Encoding, bare LF line
// ends, obsolete line folding, invalid names or values, or a head that
// does not fit in the buffer.
func peekDirect(c *leanConn, dr *directResponse) (ok bool, err error) {
	br := c.br
	block, code, eol, err := peekHead(br)
	if block == nil {
		return false, err
	}
	fields := block[eol+1 : len(block)-2]
	cl := int64(-1)
	closeConn := false
	for off := 0; off < len(fields); {
		colon, vs, ve, next, ok := headerLine(fields, off)
		if !ok {
			return false, nil
		}
		k, v := fields[off:colon], fields[vs:ve]
		off = next
		switch {
		case equalFold(k, "Content-Length"):
			if cl >= 0 {
				return false, nil
			}
			x, ok := parseContentLength(v)
			if !ok {
				return false, nil
			}
			cl = x
		case equalFold(k, "Transfer-Encoding"), equalFold(k, "Trailer"):
			return false, nil
		case equalFold(k, "Connection"):
			if httpguts.HeaderValuesContainsToken([]string{string(v)}, "close") {
				closeConn = true
			}
		}
	}
	if cl < 0 {
		return false, nil
	}
	dr.d.StatusCode, dr.d.ContentLength, dr.d.Fields = code, cl, fields
	dr.closeConn = closeConn
	// Consumed but not overwritten: bufio refills its buffer only in a
	// later read, and the caller is done with Fields before the first.
	br.Discard(len(block))
	return true, nil
}

// validFieldName is httpguts.ValidHeaderFieldName for bytes.
func validFieldName(k []byte) bool {
	for _, c := range k {
		if !tokenByte[c] {
			return false
		}
	}
	return len(k) > 0
}

// tokenByte is httpguts.IsTokenRune as a table, for the byte loops.
var tokenByte = func() (t [256]bool) {
	for c := range 128 {
		t[c] = httpguts.IsTokenRune(rune(c))
	}
	return t
}()

// validFieldValue is httpguts.ValidHeaderFieldValue for bytes: no
// control bytes but tab.
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// equalFold reports whether the ASCII name k equals the canonical name
// want, ignoring case, without allocating.
func equalFold(k []byte, want string) bool {
	if len(k) != len(want) {
		return false
	}
	for i := 0; i < len(k); i++ {
		a, b := k[i], want[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// Response turns d into the *http.Response RoundTrip would have
// returned, for a caller that finds it cannot relay the head as it is
// (it needs the body re-encoded, say). Call it before reading Body.
func (d *Direct) Response(req *http.Request) *http.Response {
	s := string(d.Fields)
	n := strings.Count(s, "\n")
	resp := &http.Response{
		Status:        strconv.Itoa(d.StatusCode) + " " + http.StatusText(d.StatusCode),
		StatusCode:    d.StatusCode,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        make(http.Header, n),
		ContentLength: d.ContentLength,
		Body:          d.Body,
		Request:       req,
	}
	for s != "" {
		ln, rest, _ := strings.Cut(s, "\n")
		s = rest
		k, v, _ := strings.Cut(strings.TrimSuffix(ln, "\r"), ":")
		k, v = textproto.CanonicalMIMEHeaderKey(k), textproto.TrimString(v)
		if k == "Connection" && httpguts.HeaderValuesContainsToken([]string{v}, "close") {
			resp.Close = true // the field stays, as in readResponseFast
		}
		resp.Header[k] = append(resp.Header[k], v)
	}
	return resp
}
