package transform

import (
	"bytes"
	"html"
	"slices"

	"golang.org/x/net/html/atom"
)

// writeTag writes start tag t, editing only the attribute bytes that a rule
// changes: html lang, set_attr, links and translated attributes.
func (w *Writer) writeTag(t *tag) {
	p := w.p
	if !p.needAttrs && len(w.matched) == 0 {
		w.out = append(w.out, t.raw...)
		return
	}
	w.arena, w.edits, w.setKeys = w.arena[:0], w.edits[:0], w.setKeys[:0]
	w.handled = slices.Grow(w.handled[:0], len(t.attrs))[:len(t.attrs)]
	clear(w.handled)
	if t.a == atom.Html && w.lang != nil {
		w.setAttr(t, "lang", w.lang.code)
	}
	for k := len(w.matched) - 1; k >= 0; k-- { // later rules win
		for _, kv := range p.elems[w.matched[k]].setAttr {
			w.setAttr(t, kv.k, kv.v)
		}
	}
	if p.rewriteLinks || w.lang != nil {
		w.attrEdits(t)
	}
	if len(w.edits) == 0 {
		w.out = append(w.out, t.raw...)
		return
	}
	if !slices.IsSortedFunc(w.edits, func(a, b edit) int { return a.at0 - b.at0 }) {
		slices.SortStableFunc(w.edits, func(a, b edit) int { return a.at0 - b.at0 })
	}
	pos := 0
	for _, e := range w.edits {
		w.out = append(w.out, t.raw[pos:e.at0]...)
		w.out = append(w.out, w.arena[e.s0:e.s1]...)
		pos = e.at1
	}
	w.out = append(w.out, t.raw[pos:]...)
}

// setAttr sets attribute k to v (already escaped), once per tag.
func (w *Writer) setAttr(t *tag, k, v string) {
	if slices.Contains(w.setKeys, k) {
		return
	}
	w.setKeys = append(w.setKeys, k)
	s0 := len(w.arena)
	i := t.find(k)
	if i >= 0 {
		w.handled[i] = true
		w.arena = append(w.arena, `="`...)
		w.arena = append(w.arena, v...)
		w.arena = append(w.arena, '"')
		w.edits = append(w.edits, edit{at0: t.attrs[i].k1, at1: t.attrs[i].e1, s0: s0, s1: len(w.arena)})
		return
	}
	w.arena = append(w.arena, ' ')
	w.arena = append(w.arena, k...)
	w.arena = append(w.arena, `="`...)
	w.arena = append(w.arena, v...)
	w.arena = append(w.arena, '"')
	w.edits = append(w.edits, edit{at0: t.n1, at1: t.n1, s0: s0, s1: len(w.arena)})
}

const (
	metaNone = iota
	metaRefresh
	metaURL
	metaNavURL
	metaText
)

func (w *Writer) attrEdits(t *tag) {
	meta := metaNone
	canonical := false
	switch t.a {
	case atom.Meta:
		meta = w.metaKind(t)
	case atom.Link:
		if v, ok := t.value("rel"); ok {
			canonical = hasWordFold(v, "canonical")
		}
	}
	translate := w.lang != nil && w.template == 0
	var kb [16]byte
	for i := range t.attrs {
		if w.handled[i] {
			continue
		}
		a := &t.attrs[i]
		if l := a.k1 - a.k0; l < len("alt") || l > len("placeholder") {
			continue
		}
		switch t.raw[a.k0] | ('a' - 'A') { // the first letters of the names below
		case 'h', 's', 'p', 'a', 'f', 'i', 'c', 't':
		default:
			continue
		}
		k := kb[:0]
		for _, c := range t.raw[a.k0:a.k1] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			k = append(k, c)
		}
		switch string(k) {
		case "href":
			w.urlAttr(t, i, t.a == atom.A || t.a == atom.Area || canonical)
		case "src", "poster":
			w.urlAttr(t, i, false)
		case "action":
			w.urlAttr(t, i, t.a == atom.Form)
		case "formaction":
			w.urlAttr(t, i, true)
		case "srcset", "imagesrcset":
			w.srcset(t, i)
		case "content":
			switch meta {
			case metaRefresh:
				w.refresh(t, i)
			case metaURL, metaNavURL:
				w.urlAttr(t, i, meta == metaNavURL)
			case metaText:
				if translate {
					w.translateAttr(t, i)
				}
			}
		case "title", "alt", "placeholder", "aria-label":
			if translate {
				w.translateAttr(t, i)
			}
		}
	}
}

