package transform

import (
	"bytes"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// tag is the start or end tag the scanner found last, as byte spans into
// its raw bytes, so that an edit changes only the bytes it must.

// attr is one attribute's spans in tag.raw.
type attr struct {
	k0, k1 int  // key
	v0, v1 int  // value, without quotes
	e1     int  // end of the "=value" part (after the closing quote); k1 if there is no value
	quote  byte // '"', '\'' or 0
}

type tag struct {
	raw         []byte
	end         bool // </name>
	selfClosing bool
	name        []byte // lower case
	a           atom.Atom
	n1          int    // end of the name in raw
	attrs       []attr // the attributes with a name, in order, repeated names included
	nameBuf     []byte
	unesc       []byte
}

// keyIs reports whether attribute i is named name (lower case).
func (t *tag) keyIs(i int, name string) bool {
	k := t.raw[t.attrs[i].k0:t.attrs[i].k1]
	if len(k) != len(name) {
		return false
	}
	for j := range k {
		c := k[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[j] {
			return false
		}
	}
	return true
}

// find returns the index of the first attribute named name, or -1.
func (t *tag) find(name string) int {
	for i := range t.attrs {
		if t.keyIs(i, name) {
			return i
		}
	}
	return -1
}

// rawValue is attribute i's value as written.
func (t *tag) rawValue(i int) []byte { return t.raw[t.attrs[i].v0:t.attrs[i].v1] }

// value returns the unescaped value of the first attribute named name. The
// result is valid until the next call.
func (t *tag) value(name string) ([]byte, bool) {
	i := t.find(name)
	if i < 0 {
		return nil, false
	}
	return t.unescaped(i), true
}

func (t *tag) unescaped(i int) []byte {
	v := t.rawValue(i)
	if bytes.IndexByte(v, '&') < 0 {
		return v
	}
	t.unesc = appendUnescaped(t.unesc[:0], v, html.UnescapeString)
	return t.unesc
}

// appendUnescaped appends s with its character references decoded, as
// unescape (html.UnescapeString or x/net/html's) decodes them. The common
// references are decoded here without allocating; from the first other
// one on, the rest goes to unescape.
func appendUnescaped(dst, s []byte, unescape func(string) string) []byte {
	for {
		i := bytes.IndexByte(s, '&')
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		s = s[i:]
		r, n := commonRef(s)
		if n == 0 {
			return append(dst, unescape(string(s))...)
		}
		dst = utf8.AppendRune(dst, r)
		s = s[n:]
	}
}

// commonRef decodes the character reference at the start of s if it is a
// common one with a ";": a named one from namedRef, or a decimal or
// hexadecimal one of a code point that needs no replacement (not NUL, a C1
// control or a surrogate). n is 0 for the others.
func commonRef(s []byte) (r rune, n int) {
	if len(s) < 4 {
		return 0, 0
	}
	if s[1] != '#' {
		j := bytes.IndexByte(s[1:min(len(s), 9)], ';')
		if j < 0 {
			return 0, 0
		}
		if r = namedRef(s[1 : 1+j]); r == 0 {
			return 0, 0
		}
		return r, j + 2
	}
	i, base := 2, rune(10)
	if s[2] == 'x' || s[2] == 'X' {
		i, base = 3, 16
	}
	d0 := i
	for ; i < len(s) && i-d0 < 7; i++ {
		c := s[i]
		var d rune
		switch {
		case '0' <= c && c <= '9':
			d = rune(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = rune(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = rune(c-'A') + 10
		default:
			if c != ';' || i == d0 || r == 0 || 0x80 <= r && r <= 0x9f || 0xd800 <= r && r <= 0xdfff || r > 0x10ffff {
				return 0, 0
			}
			return r, i + 1
		}
		r = r*base + d
	}
	return 0, 0
}

// namedRef returns the character of a common named reference (its name
// without "&" and ";"), or 0.
func namedRef(name []byte) rune {
	switch string(name) {
	case "amp":
		return '&'
	case "lt":
		return '<'
	case "gt":
		return '>'
	case "quot":
		return '"'
	case "apos":
		return '\''
	case "nbsp":
		return '\u00a0'
	case "copy":
		return '\u00a9'
	case "reg":
		return '\u00ae'
	case "trade":
		return '\u2122'
	case "euro":
		return '\u20ac'
	case "pound":
		return '\u00a3'
	case "yen":
		return '\u00a5'
	case "cent":
		return '\u00a2'
	case "sect":
		return '\u00a7'
	case "deg":
		return '\u00b0'
	case "middot":
		return '\u00b7'
	case "bull":
		return '\u2022'
	case "hellip":
		return '\u2026'
	case "ndash":
		return '\u2013'
	case "mdash":
		return '\u2014'
	case "lsquo":
		return '\u2018'
	case "rsquo":
		return '\u2019'
	case "ldquo":
		return '\u201c'
	case "rdquo":
		return '\u201d'
	case "laquo":
		return '\u00ab'
	case "raquo":
		return '\u00bb'
	case "times":
		return '\u00d7'
	}
	return 0
}

// valueIs reports whether attribute name's value equals want, ignoring ASCII case.
func (t *tag) valueIs(name, want string) bool {
	v, ok := t.value(name)
	return ok && bytes.EqualFold(bytes.TrimSpace(v), []byte(want))
}

// isVoid reports elements that never have content or an end tag.
func isVoid(a atom.Atom) bool {
	switch a {
	case atom.Area, atom.Base, atom.Br, atom.Col, atom.Embed, atom.Hr, atom.Img, atom.Input,
		atom.Keygen, atom.Link, atom.Meta, atom.Param, atom.Source, atom.Track, atom.Wbr:
		return true
	}
	return false
}

// rawTextTag returns the element whose content the tokenizer reads as raw
// text (or RCDATA) after this start tag, as x/net/html does.
func rawTextTag(a atom.Atom) string {
	switch a {
	case atom.Iframe, atom.Noembed, atom.Noframes, atom.Noscript, atom.Plaintext,
		atom.Script, atom.Style, atom.Textarea, atom.Title, atom.Xmp:
		return a.String()
	}
	return ""
}

// inHead reports elements that may appear in <head> without starting the body.
func inHead(a atom.Atom) bool {
	switch a {
	case atom.Html, atom.Head, atom.Title, atom.Meta, atom.Link, atom.Style, atom.Script,
		atom.Base, atom.Noscript, atom.Template:
		return true
	}
	return false
}

// closesP reports start tags that implicitly end an open <p>.
func closesP(a atom.Atom) bool {
	switch a {
	case atom.Address, atom.Article, atom.Aside, atom.Blockquote, atom.Details, atom.Div, atom.Dl,
		atom.Fieldset, atom.Figcaption, atom.Figure, atom.Footer, atom.Form, atom.H1, atom.H2,
		atom.H3, atom.H4, atom.H5, atom.H6, atom.Header, atom.Hgroup, atom.Hr, atom.Main, atom.Menu,
		atom.Nav, atom.Ol, atom.P, atom.Pre, atom.Section, atom.Table, atom.Ul:
		return true
	}
	return false
}

// closesImplicitly reports whether a start tag start ends an open element
// open that has an optional end tag (the common cases of HTML's rules).
func closesImplicitly(open, start atom.Atom) bool {
	switch open {
	case atom.P:
		return closesP(start)
	case atom.Li:
		return start == atom.Li
	case atom.Dt, atom.Dd:
		return start == atom.Dt || start == atom.Dd
	case atom.Option:
		return start == atom.Option || start == atom.Optgroup
	case atom.Tr:
		return start == atom.Tr
	case atom.Td, atom.Th:
		return start == atom.Td || start == atom.Th || start == atom.Tr
	}
	return false
}

// isSpecial reports block-level elements whose end tags close through
// other elements and which stop inline end tags.
func isSpecial(a atom.Atom) bool {
	switch a {
	case atom.Address, atom.Article, atom.Aside, atom.Blockquote, atom.Body, atom.Caption,
		atom.Dd, atom.Details, atom.Dialog, atom.Div, atom.Dl, atom.Dt, atom.Fieldset,
		atom.Figcaption, atom.Figure, atom.Footer, atom.Form, atom.H1, atom.H2, atom.H3,
		atom.H4, atom.H5, atom.H6, atom.Head, atom.Header, atom.Hgroup, atom.Html, atom.Li,
		atom.Main, atom.Menu, atom.Nav, atom.Ol, atom.P, atom.Pre, atom.Section, atom.Select,
		atom.Summary, atom.Table, atom.Tbody, atom.Td, atom.Template, atom.Textarea,
		atom.Tfoot, atom.Th, atom.Thead, atom.Tr, atom.Ul:
		return true
	}
	return false
}

// isScopeBoundary reports elements that block end tags do not close through.
func isScopeBoundary(a atom.Atom) bool {
	switch a {
	case atom.Applet, atom.Caption, atom.Html, atom.Table, atom.Td, atom.Th, atom.Marquee,
		atom.Object, atom.Template:
		return true
	}
	return false
}
