package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// The lean client's wire format for the common exchange: a request
// without a body, answered with a Content-Length body. Both directions
// skip net/http's general machinery (per-request header sorting and
// copying, textproto's line-by-line allocation); anything else (bodies,
// chunked or close-delimited responses, 1xx, HEAD, 204/304, HTTP/1.0,
// odd headers) goes through req.Write and http.ReadResponse as before.

// writeRequest writes a bodiless req in one go. It returns false, having
// written nothing, when req needs req.Write.
func writeRequest(bw *bufio.Writer, req *http.Request) bool {
	u := req.URL
	if (req.Body != nil && req.Body != http.NoBody) || len(req.Trailer) > 0 ||
		len(req.TransferEncoding) > 0 || u.Opaque != "" || u.User != nil {
		return false
	}
	host := req.Host
	if host == "" {
		host = u.Host
	}
	if !httpguts.ValidHostHeader(host) || !validMethodToken(req.Method) {
		return false
	}
	// The header reached here through a server that validated it; what
	// matters for the framing is that no name or value can end a line.
	// Anything odd goes to req.Write, which has its own rules.
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 || strings.IndexByte(v, 0) >= 0 {
				return false
			}
		}
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	bw.WriteString(path)
	if u.ForceQuery || u.RawQuery != "" {
		bw.WriteByte('?')
		bw.WriteString(u.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(textproto.TrimString(v))
			bw.WriteString("\r\n")
		}
	}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
	return true
}

func validMethodToken(m string) bool {
	if m == "" {
		return true
	}
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

var (
	crlf2 = []byte("\r\n\r\n")
	lf2   = []byte("\n\n")
)

// readResponseFast parses a response whose header block fits in br's
// buffer and whose body has a Content-Length. It returns nil, having
// consumed nothing, when the response needs http.ReadResponse.
func readResponseFast(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodHead {
		return nil, nil
	}
	block, code, eol, err := peekHead(br)
	if block == nil {
		return nil, err
	}
	n := bytes.Count(block[eol+1:len(block)-2], []byte("\n"))

	s := string(block)
	lr := &leanResponse{}
	resp := &lr.resp
	resp.Status = strings.TrimLeft(s[9:eol-1], " ")
	resp.StatusCode = code
	resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	resp.Request = req
	h := make(http.Header, n)
	vals := lr.vals[:0]
	if n > len(lr.vals) {
		vals = make([]string, 0, n)
	}
	vals = vals[:n]
	vi := 0
	cl := int64(-1)
	for off := eol + 1; off < len(s)-2; {
		colon, vs, ve, next, ok := headerLine(block, off)
		if !ok {
			return nil, nil
		}
		k, v := s[off:colon], s[vs:ve]
		off = next
		k = textproto.CanonicalMIMEHeaderKey(k)
		switch k {
		case "Content-Length":
			if cl >= 0 {
				return nil, nil // repeated: net/http decides
			}
			x, ok := parseContentLength(block[vs:ve])
			if !ok {
				return nil, nil
			}
			cl = x
		case "Transfer-Encoding", "Trailer":
			return nil, nil
		case "Connection":
			// Kept, unlike net/http, which drops every Connection field
			// once one says close, and with it the names of the other
			// hop-by-hop fields: the proxy strips the field and what it
			// names (see connectionFields).
			if httpguts.HeaderValuesContainsToken([]string{v}, "close") {
				resp.Close = true
			}
		}
		if old, dup := h[k]; dup {
			h[k] = append(old, v)
			continue
		}
		vals[vi] = v
		h[k] = vals[vi : vi+1 : vi+1]
		vi++
	}
	if cl < 0 {
		return nil, nil // chunked or until close: net/http's body reader
	}
	br.Discard(len(block))
	resp.Header = h
	resp.ContentLength = cl
	if cl == 0 {
		resp.Body = http.NoBody
	} else {
		lr.cl = clBody{br: br, n: cl, lr: lr}
		resp.Body = &lr.cl
	}
	return resp, nil
}

// connectionFields returns the values of the Connection fields of the
// response head buffered in br, or nil when there are none or the head is
// not all buffered. http.ReadResponse drops every Connection field of a
// response that says close, and with them the other fields they name as
// hop-by-hop (Connection: close, X-Hop); the lean client puts the values
// back so that the proxy can strip X-Hop too. It consumes nothing.
func connectionFields(br *bufio.Reader) []string {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlf2)
	if j := bytes.Index(buf, lf2); j >= 0 && (end < 0 || j < end) {
		end = j
	}
	if end < 0 {
		return nil
	}
	var vals []string
	for i, line := range bytes.Split(buf[:end], []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		k, v, ok := bytes.Cut(line, []byte(":"))
		if i == 0 || !ok || !bytes.EqualFold(k, []byte("Connection")) {
			continue
		}
		vals = append(vals, string(bytes.Trim(v, " \t")))
	}
	return vals
}

