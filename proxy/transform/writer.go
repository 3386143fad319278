package transform

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// How the writer streams.
//
// x/net/html's Tokenizer pulls from an io.Reader and cannot be suspended: a
// reader that has no more bytes yet ends it for good. But between two
// tokens its only state is whether the next token is the raw text of a
// <script>, <style>, <title>, ... So each Write runs a fresh tokenizer over
// the carried-over bytes plus the new ones. A reader that runs dry reports
// errNeedMore; the token being read then is incomplete: it is not handled
// but carried over to the next Write (a raw-text state is restored by
// feeding a synthetic "<script>" first and dropping its token). Every
// complete token is rewritten and written on before Write returns.
//
// Memory is bounded by MaxTokenBytes: a longer token (a huge inline script,
// a giant data: URI) is cut at a point where the tokenizer state is known,
// its first part passed through as is, and the tokenizer restarted with a
// synthetic prefix that puts it back into that state (inside a comment, a
// quoted attribute value, raw text, ...). The synthetic bytes are dropped
// from the output, so every input byte still comes out exactly once.

var errNeedMore = errors.New("transform: need more input")

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("transform: write after close")

const flushSize = 32 << 10

// source feeds one tokenizer pass: a synthetic prefix, then the carried
// bytes, then the new ones.
type source struct {
	head   string
	parts  [2][]byte
	final  bool
	hitEnd bool
}

func (s *source) Read(p []byte) (int, error) {
	if s.head != "" {
		n := copy(p, s.head)
		s.head = s.head[n:]
		return n, nil
	}
	for i := range s.parts {
		if len(s.parts[i]) > 0 {
			n := copy(p, s.parts[i])
			s.parts[i] = s.parts[i][n:]
			return n, nil
		}
	}
	if s.final {
		return 0, io.EOF
	}
	s.hitEnd = true
	return 0, errNeedMore
}

// active is an element matched by a remove or append rule whose end has
// not been seen yet.
type active struct {
	pos    int // index of the element in the open-element stack
	remove bool
	append string
}

// open is an element on the open-element stack.
type open struct {
	a    atom.Atom
	name string // only for elements without an atom
}

const (
	maxActive = 256
	maxStack  = 1024 // deeper elements are not tracked (treated as empty)
)

type edit struct {
	at0, at1 int // span of the tag's raw bytes replaced
	s0, s1   int // replacement in arena
}

// bufs are the reusable buffers of a writer, pooled per program.
type bufs struct {
	out, carry, arena, norm []byte
	edits                   []edit
	active                  []active
	stack                   []open
	matched                 []int
	setKeys                 []string
	handled                 []bool
	t                       tag
	src                     source
}

// Writer rewrites one response. Write and Close must not be called
// concurrently; dst is written only during Write and Close.
type Writer struct {
	p          *Program
	dst        io.Writer
	req        Request
	lang       *language
	originPath string
	scheme     string
	siteHost   string
	mask       [(MaxInjections + MaxElementRules + 63) / 64]uint64
	*bufs

	err    error
	closed bool
	failed bool
	seen   bool
	stale  int // bytes at the start of carry already scanned without completing a token

	// Tokenizer restart state.
	resumeRaw    string // the next token is the raw text of this element
	resumePrefix string // synthetic start of a token that was cut
	cont         bool   // the next token continues a cut token: pass it through
	z            *html.Tokenizer

	// Document state.
	pendingRaw string
	template   int
	foreign    int
	headEnd    bool
	bodyStart  bool
	bodyEnd    bool
	removing   int
}

// NewWriter returns a writer that rewrites the HTML written to it into dst.
// Close must be called to flush the end of the document; it does not close
// dst.
func (p *Program) NewWriter(dst io.Writer, req Request) *Writer {
	w := &Writer{p: p, dst: dst, req: req, lang: p.language(req.Variant.Lang)}
	w.originPath = req.Variant.OriginPath
	if w.originPath == "" {
		w.originPath = req.Path
	}
	if w.originPath == "" {
		w.originPath = "/"
	}
	w.scheme = req.Scheme
	if w.scheme == "" {
		w.scheme = "https"
	}
	w.siteHost = req.SiteHost
	if w.siteHost == "" {
		w.siteHost = req.Host
	}
	for pos := range p.injects {
		for _, in := range p.injects[pos] {
			if matchAny(in.paths, w.originPath) {
				w.mask[in.bit/64] |= 1 << (in.bit % 64)
			}
		}
	}
	for _, e := range p.elems {
		if matchAny(e.paths, w.originPath) {
			w.mask[e.bit/64] |= 1 << (e.bit % 64)
		}
	}
	if b, ok := p.pool.Get().(*bufs); ok {
		w.bufs = b
	} else {
		w.bufs = &bufs{out: make([]byte, 0, flushSize+4096)}
	}
	return w
}

