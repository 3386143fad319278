package transform

import (
	"bytes"

	"golang.org/x/net/html/atom"
)

// The scanner is the writer's tokenizer. It finds one token at a time in
// the bytes it is given, in place: no copies, no allocations, and byte spans
// (tag name, attribute keys and values) instead of strings. Token boundaries
// and types follow golang.org/x/net/html's Tokenizer exactly (the tests
// compare the two), but text is skipped with bytes.IndexByte instead of one
// byte at a time, and the scanner can stop at the end of its input and be
// asked again with more: a token is complete only when its bytes decide it,
// so the answer never depends on where the input was split.

// tokKind is the type of a token.
type tokKind uint8

const (
	tokText           tokKind = iota // text, including the raw text of <script>, <style>, ...
	tokCDATA                         // <![CDATA[...]]> in foreign (svg, math) content
	tokComment                       // comment, doctype, <?...>, bogus comment, "</>"
	tokStartTag                      // <name ...>
	tokSelfClosingTag                // <name .../>
	tokEndTag                        // </name ...>
	tokTruncated                     // a tag that the end of the document cut off
	tokEOF                           // the end of the document (never scanned; the writer's)
)

func (k tokKind) String() string {
	return [...]string{"Text", "CDATA", "Comment", "StartTag", "SelfClosingTag", "EndTag", "Truncated", "EOF"}[k]
}

// openKind is what an incomplete token is, for cutting it.
type openKind uint8

const (
	openNone    openKind = iota
	openText             // text: no "<" that starts markup yet
	openRaw              // raw text (script, style, plaintext, ...)
	openComment          // <!-- without its end
	openCDATA            // <![CDATA[ without "]]>"
	openBogus            // doctype, <?, </ ... or <! ...: up to the next ">"
	openTag              // a start or end tag, in state tagSt
)

// tagState is where a tag scan stopped.
type tagState uint8

const (
	tsName        tagState = iota // in the name
	tsBeforeAttr                  // between attributes
	tsKey                         // in an attribute name
	tsAfterKey                    // after an attribute name
	tsBeforeValue                 // after "="
	tsQuoted                      // in a quoted value
	tsUnquoted                    // in an unquoted value
)

// scanner holds the tokenizer state that outlives one token.
type scanner struct {
	cdata bool // CDATA sections are recognised (inside <svg> or <math>)

	// Set by next when the token does not end in its input.
	open   openKind
	endTag bool     // the open tag is an end tag
	tagSt  tagState // the open tag's state
	quote  byte     // the open tag's quote, in tsQuoted

	// A token cut by MaxTokenBytes goes on in the next one.
	resume    openKind
	resumeRaw string // raw-text element that the resumed start tag opens
}

// next scans the token at the start of b (len(b) > 0). inRaw names the
// element whose raw text comes next ("" if none). For a start or end tag it
// fills t (whose raw bytes are b[:n]). It returns n == 0 if the token does
// not end within b, with s.open set and k the kind the token has at the end
// of the document.
func (s *scanner) next(b []byte, inRaw string, t *tag) (k tokKind, n int) {
	s.open = openNone
	if s.resume != openNone {
		return s.resumed(b)
	}
	if inRaw != "" {
		n := -1
		switch inRaw {
		case "plaintext":
		case "script":
			n = scanScript(b)
		default:
			n = scanRawText(b, inRaw)
		}
		switch {
		case n < 0:
			s.open = openRaw
			return tokText, 0
		case n > 0:
			return tokText, n
		}
		// Empty raw text: its end tag follows.
	}
	// Text up to a "<" that starts markup.
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 {
			s.open = openText
			return tokText, 0
		}
		p := i + j
		if p+1 >= len(b) {
			s.open = openText
			return tokText, 0
		}
		if c := b[p+1]; isLetter(c) || c == '/' || c == '!' || c == '?' {
			if p > 0 {
				return tokText, p
			}
			break
		}
		i = p + 1
	}
	switch c := b[1]; {
	case isLetter(c):
		return s.tag(b, false, t)
	case c == '/':
		switch {
		case len(b) < 3:
			s.open = openText // "</" at the end of the document is text
			return tokText, 0
		case b[2] == '>':
			return tokComment, 3
		case isLetter(b[2]):
			return s.tag(b, true, t)
		}
		return s.bogus(b, 2)
	case c == '?':
		return s.bogus(b, 2)
	}
	// "<!"
	if len(b) < 3 || b[2] == '-' && len(b) < 4 {
		s.open = openBogus
		return tokComment, 0
	}
	if b[2] == '-' && b[3] == '-' {
		if n := scanComment(b, 4, true); n > 0 {
			return tokComment, n
		}
		s.open = openComment
		return tokComment, 0
	}
	if s.cdata && b[2] == '[' {
		const open = "[CDATA["
		m := min(len(b)-2, len(open))
		if string(b[2:2+m]) == open[:m] {
			if m < len(open) {
				s.open = openBogus
				return tokComment, 0
			}
			if j := bytes.Index(b[9:], []byte("]]>")); j >= 0 {
				return tokCDATA, 9 + j + 3
			}
			s.open = openCDATA
			return tokCDATA, 0
		}
	}
	return s.bogus(b, 2)
}