// peekHead reads a response head into br's buffer, consuming nothing,
// and checks its status line: "HTTP/1.1 NNN reason" with a status of
// 200–599 other than 204 and 304 (which have no body to frame) and no
// control byte in the reason. block is nil, with err nil, for a head the
// fast parsers leave to http.ReadResponse: one of those statuses, bare LF
// line ends, or a head that does not fit in the buffer. eol is the index
// of the status line's LF.
func peekHead(br *bufio.Reader) (block []byte, code, eol int, err error) {
	if _, err := br.Peek(1); err != nil {
		return nil, 0, 0, err
	}
	for {
		buf, _ := br.Peek(br.Buffered())
		i := bytes.Index(buf, crlf2)
		if j := bytes.Index(buf, lf2); j >= 0 && (i < 0 || j < i) {
			return nil, 0, 0, nil // bare LF line ends: net/http copes
		}
		if i >= 0 {
			block = buf[:i+4]
			break
		}
		if len(buf) >= br.Size() {
			return nil, 0, 0, nil // a large header: net/http reads it
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, 0, 0, nil
			}
			return nil, 0, 0, err
		}
	}
	// Status line: "HTTP/1.1 200 OK".
	if len(block) < 16 || string(block[:9]) != "HTTP/1.1 " || block[12] != ' ' && block[12] != '\r' {
		return nil, 0, 0, nil
	}
	code = int(block[9]-'0')*100 + int(block[10]-'0')*10 + int(block[11]-'0')
	if block[9] < '2' || block[9] > '5' || block[10] < '0' || block[10] > '9' || block[11] < '0' || block[11] > '9' ||
		code == http.StatusNoContent || code == http.StatusNotModified {
		return nil, 0, 0, nil
	}
	eol = bytes.IndexByte(block, '\n')
	if block[eol-1] != '\r' {
		return nil, 0, 0, nil
	}
	for _, c := range block[12 : eol-1] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, 0, 0, nil // a control byte in the reason phrase
		}
	}
	return block, code, eol, nil
}

// headerLine reads the field line of head that starts at off (lines end
// in CRLF): its name is head[off:colon] and its value head[vs:ve], with
// spaces and tabs around it trimmed (only those: a CR left in a value
// makes it invalid, as it is for net/http); next is where the following
// line starts. ok is false for what the fast parsers leave to
// http.ReadResponse: a bare LF, obsolete line folding, no colon, a name
// that is not a token, a value with a control byte.
func headerLine(head []byte, off int) (colon, vs, ve, next int, ok bool) {
	end := bytes.IndexByte(head[off:], '\n')
	if end < 1 || head[off+end-1] != '\r' {
		return 0, 0, 0, 0, false
	}
	ln := head[off : off+end-1]
	c := bytes.IndexByte(ln, ':')
	if c <= 0 || ln[0] == ' ' || ln[0] == '\t' || !validFieldName(ln[:c]) {
		return 0, 0, 0, 0, false
	}
	vs, ve = off+c+1, off+end-1
	for vs < ve && (head[vs] == ' ' || head[vs] == '\t') {
		vs++
	}
	for ve > vs && (head[ve-1] == ' ' || head[ve-1] == '\t') {
		ve--
	}
	if !validFieldValue(head[vs:ve]) {
		return 0, 0, 0, 0, false
	}
	return off + c, vs, ve, off + end + 1, true
}

// parseContentLength parses a Content-Length value as net/http does:
// digits only (no sign), within int64.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || v[0] < '0' || v[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// leanResponse is a response parsed by readResponseFast with its body
// readers, in one allocation; wrap finds it through the clBody.
type leanResponse struct {
	resp http.Response
	cl   clBody
	lean leanBody
	vals [16]string // header values of a typical response
}

// clBody reads exactly n bytes of body from br. It returns io.EOF with
// the last bytes, so the connection goes back to the pool without another
// call.
type clBody struct {
	br *bufio.Reader
	n  int64
	lr *leanResponse // the allocation it belongs to
}

func (b *clBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	k, err := b.br.Read(p)
	b.n -= int64(k)
	if b.n == 0 {
		return k, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return k, err
}

func (b *clBody) Close() error { return nil }
