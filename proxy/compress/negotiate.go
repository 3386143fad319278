package compress

import "strings"

// Encoding is a content coding the proxy can produce.
type Encoding uint8

// The encodings, in no particular order; see Negotiate for preference.
const (
	Identity Encoding = iota
	Gzip
	Zstd
	Brotli
)

// String returns the Content-Encoding token ("" for Identity).
func (e Encoding) String() string {
	switch e {
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	case Brotli:
		return "br"
	}
	return ""
}

// preference breaks ties between equal q-values: zstd, then gzip, then br.
// At the default levels zstd gives the smallest output at about gzip's
// speed, and brotli's fast levels (pure Go) are both slower and larger than
// gzip level 5; docs/upstream.md has the measurements.
var preference = [...]Encoding{Zstd, Gzip, Brotli}

// Negotiate picks the encoding for a response from the request's
// Accept-Encoding header: the acceptable coding with the highest q-value,
// ties broken by the order zstd, gzip, br (measured; see preference). q=0 excludes a coding, "*"
// stands for codings not listed, "x-gzip" is gzip. A missing or empty header,
// or identity listed with a higher q-value than every coding, gives
// Identity. Malformed elements are ignored. Negotiate does not allocate.
func Negotiate(acceptEncoding string) Encoding {
	var q [4]int // thousandths; -1: not listed
	q[Gzip], q[Zstd], q[Brotli] = -1, -1, -1
	identityQ, star := -1, -1
	sc := scanner{s: acceptEncoding}
	for {
		coding, qv, ok := sc.next()
		if !ok {
			break
		}
		var slot *int
		switch {
		case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
			slot = &q[Gzip]
		case strings.EqualFold(coding, "br"):
			slot = &q[Brotli]
		case strings.EqualFold(coding, "zstd"):
			slot = &q[Zstd]
		case coding == "*":
			slot = &star
		case strings.EqualFold(coding, "identity"):
			slot = &identityQ
		default:
			continue
		}
		if *slot < 0 || qv < *slot { // listed twice: the lower weight wins
			*slot = qv
		}
	}
	best, bestQ := Identity, 0
	for _, e := range preference {
		v := q[e]
		if v < 0 {
			v = max(star, 0)
		}
		if v > bestQ {
			best, bestQ = e, v
		}
	}
	if identityQ > bestQ {
		return Identity
	}
	return best
}

// Accepts reports whether a client sending acceptEncoding accepts the
// content coding named coding (as found in a Content-Encoding header):
// listed with q>0, or covered by "*" with q>0 and not listed with q=0.
// "identity" and "" are always accepted.
func Accepts(acceptEncoding, coding string) bool {
	coding = strings.TrimSpace(coding)
	if coding == "" || strings.EqualFold(coding, "identity") {
		return true
	}
	isGzip := strings.EqualFold(coding, "gzip") || strings.EqualFold(coding, "x-gzip")
	listed, star := -1, -1
	sc := scanner{s: acceptEncoding}
	for {
		c, qv, ok := sc.next()
		if !ok {
			break
		}
		switch {
		case strings.EqualFold(c, coding), isGzip && (strings.EqualFold(c, "gzip") || strings.EqualFold(c, "x-gzip")):
			if listed < 0 || qv < listed {
				listed = qv
			}
		case c == "*":
			star = qv
		}
	}
	if listed >= 0 {
		return listed > 0
	}
	return star > 0
}

// scanner walks the elements of an Accept-Encoding header.
type scanner struct{ s string }

// next returns the next well-formed element's coding and q-value in
// thousandths (1000 when absent). ok is false at the end.
func (sc *scanner) next() (coding string, q int, ok bool) {
	for sc.s != "" {
		var item string
		if i := strings.IndexByte(sc.s, ','); i >= 0 {
			item, sc.s = sc.s[:i], sc.s[i+1:]
		} else {
			item, sc.s = sc.s, ""
		}
		coding, params, _ := strings.Cut(item, ";")
		coding = trimOWS(coding)
		if coding == "" {
			continue
		}
		q, valid := 1000, true
		for params != "" && valid {
			var p string
			p, params, _ = strings.Cut(params, ";")
			name, value, _ := strings.Cut(trimOWS(p), "=")
			if strings.EqualFold(trimOWS(name), "q") {
				q, valid = parseQ(trimOWS(value))
			}
		}
		if valid {
			return coding, q, true
		}
	}
	return "", 0, false
}

// parseQ parses an RFC 9110 qvalue: "0" ["." 0*3DIGIT] / "1" ["." 0*3("0")].
func parseQ(s string) (int, bool) {
	if s == "" || len(s) > 5 || (s[0] != '0' && s[0] != '1') {
		return 0, false
	}
	whole := int(s[0]-'0') * 1000
	if len(s) == 1 {
		return whole, true
	}
	if s[1] != '.' {
		return 0, false
	}
	frac, scale := 0, 100
	for i := 2; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		frac += int(c-'0') * scale
		scale /= 10
	}
	if whole == 1000 && frac != 0 {
		return 0, false
	}
	return whole + frac, true
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// compressibleTypes are media types worth compressing outside text/*,
// */*+json and */*+xml.
var compressibleTypes = [...]string{
	"application/json",
	"application/javascript",
	"application/x-javascript",
	"application/ecmascript",
	"application/xml",
	"application/x-ndjson",
	"application/wasm",
	"application/vnd.ms-fontobject",
	"application/x-font-ttf",
	"font/ttf",
	"font/otf",
	"image/x-icon",
	"image/vnd.microsoft.icon",
	"image/bmp",
}

// Compressible reports whether a response of this Content-Type is worth
// compressing: text (except text/event-stream, whose events must not wait in
// a compressor), JSON, JavaScript, XML and their +json/+xml relatives (SVG,
// RSS, Atom, manifests), WebAssembly, and uncompressed fonts and icons.
// Images, video, archives and woff/woff2 are already compressed. It does not
// allocate.
func Compressible(contentType string) bool {
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = trimOWS(mt)
	if len(mt) > 5 && strings.EqualFold(mt[:5], "text/") {
		return !strings.EqualFold(mt, "text/event-stream")
	}
	if n := len(mt); (n > 5 && strings.EqualFold(mt[n-5:], "+json")) || (n > 4 && strings.EqualFold(mt[n-4:], "+xml")) {
		return true
	}
	for _, t := range compressibleTypes {
		if strings.EqualFold(mt, t) {
			return true
		}
	}
	return false
}
