package cache

import (
	"net/http"
	"strings"
	"time"
)

// Targeted cache control (RFC 9213): response fields that direct one
// class of caches, taking precedence over Cache-Control for them. Edge's
// target list, in order: Edge-Cache-Control (Edge alone), then
// CDN-Cache-Control (every CDN). The first present with a valid,
// non-empty value governs storing and reuse, and Cache-Control and
// Expires are then ignored for that (RFC 9213 section 2.1). They are
// parsed when a response is stored, never on a hit.
const (
	edgeCacheControl = "Edge-Cache-Control"
	cdnCacheControl  = "Cdn-Cache-Control" // canonical form of CDN-Cache-Control
)

// controlOf returns the directives that govern Edge's cache for a
// response, and whether they came from a targeted field.
func controlOf(h http.Header) (cc cacheControl, targeted bool) {
	for _, name := range [...]string{edgeCacheControl, cdnCacheControl} {
		if lines := h[name]; len(lines) > 0 {
			if cc, ok := parseTargeted(lines); ok {
				return cc, true
			}
		}
	}
	return parseCacheControl(h), false
}

// parseTargeted parses a targeted field: a Structured Field Dictionary
// (RFC 8941 section 3.2; field lines joined with commas). It reports
// false for a value that is not a valid Dictionary or is empty, which
// RFC 9213 says to ignore as if the field were absent. Member semantics
// are Cache-Control's: max-age, s-maxage, stale-while-revalidate and
// stale-if-error take an Integer (a max-age or s-maxage that is not a
// non-negative Integer means already stale, as in Cache-Control; a bad
// stale-* is ignored); other directives are on when true (a bare key)
// or given any value but false (?0). A repeated key takes its last value,
// as Dictionaries do.
func parseTargeted(lines []string) (cacheControl, bool) {
	cc := cacheControl{maxAge: -1, sMaxAge: -1, swr: -1, sie: -1}
	s := lines[0]
	if len(lines) > 1 {
		s = strings.Join(lines, ", ")
	}
	p := sfParser{s: s}
	p.sp()
	if p.end() {
		return cc, false
	}
	for {
		key, ok := p.key()
		if !ok {
			return cc, false
		}
		v := sfValue{kind: sfBool, n: 1}
		if p.peek('=') {
			p.i++
			if p.peek('(') {
				if !p.innerList() {
					return cc, false
				}
				v = sfValue{kind: sfOther}
			} else if v, ok = p.bareItem(); !ok {
				return cc, false
			}
		}
		if !p.params() {
			return cc, false
		}
		cc.any = true
		cc.apply(key, v)
		p.ows()
		if p.end() {
			return cc, true
		}
		if !p.peek(',') {
			return cc, false
		}
		p.i++
		p.ows()
		if p.end() {
			return cc, false // a trailing comma
		}
	}
}

// apply sets one targeted directive.
func (cc *cacheControl) apply(key string, v sfValue) {
	on := v.kind != sfBool || v.n == 1
	seconds := func(bad time.Duration) time.Duration {
		if v.kind != sfInt || v.n < 0 {
			return bad
		}
		return time.Duration(min(v.n, 1<<31-1)) * time.Second
	}
	switch key {
	case "max-age":
		cc.maxAge = seconds(0)
	case "s-maxage":
		cc.sMaxAge = seconds(0)
	case "stale-while-revalidate":
		cc.swr = seconds(cc.swr)
	case "stale-if-error":
		cc.sie = seconds(cc.sie)
	case "no-store":
		cc.noStore = on
	case "no-cache":
		cc.noCache = on
	case "private":
		cc.private = on
	case "public":
		cc.public = on
	case "must-revalidate":
		cc.mustRevalidate = on
	case "proxy-revalidate":
		cc.proxyRevalidate = on
	}
}

type sfKind uint8

const (
	sfOther sfKind = iota // a string, token, decimal, byte sequence or inner list
	sfInt
	sfBool
)

type sfValue struct {
	kind sfKind
	n    int64
}

// sfParser is the part of RFC 8941's parsing algorithms a Dictionary
// needs: it validates every item type and keeps Integers and Booleans.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) end() bool        { return p.i >= len(p.s) }
func (p *sfParser) peek(c byte) bool { return p.i < len(p.s) && p.s[p.i] == c }
func (p *sfParser) sp()              { p.skip(" ") }
func (p *sfParser) ows()             { p.skip(" \t") }
func (p *sfParser) skip(set string) { // discard characters in set
	for p.i < len(p.s) && strings.IndexByte(set, p.s[p.i]) >= 0 {
		p.i++
	}
}