// Rewrite copies src through a new writer into dst and closes it.
func (p *Program) Rewrite(dst io.Writer, src io.Reader, req Request) (int64, error) {
	w := p.NewWriter(dst, req)
	n, err := io.Copy(w, src)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func (w *Writer) has(bit int) bool { return w.mask[bit/64]&(1<<(bit%64)) != 0 }

// Write rewrites p. All output that p allows is written to dst before Write
// returns, except for an incomplete last token, which waits for more input.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	w.seen = true
	if w.failed {
		w.passThrough(p)
		return len(p), w.err
	}
	// Re-scanning a long incomplete token on every small write would be
	// quadratic: wait until as many new bytes as carried ones arrived.
	if w.stale >= 4096 && len(w.carry)-w.stale+len(p) < w.stale && len(w.carry)+len(p) < 2*w.p.maxTok {
		w.carry = append(w.carry, p...)
		return len(p), nil
	}
	w.process(p, false)
	w.flush()
	return len(p), w.err
}

// Close rewrites the rest, adds the injections the document did not reach
// (a missing </body> puts body-end at the end), and flushes. It does not
// close dst.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err == nil {
		if w.failed {
			w.passThrough(nil)
		} else {
			w.process(nil, true)
			if !w.failed {
				w.token(html.ErrorToken, nil, 0, "", false) // end of document
			}
		}
		w.flush()
	}
	b := w.bufs
	w.bufs = nil
	if cap(b.out) <= 4*flushSize && cap(b.carry) <= 4*flushSize {
		b.out, b.carry = b.out[:0], b.carry[:0]
		b.active, b.stack = b.active[:0], b.stack[:0]
		w.p.pool.Put(b)
	}
	return w.err
}

func (w *Writer) passThrough(p []byte) {
	w.out = append(w.out, w.carry...)
	w.carry = w.carry[:0]
	w.flush()
	if w.err == nil && len(p) > 0 {
		_, w.err = w.dst.Write(p)
	}
}

func (w *Writer) flush() {
	if len(w.out) == 0 || w.err != nil {
		w.out = w.out[:0]
		return
	}
	_, w.err = w.dst.Write(w.out)
	w.out = w.out[:0]
}

func (w *Writer) fail(err error) {
	if w.failed {
		return
	}
	w.failed = true
	if w.p.cfg.OnError != nil {
		w.p.cfg.OnError(&StreamError{Path: w.originPath, Lang: w.req.Variant.Lang, Err: err})
	}
}

// process tokenizes carry+p and keeps what is incomplete in carry.
func (w *Writer) process(p []byte, final bool) {
	consumed := 0
	for w.pass(p, &consumed, final) {
	}
	if consumed < len(w.carry) {
		n := copy(w.carry, w.carry[consumed:])
		w.carry = append(w.carry[:n], p...)
	} else {
		w.carry = append(w.carry[:0], p[consumed-len(w.carry):]...)
	}
	w.stale = len(w.carry)
}

// rawStartTag returns "<script>" for "script" without allocating.
func rawStartTag(name string) string {
	switch name {
	case "script":
		return "<script>"
	case "style":
		return "<style>"
	case "title":
		return "<title>"
	case "textarea":
		return "<textarea>"
	case "noscript":
		return "<noscript>"
	case "iframe":
		return "<iframe>"
	case "xmp":
		return "<xmp>"
	case "noembed":
		return "<noembed>"
	case "noframes":
		return "<noframes>"
	case "plaintext":
		return "<plaintext>"
	}
	return "<" + name + ">"
}