// bogus scans a token that ends at the first ">" from b[i].
func (s *scanner) bogus(b []byte, i int) (tokKind, int) {
	if j := bytes.IndexByte(b[i:], '>'); j >= 0 {
		return tokComment, i + j + 1
	}
	s.open = openBogus
	return tokComment, 0
}

// tag scans a start or end tag and fills t.
func (s *scanner) tag(b []byte, end bool, t *tag) (tokKind, int) {
	n0 := 1
	if end {
		n0 = 2
	}
	t.attrs = t.attrs[:0]
	s.tagSt = tsName
	n, n1 := s.scanTag(b, n0+1, t, !end)
	if n < 0 {
		s.open, s.endTag = openTag, end
		return tokTruncated, 0
	}
	t.raw, t.end, t.n1 = b[:n], end, n1
	t.nameBuf = t.nameBuf[:0]
	for _, c := range b[n0:n1] {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		t.nameBuf = append(t.nameBuf, c)
	}
	t.name = t.nameBuf
	t.a = atom.Lookup(t.name)
	t.selfClosing = false
	if end {
		return tokEndTag, n
	}
	if b[n-2] == '/' && !lastAttrEndsAt(b, t.attrs, n-2) {
		t.selfClosing = true
		return tokSelfClosingTag, n
	}
	return tokStartTag, n
}

// lastAttrEndsAt reports whether the value of the last attribute that
// x/net/html keeps (it drops repeated names) ends with the byte at i, as in
// <p a=/>, which is not self-closing.
func lastAttrEndsAt(b []byte, attrs []attr, i int) bool {
outer:
	for j := len(attrs) - 1; j >= 0; j-- {
		k := b[attrs[j].k0:attrs[j].k1]
		for _, e := range attrs[:j] {
			if asciiEqualFold(k, b[e.k0:e.k1]) {
				continue outer
			}
		}
		return attrs[j].v1-1 == i
	}
	return false
}

func asciiEqualFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		c, d := a[i], b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// scanTag scans a tag from b[i] in state s.tagSt up to and including its
// ">", as x/net/html's readTag does. It returns the tag's length and the end
// of its name, or -1 with s.tagSt (and s.quote) set where b ended. With
// record, the attributes with a name are appended to t.attrs.
func (s *scanner) scanTag(b []byte, i int, t *tag, record bool) (end, n1 int) {
	n := len(b)
	var a attr
	var c, q byte
	var j int
	switch s.tagSt {
	case tsBeforeAttr:
		goto beforeAttr
	case tsKey:
		goto key
	case tsAfterKey:
		goto afterKey
	case tsBeforeValue:
		goto beforeValue
	case tsQuoted:
		q = s.quote
		goto quoted
	case tsUnquoted:
		goto unquoted
	}
	// The name; its first byte is b[i-1].
	for {
		if i >= n {
			s.tagSt = tsName
			return -1, 0
		}
		c = b[i]
		if in(c, nameEnd) {
			n1 = i
			if isSpace(c) {
				i++
			}
			break
		}
		i++
	}
beforeAttr:
	for {
		if i >= n {
			s.tagSt = tsBeforeAttr
			return -1, 0
		}
		c = b[i]
		if !isSpace(c) {
			break
		}
		i++
	}
	if c == '>' {
		return i + 1, n1
	}
	a = attr{k0: i}
	if c == '/' { // an empty name; the "/" is read after it
		a.k1 = i
		goto afterKey
	}
	i++ // the first byte is part of the name, even "="
key:
	for {
		if i >= n {
			s.tagSt = tsKey
			return -1, 0
		}
		c = b[i]
		if in(c, keyEnd) {
			break
		}
		i++
	}
	a.k1 = i
afterKey:
	a.v0, a.v1, a.e1 = a.k1, a.k1, a.k1
	for {
		if i >= n {
			s.tagSt = tsAfterKey
			return -1, 0
		}
		c = b[i]
		if !isSpace(c) {
			break
		}
		i++
	}
	if c == '/' {
		i++
		goto done
	}
	if c != '=' {
		goto done
	}
	i++
beforeValue:
	for {
		if i >= n {
			s.tagSt = tsBeforeValue
			return -1, 0
		}
		c = b[i]
		if !isSpace(c) {
			break
		}
		i++
	}
	if c == '>' {
		a.v0, a.v1, a.e1 = i, i, i
		goto done
	}
	i++
	if c != '"' && c != '\'' {
		a.v0 = i - 1
		goto unquoted
	}
	q, a.quote, a.v0 = c, c, i
quoted:
	j = bytes.IndexByte(b[i:], q)
	if j < 0 {
		s.tagSt, s.quote = tsQuoted, q
		return -1, 0
	}
	a.v1, i = i+j, i+j+1
	a.e1 = i
	goto done
unquoted:
	for {
		if i >= n {
			s.tagSt = tsUnquoted
			return -1, 0
		}
		c = b[i]
		if in(c, unquotedEnd) {
			break
		}
		i++
	}
	a.v1, a.e1 = i, i
	if c != '>' {
		i++ // the space is read
	}
done:
	if record && a.k1 > a.k0 {
		t.attrs = append(t.attrs, a)
	}
	goto beforeAttr
}

// scanComment finds the end of a comment whose data starts at b[ds]: "-->"
// or "--!>" after the data, or right away "<!-->" and "<!--->" (beginning).
// It returns the comment's length, or -1.
func scanComment(b []byte, ds int, beginning bool) int {
	if beginning && ds < len(b) {
		if b[ds] == '>' {
			return ds + 1
		}
		if b[ds] == '-' && ds+1 < len(b) && b[ds+1] == '>' {
			return ds + 2
		}
	}
	for i := ds; ; {
		j := bytes.IndexByte(b[i:], '>')
		if j < 0 {
			return -1
		}
		p := i + j
		if p-2 >= ds && b[p-1] == '-' && b[p-2] == '-' ||
			p-3 >= ds && b[p-1] == '!' && b[p-2] == '-' && b[p-3] == '-' {
			return p + 1
		}
		i = p + 1
	}
}

// rawEnd matches name (lower case, compared ignoring ASCII case) and one of
// " \t\n\r\f/>" at b[i:], after a "</". It returns 1 on a match, 0 if
// there is none (next is where to go on reading) and -1 if b ends first.
func rawEnd(b []byte, i int, name string) (r, next int) {
	for k := 0; k < len(name); k++ {
		if i >= len(b) {
			return -1, i
		}
		if c := b[i]; c != name[k] && c != name[k]-('a'-'A') {
			return 0, i
		}
		i++
	}
	if i >= len(b) {
		return -1, i
	}
	switch b[i] {
	case ' ', '\n', '\r', '\t', '\f', '/', '>':
		return 1, i + 1
	}
	return 0, i
}

// scanRawText returns the length of the raw text before "</name", or -1.
func scanRawText(b []byte, name string) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 {
			return -1
		}
		p := i + j
		if p+1 >= len(b) {
			return -1
		}
		i = p + 1
		if b[i] != '/' {
			continue
		}
		switch r, next := rawEnd(b, p+2, name); r {
		case 1:
			return p
		case -1:
			return -1
		default:
			i = next
		}
	}
}