func isLCAlpha(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool   { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool   { return isLCAlpha(c) || 'A' <= c && c <= 'Z' }

// key parses an sf-key: ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ).
func (p *sfParser) key() (string, bool) {
	start := p.i
	if p.end() || !isLCAlpha(p.s[p.i]) && p.s[p.i] != '*' {
		return "", false
	}
	p.i++
	for p.i < len(p.s) {
		c := p.s[p.i]
		if !isLCAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
		p.i++
	}
	return p.s[start:p.i], true
}

// params parses *( ";" *SP key [ "=" bare-item ] ).
func (p *sfParser) params() bool {
	for p.peek(';') {
		p.i++
		p.sp()
		if _, ok := p.key(); !ok {
			return false
		}
		if p.peek('=') {
			p.i++
			if _, ok := p.bareItem(); !ok {
				return false
			}
		}
	}
	return true
}

// innerList parses "(" *SP [ item *( 1*SP item ) *SP ] ")" parameters.
func (p *sfParser) innerList() bool {
	p.i++ // "("
	for {
		p.sp()
		if p.peek(')') {
			p.i++
			return p.params()
		}
		if _, ok := p.bareItem(); !ok || !p.params() {
			return false
		}
		if !p.peek(' ') && !p.peek(')') {
			return false
		}
	}
}

// bareItem parses an Integer, Decimal, String, Token, Byte Sequence or
// Boolean.
func (p *sfParser) bareItem() (sfValue, bool) {
	if p.end() {
		return sfValue{}, false
	}
	switch c := p.s[p.i]; {
	case c == '-' || isDigit(c):
		return p.number()
	case c == '"':
		p.i++
		for p.i < len(p.s) {
			c := p.s[p.i]
			p.i++
			switch {
			case c == '\\':
				if p.end() || p.s[p.i] != '"' && p.s[p.i] != '\\' {
					return sfValue{}, false
				}
				p.i++
			case c == '"':
				return sfValue{kind: sfOther}, true
			case c < 0x20 || c > 0x7e:
				return sfValue{}, false
			}
		}
		return sfValue{}, false
	case isAlpha(c) || c == '*':
		p.i++
		for p.i < len(p.s) && (isTchar(p.s[p.i]) || p.s[p.i] == ':' || p.s[p.i] == '/') {
			p.i++
		}
		return sfValue{kind: sfOther}, true
	case c == ':':
		p.i++
		for p.i < len(p.s) {
			c := p.s[p.i]
			p.i++
			switch {
			case c == ':':
				return sfValue{kind: sfOther}, true
			case isAlpha(c) || isDigit(c) || c == '+' || c == '/' || c == '=':
			default:
				return sfValue{}, false
			}
		}
		return sfValue{}, false
	case c == '?':
		if p.i+1 < len(p.s) && (p.s[p.i+1] == '0' || p.s[p.i+1] == '1') {
			n := int64(p.s[p.i+1] - '0')
			p.i += 2
			return sfValue{kind: sfBool, n: n}, true
		}
	}
	return sfValue{}, false
}

// number parses an Integer (at most 15 digits) or a Decimal (at most 12
// integer and 3 fractional digits).
func (p *sfParser) number() (sfValue, bool) {
	neg := p.peek('-')
	if neg {
		p.i++
	}
	start, n := p.i, int64(0)
	for p.i < len(p.s) && isDigit(p.s[p.i]) {
		n = n*10 + int64(p.s[p.i]-'0')
		p.i++
		if p.i-start > 15 {
			return sfValue{}, false
		}
	}
	digits := p.i - start
	if digits == 0 {
		return sfValue{}, false
	}
	if !p.peek('.') {
		if neg {
			n = -n
		}
		return sfValue{kind: sfInt, n: n}, true
	}
	if digits > 12 {
		return sfValue{}, false
	}
	p.i++
	fstart := p.i
	for p.i < len(p.s) && isDigit(p.s[p.i]) {
		p.i++
	}
	if f := p.i - fstart; f < 1 || f > 3 {
		return sfValue{}, false
	}
	return sfValue{kind: sfOther}, true
}

// isTchar reports an RFC 9110 tchar.
func isTchar(c byte) bool {
	return isAlpha(c) || isDigit(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