func (w *Writer) metaKind(t *tag) int {
	if t.valueIs("http-equiv", "refresh") {
		return metaRefresh
	}
	for _, k := range [2]string{"property", "name"} {
		v, ok := t.value(k)
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case foldIs(v, "og:url"), foldIs(v, "twitter:url"):
			return metaNavURL
		case foldIs(v, "og:image"), foldIs(v, "og:image:url"), foldIs(v, "og:image:secure_url"), foldIs(v, "twitter:image"):
			return metaURL
		case foldIs(v, "description"), foldIs(v, "og:title"), foldIs(v, "og:description"),
			foldIs(v, "twitter:title"), foldIs(v, "twitter:description"):
			return metaText
		}
	}
	return metaNone
}

func foldIs(b []byte, s string) bool { return len(b) == len(s) && hasPrefixFold(b, s) }

// hasPrefixFold reports whether b starts with s, ignoring ASCII case.
func hasPrefixFold(b []byte, s string) bool {
	if len(b) < len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c, d := b[i], s[i]
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

// urlAttr rewrites the URL in attribute i.
func (w *Writer) urlAttr(t *tag, i int, nav bool) {
	a := &t.attrs[i]
	v := t.raw[a.v0:a.v1]
	lead := 0
	for lead < len(v) && isSpace(v[lead]) {
		lead++
	}
	s0 := len(w.arena)
	if w.rewriteURL(v[lead:], nav) {
		w.edits = append(w.edits, edit{at0: a.v0 + lead, at1: a.v1, s0: s0, s1: len(w.arena)})
	}
}

// rewriteURL appends the rewritten u to the arena and reports whether it
// changed: origin links go to the public scheme and host (rewrite_links),
// and navigational internal links stay in the language variant.
func (w *Writer) rewriteURL(u []byte, nav bool) bool {
	if len(u) == 0 {
		return false
	}
	prefix := ""
	if nav && w.lang != nil {
		prefix = w.lang.prefix
	}
	if w.p.rewriteLinks && w.req.OriginHost != "" {
		if n, rel, ok := matchHost(u, w.req.OriginHost); ok {
			if rel {
				w.arena = append(w.arena, "//"...)
			} else {
				w.arena = append(w.arena, w.scheme...)
				w.arena = append(w.arena, "://"...)
			}
			w.arena = append(w.arena, w.req.Host...)
			w.appendPath(prefix, u[n:])
			return true
		}
	}
	if !nav || w.lang == nil {
		return false
	}
	if prefix != "" {
		if u[0] == '/' && (len(u) == 1 || u[1] != '/' && u[1] != '\\') {
			if !w.prefixable(u) {
				return false
			}
			w.appendPath(prefix, u)
			return true
		}
		if n, _, ok := matchHost(u, w.siteHost); ok && w.prefixable(u[n:]) {
			w.arena = append(w.arena, u[:n]...)
			w.appendPath(prefix, u[n:])
			return true
		}
		return false
	}
	if w.lang.host != "" && !equalFoldString(w.siteHost, w.lang.host) {
		if n, _, ok := matchHost(u, w.siteHost); ok {
			w.arena = append(w.arena, u[:n-len(w.siteHost)]...)
			w.arena = append(w.arena, w.lang.host...)
			w.arena = append(w.arena, u[n:]...)
			return true
		}
	}
	return false
}

func equalFoldString(a, b string) bool { return len(a) == len(b) && hasPrefixFold([]byte(a), b) }

// appendPath appends path (which starts with "/", "?", "#" or is empty)
// under the language prefix when it should have one.
func (w *Writer) appendPath(prefix string, path []byte) {
	switch {
	case prefix == "" || !w.prefixable(path):
		w.arena = append(w.arena, path...)
	case len(path) == 0 || path[0] == '?' || path[0] == '#':
		w.arena = append(w.arena, prefix...)
		w.arena = append(w.arena, path...)
	default:
		w.arena = append(w.arena, prefix[:len(prefix)-1]...)
		w.arena = append(w.arena, path...)
	}
}

// prefixable reports whether an internal path is not already under some
// language prefix.
func (w *Writer) prefixable(path []byte) bool {
	if len(path) > 0 && path[0] != '/' && path[0] != '?' && path[0] != '#' {
		return false
	}
	for _, l := range w.p.langs {
		if l.prefix == "" {
			continue
		}
		root := l.prefix[:len(l.prefix)-1]
		if bytes.HasPrefix(path, []byte(root)) {
			rest := path[len(root):]
			if len(rest) == 0 || rest[0] == '/' || rest[0] == '?' || rest[0] == '#' {
				return false
			}
		}
	}
	return true
}

// matchHost matches "http://host", "https://host" or "//host" at the start
// of u, followed by the end, "/", "?" or "#". n is the length matched.
func matchHost(u []byte, host string) (n int, rel, ok bool) {
	switch {
	case hasPrefixFold(u, "http://"):
		n = 7
	case hasPrefixFold(u, "https://"):
		n = 8
	case len(u) >= 2 && u[0] == '/' && u[1] == '/':
		n, rel = 2, true
	default:
		return 0, false, false
	}
	if !hasPrefixFold(u[n:], host) {
		return 0, false, false
	}
	n += len(host)
	if n < len(u) && u[n] != '/' && u[n] != '?' && u[n] != '#' {
		return 0, false, false
	}
	return n, rel, true
}

// srcset rewrites each candidate URL of a srcset attribute.
func (w *Writer) srcset(t *tag, i int) {
	if !w.p.rewriteLinks {
		return
	}
	a := &t.attrs[i]
	v := t.raw[a.v0:a.v1]
	j := 0
	for j < len(v) {
		for j < len(v) && (isSpace(v[j]) || v[j] == ',') {
			j++
		}
		if j >= len(v) {
			break
		}
		k := j
		for k < len(v) && !isSpace(v[k]) {
			k++
		}
		u := v[j:k]
		for len(u) > 0 && u[len(u)-1] == ',' {
			u = u[:len(u)-1]
		}
		s0 := len(w.arena)
		if w.rewriteURL(u, false) {
			w.edits = append(w.edits, edit{at0: a.v0 + j, at1: a.v0 + j + len(u), s0: s0, s1: len(w.arena)})
		}
		if len(u) < k-j {
			j += len(u)
			continue
		}
		j = k
		for j < len(v) && v[j] != ',' {
			j++
		}
	}
}

// refresh rewrites the URL in <meta http-equiv=refresh content="5; url=...">.
func (w *Writer) refresh(t *tag, i int) {
	a := &t.attrs[i]
	v := t.raw[a.v0:a.v1]
	j := 0
	for ; j+3 <= len(v); j++ {
		if hasPrefixFold(v[j:], "url") {
			break
		}
	}
	if j+3 > len(v) {
		return
	}
	j += 3
	for j < len(v) && isSpace(v[j]) {
		j++
	}
	if j >= len(v) || v[j] != '=' {
		return
	}
	j++
	for j < len(v) && isSpace(v[j]) {
		j++
	}
	end := len(v)
	if j < len(v) && (v[j] == '\'' || v[j] == '"') {
		if k := bytes.IndexByte(v[j+1:], v[j]); k >= 0 {
			end = j + 1 + k
		}
		j++
	}
	for end > j && isSpace(v[end-1]) {
		end--
	}
	s0 := len(w.arena)
	if j < end && w.rewriteURL(v[j:end], true) {
		w.edits = append(w.edits, edit{at0: a.v0 + j, at1: a.v0 + end, s0: s0, s1: len(w.arena)})
	}
}

// translateAttr replaces attribute i's value by its translation.
func (w *Writer) translateAttr(t *tag, i int) {
	a := &t.attrs[i]
	if a.e1 == a.k1 {
		return
	}
	v := t.unescaped(i)
	if len(v) > 4*MaxSegmentBytes {
		return
	}
	w.norm = normalizeSpace(w.norm[:0], v)
	tr, ok := w.lang.dict[string(w.norm)]
	if !ok {
		return
	}
	s0 := len(w.arena)
	w.arena = append(w.arena, `="`...)
	w.arena = append(w.arena, tr...)
	w.arena = append(w.arena, '"')
	w.edits = append(w.edits, edit{at0: a.k1, at1: a.e1, s0: s0, s1: len(w.arena)})
}

// translateText writes a text token, translated when the dictionary has
// its whitespace-normalised text; its leading and trailing whitespace stay.
func (w *Writer) translateText(raw []byte) {
	i, j := 0, len(raw)
	for i < j && isSpace(raw[i]) {
		i++
	}
	for j > i && isSpace(raw[j-1]) {
		j--
	}
	if i == j || j-i > 4*MaxSegmentBytes {
		w.emit(raw)
		return
	}
	body := raw[i:j]
	if bytes.IndexByte(body, '&') >= 0 {
		w.unesc = appendUnescaped(w.unesc[:0], body, html.UnescapeString)
		w.norm = normalizeSpace(w.norm[:0], w.unesc)
	} else {
		w.norm = normalizeSpace(w.norm[:0], body)
	}
	tr, ok := w.lang.dict[string(w.norm)]
	if !ok {
		w.emit(raw)
		return
	}
	w.emit(raw[:i])
	w.out = append(w.out, tr...)
	w.emit(raw[j:])
}

// alternates writes the reciprocal hreflang links of every language, the
// source language and x-default.
func (w *Writer) alternates() {
	for _, l := range w.p.langs {
		w.out = append(w.out, `<link rel="alternate" hreflang="`...)
		w.out = append(w.out, l.code...)
		w.out = append(w.out, `" href="`...)
		w.out = append(w.out, w.scheme...)
		w.out = append(w.out, "://"...)
		if l.host != "" {
			w.out = append(w.out, l.host...)
		} else {
			w.out = appendEscaped(w.out, w.siteHost)
			w.out = append(w.out, l.prefix[:len(l.prefix)-1]...)
		}
		w.out = appendEscaped(w.out, w.originPath)
		w.out = append(w.out, `">`...)
	}
	if w.p.sourceLang != "" {
		w.defaultAlternate(w.p.sourceLang)
	}
	w.defaultAlternate("x-default")
}

func (w *Writer) defaultAlternate(code string) {
	w.out = append(w.out, `<link rel="alternate" hreflang="`...)
	w.out = append(w.out, code...)
	w.out = append(w.out, `" href="`...)
	w.out = append(w.out, w.scheme...)
	w.out = append(w.out, "://"...)
	w.out = appendEscaped(w.out, w.siteHost)
	w.out = appendEscaped(w.out, w.originPath)
	w.out = append(w.out, `">`...)
}

func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '&':
			dst = append(dst, "&amp;"...)
		case '"':
			dst = append(dst, "&#34;"...)
		case '<':
			dst = append(dst, "&lt;"...)
		case '>':
			dst = append(dst, "&gt;"...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