// scanScript returns the length of a script's text before its "</script",
// or -1, following the HTML rules for "<!--" and "<script" inside scripts
// as x/net/html's readScript does.
func scanScript(b []byte) int {
	n := len(b)
	i, j, r, lt := 0, 0, 0, 0
	var c byte
scriptData:
	j = bytes.IndexByte(b[i:], '<')
	if j < 0 {
		return -1
	}
	i += j + 1
	if i >= n {
		return -1
	}
	c = b[i]
	i++
	switch c {
	case '/':
		lt = i - 2
		if r, i = rawEnd(b, i, "script"); r != 0 {
			return rawResult(r, lt)
		}
		goto scriptData
	case '!':
		goto escapeStart
	}
	i--
	goto scriptData
escapeStart:
	if i >= n {
		return -1
	}
	if c, i = b[i], i+1; c != '-' {
		i--
		goto scriptData
	}
	if i >= n {
		return -1
	}
	if c, i = b[i], i+1; c != '-' {
		i--
		goto scriptData
	}
	goto escapedDashDash
escaped:
	if i >= n {
		return -1
	}
	c, i = b[i], i+1
	switch c {
	case '-':
		goto escapedDash
	case '<':
		goto escapedLessThan
	}
	goto escaped
escapedDash:
	if i >= n {
		return -1
	}
	c, i = b[i], i+1
	switch c {
	case '-':
		goto escapedDashDash
	case '<':
		goto escapedLessThan
	}
	goto escaped
escapedDashDash:
	if i >= n {
		return -1
	}
	c, i = b[i], i+1
	switch c {
	case '-':
		goto escapedDashDash
	case '<':
		goto escapedLessThan
	case '>':
		goto scriptData
	}
	goto escaped
escapedLessThan:
	if i >= n {
		return -1
	}
	c, i = b[i], i+1
	if c == '/' {
		lt = i - 2
		if r, i = rawEnd(b, i, "script"); r != 0 {
			return rawResult(r, lt)
		}
		goto escaped
	}
	if isLetter(c) {
		i--
		for k := 0; k < len("script"); k++ {
			if i >= n {
				return -1
			}
			if c, i = b[i], i+1; c != "script"[k] && c != "SCRIPT"[k] {
				i--
				goto escaped
			}
		}
		if i >= n {
			return -1
		}
		switch c, i = b[i], i+1; c {
		case ' ', '\n', '\r', '\t', '\f', '/', '>':
			goto doubleEscaped
		}
		i--
		goto escaped
	}
	i--
	goto scriptData
doubleEscaped:
	if i >= n {
		return -1
	}
	c, i = b[i], i+1
	switch c {
	case '-':
		goto doubleEscapedDash
	case '<':
		goto doubleEscapedLessThan
	}
	goto doubleEscaped
doubleEscapedDash:
	if i >= n {
		return -1
	}
	c, i = b[i], i+1
	switch c {
	case '-':
		goto doubleEscapedDashDash
	case '<':
		goto doubleEscapedLessThan
	}
	goto doubleEscaped
doubleEscapedDashDash:
	if i >= n {
		return -1
	}
	c, i = b[i], i+1
	switch c {
	case '-':
		goto doubleEscapedDashDash
	case '<':
		goto doubleEscapedLessThan
	case '>':
		goto scriptData
	}
	goto doubleEscaped
doubleEscapedLessThan:
	if i >= n {
		return -1
	}
	if c, i = b[i], i+1; c != '/' {
		i--
		goto doubleEscaped
	}
	if r, i = rawEnd(b, i, "script"); r < 0 {
		return -1
	} else if r > 0 {
		goto escaped // "</script>" only ends the double escape
	}
	goto doubleEscaped
}

func rawResult(r, lt int) int {
	if r < 0 {
		return -1
	}
	return lt
}

// resumed scans the rest of a token that MaxTokenBytes cut.
func (s *scanner) resumed(b []byte) (tokKind, int) {
	switch s.resume {
	case openComment:
		if n := scanComment(b, 0, false); n > 0 {
			return tokComment, n
		}
		s.open = openComment
		return tokComment, 0
	case openCDATA:
		if j := bytes.Index(b, []byte("]]>")); j >= 0 {
			return tokCDATA, j + 3
		}
		s.open = openCDATA
		return tokCDATA, 0
	case openBogus:
		return s.bogus(b, 0)
	}
	// openTag
	if n, _ := s.scanTag(b, 0, nil, false); n >= 0 {
		if s.endTag {
			return tokEndTag, n
		}
		return tokStartTag, n
	}
	s.open = openTag
	return tokTruncated, 0
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