// pass runs one tokenizer over the unconsumed input. It reports whether a
// token was cut and another pass must follow.
func (w *Writer) pass(p []byte, consumed *int, final bool) (again bool) {
	s := &w.src
	*s = source{final: final}
	c := *consumed
	if c < len(w.carry) {
		s.parts = [2][]byte{w.carry[c:], p}
	} else {
		s.parts[1] = p[c-len(w.carry):]
	}
	skipFirst := false
	prefixLen := 0
	switch {
	case w.resumeRaw != "":
		s.head, skipFirst = rawStartTag(w.resumeRaw), true
	case w.resumePrefix != "":
		s.head, prefixLen = w.resumePrefix, len(w.resumePrefix)
	}
	z := html.NewTokenizer(s)
	z.SetMaxBuf(w.p.maxTok)
	z.AllowCDATA(w.foreign > 0)
	w.z = z
	if skipFirst {
		z.Next() // the synthetic start tag; the tokenizer is now in its raw text
		w.pendingRaw, w.resumeRaw = w.resumeRaw, ""
	}
	for {
		inRaw := w.pendingRaw
		w.pendingRaw = ""
		tt := z.Next()
		if s.hitEnd {
			// Incomplete: keep it for the next write, in the same state.
			w.resumeRaw = inRaw
			return false
		}
		raw := z.Raw()
		if len(raw) >= w.p.maxTok {
			w.cut(raw, prefixLen, inRaw, consumed)
			return true
		}
		if tt == html.ErrorToken && len(raw) == 0 {
			return false
		}
		*consumed += len(raw) - prefixLen
		cont := w.cont
		w.cont, w.resumePrefix = false, ""
		w.token(tt, raw, prefixLen, inRaw, cont)
		prefixLen = 0
		if len(w.out) >= flushSize {
			w.flush()
		}
		if tt == html.ErrorToken {
			return false
		}
	}
}

