package transform

import (
	"bytes"

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
	t.unesc = append(t.unesc[:0], html.UnescapeString(string(v))...)
	return t.unesc
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
