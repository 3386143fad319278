package h1

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// parsed is one request in a single allocation, apart from the header
// block string, the header map and its values (serveOne sets the
// request's context without another one).
type parsed struct {
	req  http.Request
	url  url.URL
	ctx  requestContext
	vals [16]string // header values of a typical request, without another allocation
}

var (
	crlf2  = []byte("\r\n\r\n")
	lflf   = []byte("\n\n")
	lfcrlf = []byte("\n\r\n")
)

// parseRequest parses a complete header block (ending in CRLF CRLF) into
// a request without a body. ok is false when the request is not one this
// server handles; the caller then hands the connection to the fallback,
// which answers malformed requests as net/http always has.
func parseRequest(block []byte, remoteAddr string) (p *parsed, closeAfter bool, ok bool) {
	// Request line.
	eol := bytes.IndexByte(block, '\n')
	if eol < 1 || block[eol-1] != '\r' {
		return nil, false, false
	}
	line := block[:eol-1]
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return nil, false, false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return nil, false, false // HTTP/1.0 and HTTP/2 preface go to net/http
	}
	if !validMethod(line[:sp1]) || rest[0] != '/' {
		return nil, false, false // absolute-form, authority-form, '*'
	}

	// Count header lines to size the map and the values.
	hdrs := block[eol+1 : len(block)-2]
	n := bytes.Count(hdrs, []byte("\n"))

	s := string(block) // the one copy: everything below slices it
	p = &parsed{}
	r := &p.req
	r.Method = s[:sp1]
	target := s[sp1+1 : sp1+1+sp2]
	r.RequestURI = target
	if !fastURL(target, &p.url) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return nil, false, false
		}
		p.url = *u
	}
	r.URL = &p.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.RemoteAddr = remoteAddr
	r.Body = http.NoBody
	h := make(http.Header, n)
	r.Header = h
	vals := p.vals[:0]
	if n > len(p.vals) {
		vals = make([]string, 0, n)
	}
	vals = vals[:n]
	vi := 0

	off := eol + 1
	hosts, pragmas := 0, 0
	pragmaNoCache, cacheControl := false, false
	for off < len(s)-2 {
		end := strings.IndexByte(s[off:], '\n')
		if end < 1 || s[off+end-1] != '\r' {
			return nil, false, false
		}
		ln := s[off : off+end-1]
		off += end + 1
		if ln[0] == ' ' || ln[0] == '\t' {
			return nil, false, false // obsolete line folding
		}
		colon := strings.IndexByte(ln, ':')
		if colon <= 0 {
			return nil, false, false
		}
		k, v := ln[:colon], trimOWS(ln[colon+1:])
		if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			return nil, false, false
		}
		k = canonicalKey(k)
		switch k {
		case "Host":
			hosts++
			if hosts > 1 || !httpguts.ValidHostHeader(v) {
				return nil, false, false
			}
			r.Host = v
			continue
		case "Content-Length":
			if v != "0" {
				return nil, false, false // a body: net/http reads it
			}
			if _, dup := h[k]; dup {
				continue // net/http keeps one of equal values
			}
		case "Pragma":
			pragmas++
			pragmaNoCache = pragmaNoCache || pragmas == 1 && v == "no-cache"
		case "Cache-Control":
			cacheControl = true
		case "Transfer-Encoding", "Upgrade", "Expect":
			return nil, false, false
		case "Connection":
			if httpguts.HeaderValuesContainsToken([]string{v}, "close") {
				closeAfter = true
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
	if hosts == 0 {
		return nil, false, false // net/http answers 400
	}
	if pragmaNoCache && !cacheControl {
		// As net/http does: an HTTP/1.0 cache's "no-cache" is a request
		// directive a cache in the handler must see.
		h["Cache-Control"] = []string{"no-cache"}
	}
	r.Close = closeAfter
	return p, closeAfter, true
}

// framingConflict names what makes a request's body framing ambiguous,
// or returns "": Content-Length together with Transfer-Encoding, or more
// than one Content-Length field. RFC 9112 section 6.1 lets a server
// process the first by its Transfer-Encoding alone, which net/http does,
// but then it MUST close the connection, which net/http does not: the
// bytes after the chunked body were served as another request, which a
// front end that went by Content-Length never saw (request smuggling).
// Like nginx, Edge answers both with 400 and closes. Identical repeated
// Content-Length values net/http would merge; nginx rejects them too.
// block is a complete header block.
func framingConflict(block []byte) string {
	cl, te := 0, 0
	for off := bytes.IndexByte(block, '\n') + 1; off > 0 && off < len(block); {
		end := bytes.IndexByte(block[off:], '\n')
		if end < 0 {
			break
		}
		ln := block[off : off+end]
		off += end + 1
		colon := bytes.IndexByte(ln, ':')
		if colon <= 0 {
			continue
		}
		switch k := ln[:colon]; {
		case bytes.EqualFold(k, contentLength):
			cl++
		case bytes.EqualFold(k, transferEncoding):
			te++
		}
	}
	switch {
	case cl > 0 && te > 0:
		return "Content-Length and Transfer-Encoding in one request"
	case cl > 1:
		return "more than one Content-Length"
	}
	return ""
}

var (
	contentLength    = []byte("Content-Length")
	transferEncoding = []byte("Transfer-Encoding")
)

// fastURL fills u for an origin-form target that needs no unescaping:
// every path byte is one url.URL neither unescapes nor would escape (so
// RawPath stays empty) and the query has no control characters, so the
// result is what url.ParseRequestURI returns.
func fastURL(target string, u *url.URL) bool {
	path, query := target, ""
	if i := strings.IndexByte(target, '?'); i >= 0 {
		path, query = target[:i], target[i+1:]
		u.ForceQuery = query == ""
	}
	for i := 0; i < len(path); i++ {
		if !pathByte[path[i]] {
			return false
		}
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c <= ' ' || c == 0x7f || c == '#' {
			return false
		}
	}
	u.Path, u.RawQuery = path, query
	return true
}

// pathByte marks the bytes url.URL keeps unescaped in a path. Not
// !'()*: url.URL would escape them, so a path holding one has a RawPath
// (which url.ParseRequestURI sets).
var pathByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~$&+,;=:@/" {
		t[c] = true
	}
	return t
}()

func validMethod(m []byte) bool {
	for _, c := range m {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return len(m) > 0
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// canonicalKey returns k in canonical form, without allocating when it
// already is (the usual case) or is one of the common headers.
func canonicalKey(k string) string {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			if ck, ok := commonKeys[strings.ToLower(k)]; ok {
				return ck
			}
			return textproto.CanonicalMIMEHeaderKey(k)
		}
		upper = c == '-'
	}
	return k
}

// commonKeys maps lower-case spellings (as HTTP/2-minded clients send
// them) of frequent header names to their canonical form.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Length", "Content-Type",
		"Cookie", "Host", "If-Modified-Since", "If-None-Match", "Pragma",
		"Range", "Referer", "User-Agent", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id",
		"Transfer-Encoding", "Upgrade", "Expect", "Origin",
	} {
		m[strings.ToLower(k)] = k
	}
	return m
}()
