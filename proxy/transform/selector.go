package transform

import (
	"bytes"
	"fmt"
	"strings"
)

// selector is a comma list of compound selectors; it matches an element if
// any of them does.
type selector []compound

// compound is a tag (or any) plus conditions on one element.
type compound struct {
	tag     string // lower case; "" matches any element
	id      string
	classes []string
	attrs   []attrSel
}

// attrSel is [name], [name=value], [name^=value], [name$=value],
// [name*=value] or [name~=value].
type attrSel struct {
	name   string // lower case
	value  string
	bvalue []byte
	op     byte // 0 (present), '=', '^', '$', '*', '~'
}

// needsAttrs reports whether matching looks at attributes.
func (s selector) needsAttrs() bool {
	for _, c := range s {
		if c.id != "" || len(c.classes) > 0 || len(c.attrs) > 0 {
			return true
		}
	}
	return false
}

func parseSelector(src string) (selector, error) {
	if len(src) > MaxSelectorBytes {
		return nil, fmt.Errorf("longer than %d bytes", MaxSelectorBytes)
	}
	p := selParser{s: src}
	var sel selector
	for {
		p.skipSpace()
		c, err := p.compound()
		if err != nil {
			return nil, err
		}
		sel = append(sel, c)
		end := p.i
		p.skipSpace()
		if p.i == len(p.s) {
			return sel, nil
		}
		if p.s[p.i] != ',' {
			if p.s[p.i] != '>' && p.s[p.i] != '+' && p.s[p.i] != '~' {
				p.i = end // "div .ad": the space is the (descendant) combinator
			}
			return nil, p.errUnexpected()
		}
		p.i++
	}
}

type selParser struct {
	s string
	i int
}

func (p *selParser) skipSpace() {
	for p.i < len(p.s) && isSpace(p.s[p.i]) {
		p.i++
	}
}

func (p *selParser) errUnexpected() error {
	if p.i >= len(p.s) {
		return fmt.Errorf("unexpected end of selector %q", p.s)
	}
	c := p.s[p.i]
	switch {
	case isSpace(c), c == '>', c == '+', c == '~':
		return fmt.Errorf("unexpected %q at offset %d in %q (combinators such as descendant, child or sibling are not supported; write conditions on one element like div.ad[data-x=1])", c, p.i, p.s)
	case c == ':':
		return fmt.Errorf("unexpected ':' at offset %d in %q (pseudo-classes are not supported)", p.i, p.s)
	}
	return fmt.Errorf("unexpected %q at offset %d in %q", c, p.i, p.s)
}

func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80
}

func (p *selParser) ident() string {
	start := p.i
	for p.i < len(p.s) && isIdentByte(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *selParser) compound() (compound, error) {
	var c compound
	start := p.i
	if p.i < len(p.s) && p.s[p.i] == '*' {
		p.i++
	} else if p.i < len(p.s) && (p.s[p.i] >= 'a' && p.s[p.i] <= 'z' || p.s[p.i] >= 'A' && p.s[p.i] <= 'Z') {
		c.tag = strings.ToLower(p.ident())
	}
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case '#':
			p.i++
			if c.id != "" {
				return c, fmt.Errorf("two ids in %q", p.s)
			}
			if c.id = p.ident(); c.id == "" {
				return c, fmt.Errorf("empty id after '#' at offset %d in %q", p.i-1, p.s)
			}
		case '.':
			p.i++
			cl := p.ident()
			if cl == "" {
				return c, fmt.Errorf("empty class after '.' at offset %d in %q", p.i-1, p.s)
			}
			c.classes = append(c.classes, cl)
		case '[':
			p.i++
			a, err := p.attr()
			if err != nil {
				return c, err
			}
			c.attrs = append(c.attrs, a)
		default:
			if p.i == start {
				return c, p.errUnexpected()
			}
			return c, nil
		}
	}
	if p.i == start {
		return c, p.errUnexpected()
	}
	return c, nil
}

func (p *selParser) attr() (attrSel, error) {
	var a attrSel
	p.skipSpace()
	a.name = strings.ToLower(p.ident())
	if a.name == "" {
		return a, fmt.Errorf("missing attribute name at offset %d in %q", p.i, p.s)
	}
	p.skipSpace()
	if p.i >= len(p.s) {
		return a, fmt.Errorf("unclosed '[' in %q", p.s)
	}
	switch c := p.s[p.i]; c {
	case ']':
		p.i++
		return a, nil
	case '=':
		a.op = '='
		p.i++
	case '^', '$', '*', '~':
		if p.i+1 >= len(p.s) || p.s[p.i+1] != '=' {
			return a, p.errUnexpected()
		}
		a.op = c
		p.i += 2
	default:
		return a, p.errUnexpected()
	}
	p.skipSpace()
	if p.i < len(p.s) && (p.s[p.i] == '"' || p.s[p.i] == '\'') {
		q := p.s[p.i]
		end := strings.IndexByte(p.s[p.i+1:], q)
		if end < 0 {
			return a, fmt.Errorf("unclosed quote at offset %d in %q", p.i, p.s)
		}
		a.value = p.s[p.i+1 : p.i+1+end]
		p.i += end + 2
	} else {
		a.value = p.ident()
		if a.value == "" {
			return a, fmt.Errorf("missing value at offset %d in %q (quote values with other characters)", p.i, p.s)
		}
	}
	a.bvalue = []byte(a.value)
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != ']' {
		return a, fmt.Errorf("expected ']' at offset %d in %q", p.i, p.s)
	}
	p.i++
	return a, nil
}

// match reports whether the start tag t matches.
func (s selector) match(t *tag) bool {
	for i := range s {
		if s[i].match(t) {
			return true
		}
	}
	return false
}

func (c *compound) match(t *tag) bool {
	if c.tag != "" && c.tag != string(t.name) {
		return false
	}
	if c.id != "" {
		v, ok := t.value("id")
		if !ok || string(v) != c.id {
			return false
		}
	}
	if len(c.classes) > 0 {
		v, ok := t.value("class")
		if !ok {
			return false
		}
		for _, want := range c.classes {
			if !hasWord(v, want) {
				return false
			}
		}
	}
	for i := range c.attrs {
		a := &c.attrs[i]
		v, ok := t.value(a.name)
		if !ok {
			return false
		}
		switch a.op {
		case '=':
			ok = string(v) == a.value
		case '^':
			ok = len(v) >= len(a.value) && string(v[:len(a.value)]) == a.value
		case '$':
			ok = len(v) >= len(a.value) && string(v[len(v)-len(a.value):]) == a.value
		case '*':
			ok = bytes.Contains(v, a.bvalue)
		case '~':
			ok = hasWord(v, a.value)
		}
		if !ok {
			return false
		}
	}
	return true
}

// hasWordFold is hasWord ignoring ASCII case.
func hasWordFold(s []byte, w string) bool {
	for len(s) > 0 {
		i := 0
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		s = s[i:]
		j := 0
		for j < len(s) && !isSpace(s[j]) {
			j++
		}
		if foldIs(s[:j], w) {
			return true
		}
		s = s[j:]
	}
	return false
}

// hasWord reports whether the whitespace-separated list s holds w.
func hasWord(s []byte, w string) bool {
	for len(s) > 0 {
		i := 0
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		s = s[i:]
		j := 0
		for j < len(s) && !isSpace(s[j]) {
			j++
		}
		if string(s[:j]) == w {
			return true
		}
		s = s[j:]
	}
	return false
}