// cut handles a token longer than MaxTokenBytes: it passes its first part
// through and sets up the restart. raw starts with prefixLen synthetic bytes.
func (w *Writer) cut(raw []byte, prefixLen int, inRaw string, consumed *int) {
	n := len(raw)
	end := n
	w.resumeRaw, w.resumePrefix = "", ""
	switch {
	case inRaw != "" && !isEndTagOf(raw, inRaw):
		// Raw text: keep a possible "</script" at the end for the next pass.
		if i := bytes.LastIndexByte(raw, '<'); i >= 0 && i >= n-len(inRaw)-2 {
			end = i
		}
		w.resumeRaw = inRaw
	case bytes.HasPrefix(raw, []byte("<!--")):
		// Keep the last bytes so that a "-->" split in two is still seen; the
		// "x" keeps "<!--" + "->" from reading as an abrupt "<!--->".
		end = n - 3
		w.resumePrefix = "<!--x"
	case w.foreign > 0 && bytes.HasPrefix(raw, []byte("<![CDATA[")):
		end = n - 2
		w.resumePrefix = "<![CDATA["
	case bytes.HasPrefix(raw, []byte("<!")) || bytes.HasPrefix(raw, []byte("<?")) ||
		bytes.HasPrefix(raw, []byte("</")) && !isLetter(raw[2]):
		w.resumePrefix = "<?" // read up to ">" like a bogus comment or doctype
	case raw[0] == '<' && (isLetter(raw[1]) || raw[1] == '/' && isLetter(raw[2])):
		w.resumePrefix = tagResumePrefix(raw)
	default:
		// Text: do not split "<" from the letter after it.
		if i := bytes.LastIndexByte(raw, '<'); i >= 0 && i >= n-2 {
			end = i
		}
	}
	end = max(end, prefixLen)
	if w.removing == 0 || w.failed {
		w.out = append(w.out, raw[prefixLen:end]...)
	}
	*consumed += end - prefixLen
	w.cont = true
	w.pendingRaw = ""
	if len(w.out) >= flushSize {
		w.flush()
	}
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// isEndTagOf reports whether raw starts with "</name", ignoring case.
func isEndTagOf(raw []byte, name string) bool {
	if len(raw) < 2+len(name) || raw[0] != '<' || raw[1] != '/' {
		return false
	}
	return bytes.EqualFold(raw[2:2+len(name)], []byte(name))
}

// tagResumePrefix returns a synthetic tag start that leaves the tokenizer
// in the state it is in at the end of the cut tag raw (same rules as
// tag.scan): in the name, between attributes, in a key, before a value,
// in a quoted or unquoted value.
func tagResumePrefix(raw []byte) string {
	var t tag
	end := raw[1] == '/'
	t.parse(raw, end, false)
	base := "<"
	if end {
		base = "</"
	}
	n, i := len(raw), t.n1
	if i >= n {
		return base + "x"
	}
	if len(t.name) <= 32 { // raw text elements have short names; keep the prefix short so every cut makes progress
		base += string(t.name)
	} else {
		base += "x"
	}
	skip := func() {
		for i < n && isSpace(raw[i]) {
			i++
		}
	}
	for {
		skip()
		if i >= n {
			return base + " "
		}
		k0 := i
		for i < n {
			c := raw[i]
			i++
			if c == '=' && k0+1 == i {
				continue
			}
			if c == '=' || isSpace(c) || c == '/' || c == '>' {
				i--
				break
			}
		}
		if i >= n {
			return base + " a"
		}
		skip()
		if i >= n {
			return base + " a "
		}
		c := raw[i]
		i++
		if c == '/' {
			continue
		}
		if c != '=' {
			i--
			continue
		}
		skip()
		if i >= n {
			return base + " a="
		}
		q := raw[i]
		i++
		switch q {
		case '"', '\'':
			j := bytes.IndexByte(raw[i:], q)
			if j < 0 {
				return base + " a=" + string(q)
			}
			i += j + 1
		default:
			for i < n && !isSpace(raw[i]) && raw[i] != '>' {
				i++
			}
			if i >= n {
				return base + " a=b"
			}
		}
	}
}

// token handles one complete token, failing open: on an error or a panic
// the token is written unmodified and so is the rest of the document.
func (w *Writer) token(tt html.TokenType, raw []byte, from int, inRaw string, cont bool) {
	if w.failed {
		w.out = append(w.out, raw[from:]...)
		return
	}
	mark := len(w.out)
	defer func() {
		if r := recover(); r != nil {
			w.out = append(w.out[:mark], raw[from:]...)
			w.fail(fmt.Errorf("panic in rule: %v", r))
		}
	}()
	if err := w.handle(tt, raw, from, inRaw, cont); err != nil {
		w.out = append(w.out[:mark], raw[from:]...)
		w.fail(err)
	}
}

func (w *Writer) emit(b []byte) {
	if w.removing == 0 {
		w.out = append(w.out, b...)
	}
}

func (w *Writer) handle(tt html.TokenType, raw []byte, from int, inRaw string, cont bool) error {
	if w.p.testHook != nil {
		w.p.testHook(tt, raw)
	}
	if cont {
		if tt == html.StartTagToken || tt == html.SelfClosingTagToken {
			w.t.parse(raw, false, tt == html.SelfClosingTagToken)
			w.pendingRaw = rawTextTag(w.t.a)
		}
		w.emit(raw[from:])
		return nil
	}
	switch tt {
	case html.TextToken:
		switch {
		case w.removing > 0:
		case inRaw != "":
			if inRaw == "title" && w.lang != nil && w.template == 0 {
				w.translateText(raw)
			} else {
				w.emit(raw)
			}
		case bytes.HasPrefix(raw, []byte("<![CDATA[")):
			w.emit(raw)
		default:
			if !w.bodyStart && w.template == 0 && !blank(raw) {
				w.startBody()
			}
			if w.lang != nil && w.template == 0 {
				w.translateText(raw)
			} else {
				w.emit(raw)
			}
		}
		return nil
	case html.StartTagToken, html.SelfClosingTagToken:
		return w.startTag(raw, tt == html.SelfClosingTagToken)
	case html.EndTagToken:
		return w.endTag(raw)
	case html.ErrorToken:
		if len(raw) > 0 { // a tag cut by the end of the document
			w.emit(raw)
			return nil
		}
		return w.endDocument()
	default: // comments, doctype
		w.emit(raw)
		return nil
	}
}

// blank reports text that does not start the body: whitespace and a BOM.
func blank(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	for _, c := range b {
		if !isSpace(c) {
			return false
		}
	}
	return true
}

func (w *Writer) injectAt(pos int) {
	if pos == 0 && len(w.p.langs) > 0 {
		w.alternates()
	}
	for i := range w.p.injects[pos] {
		in := &w.p.injects[pos][i]
		if w.has(in.bit) {
			w.out = append(w.out, in.html...)
		}
	}
}

// startBody injects what belongs where the head ends and the body starts,
// for documents that leave out </head> or <body>.
func (w *Writer) startBody() {
	if !w.headEnd {
		w.headEnd = true
		w.injectAt(0)
	}
	if !w.bodyStart {
		w.bodyStart = true
		w.injectAt(1)
	}
}

func (w *Writer) endBody() {
	w.startBody()
	if !w.bodyEnd {
		w.bodyEnd = true
		w.injectAt(2)
	}
}

func (w *Writer) endDocument() error {
	for len(w.active) > 0 {
		w.closeTop()
	}
	w.removing = 0
	if w.seen {
		w.endBody()
	}
	return nil
}

// closeTop ends the innermost active element.
func (w *Writer) closeTop() {
	e := w.active[len(w.active)-1]
	w.active = w.active[:len(w.active)-1]
	if e.remove {
		w.removing--
	} else if e.append != "" {
		w.emit([]byte(e.append))
	}
}

func (w *Writer) startTag(raw []byte, selfClosing bool) error {
	t := &w.t
	t.parse(raw, false, selfClosing)
	a := t.a
	w.pendingRaw = rawTextTag(a)
	// Optional end tags: <p> ends at the next <div>, <li> at the next <li>.
	for len(w.stack) > 0 && closesImplicitly(w.stack[len(w.stack)-1].a, a) {
		w.pop(len(w.stack) - 1)
	}
	closed := selfClosing || isVoid(a)
	if !closed && len(w.stack) < maxStack {
		e := open{a: a}
		if a == 0 {
			e.name = string(t.name)
		}
		w.stack = append(w.stack, e)
	} else {
		closed = true
	}
	if w.removing > 0 {
		return nil
	}
	outsideTemplate := w.template == 0
	if !closed {
		switch a {
		case atom.Template:
			w.template++
		case atom.Svg, atom.Math:
			w.foreign++
			w.z.AllowCDATA(true)
		}
	}
	if outsideTemplate {
		switch {
		case a == atom.Body:
			if !w.headEnd {
				w.headEnd = true
				w.injectAt(0)
			}
		case !w.bodyStart && !inHead(a) && a != atom.Head:
			w.startBody()
		}
	}
	// Element rules.
	w.matched = w.matched[:0]
	remove := false
	for i := range w.p.elems {
		e := &w.p.elems[i]
		if w.has(e.bit) && e.sel.match(t) {
			w.matched = append(w.matched, i)
			remove = remove || e.remove
		}
	}
	if remove {
		if !closed {
			if len(w.active) >= maxActive {
				return errors.New("too many nested elements matched by remove or append rules")
			}
			w.active = append(w.active, active{pos: len(w.stack) - 1, remove: true})
			w.removing++
		}
		return nil
	}
	w.writeTag(t)
	if a == atom.Body && w.template == 0 && !w.bodyStart {
		w.bodyStart = true
		w.injectAt(1)
	}
	for _, i := range w.matched {
		if s := w.p.elems[i].prepend; s != "" {
			w.out = append(w.out, s...)
		}
	}
	for _, i := range w.matched {
		s := w.p.elems[i].append
		if s == "" {
			continue
		}
		if closed {
			w.out = append(w.out, s...)
			continue
		}
		if len(w.active) >= maxActive {
			return errors.New("too many nested elements matched by remove or append rules")
		}
		w.active = append(w.active, active{pos: len(w.stack) - 1, append: s})
	}
	return nil
}

// pop removes the stack from index i up, ending the active elements there.
func (w *Writer) pop(i int) {
	w.stack = w.stack[:i]
	for len(w.active) > 0 && w.active[len(w.active)-1].pos >= i {
		w.closeTop()
	}
}

// findOpen returns the stack index of the element an end tag closes, or -1
// if the end tag is ignored, following HTML's rules in a simplified form:
// block end tags close through other elements up to a scope boundary,
// other end tags stop at the first block ("special") element.
func (w *Writer) findOpen(t *tag) int {
	if t.a == atom.Body || t.a == atom.Html {
		// </body> and </html> end everything inside them, even where the
		// document left out <body>.
		for i := len(w.stack) - 1; i >= 0; i-- {
			if a := w.stack[i].a; a == atom.Body || a == atom.Html {
				if a == t.a {
					return i
				}
				return i + 1
			}
		}
		return 0
	}
	block := isSpecial(t.a)
	for i := len(w.stack) - 1; i >= 0; i-- {
		e := &w.stack[i]
		if e.a == t.a && (t.a != 0 || e.name == string(t.name)) {
			return i
		}
		if block && isScopeBoundary(e.a) || !block && isSpecial(e.a) {
			return -1
		}
	}
	return -1
}

func (w *Writer) endTag(raw []byte) error {
	t := &w.t
	t.parse(raw, true, false)
	a := t.a
	if i := w.findOpen(t); i >= 0 {
		drop := false
		for j := len(w.active) - 1; j >= 0 && w.active[j].pos >= i; j-- {
			if w.active[j].pos == i && w.active[j].remove {
				drop = true // the end tag of a removed element
			}
		}
		w.pop(i)
		if drop {
			return nil
		}
	}
	if w.removing > 0 {
		return nil
	}
	switch a {
	case atom.Template:
		if w.template > 0 {
			w.template--
		}
	case atom.Svg, atom.Math:
		if w.foreign > 0 {
			w.foreign--
			w.z.AllowCDATA(w.foreign > 0)
		}
	}
	if w.template == 0 {
		switch a {
		case atom.Head:
			if !w.headEnd {
				w.headEnd = true
				w.injectAt(0)
			}
		case atom.Body, atom.Html:
			w.endBody()
		}
	}
	w.out = append(w.out, raw...)
	return nil
}
