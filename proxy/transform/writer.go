package transform

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"golang.org/x/net/html/atom"
)

// How the writer streams.
//
// The scanner (scan.go) finds tokens in place in the bytes of a Write. A
// token that does not end within them (the scanner cannot tell yet) is
// not handled but carried over to the next Write; the only state between
// tokens is the writer's: the raw-text element whose content comes next,
// whether CDATA is recognised, and how a cut token goes on. Every complete
// token is rewritten and written on before Write returns.
//
// Memory is bounded by MaxTokenBytes: a token that does not end within
// that many bytes (a huge inline script, a giant data: URI) is cut, its
// first part passed through as is, and the scanner resumes in the state
// the cut left it in (inside a comment, a quoted attribute value, raw text,
// ...). The part after the cut passes through as is too, so every input
// byte still comes out exactly once. Whether a token is cut depends only on
// its first MaxTokenBytes bytes, never on how the input was split.

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("transform: write after close")

const flushSize = 32 << 10

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
	out, carry, arena, norm, unesc []byte
	edits                          []edit
	active                         []active
	stack                          []open
	matched                        []int
	setKeys                        []string
	handled                        []bool
	t                              tag
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

	// Tokenizer state.
	sc       scanner
	contText bool // text that a cut split goes on in the next token: pass it through

	// Document state.
	pendingRaw string // the next token is the raw text of this element
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
				w.token(tokEOF, nil, "", false)
			}
		}
		w.flush()
	}
	b := w.bufs
	w.bufs = nil
	if cap(b.out) <= 4*flushSize && cap(b.carry) <= 4*flushSize {
		b.out, b.carry = b.out[:0], b.carry[:0]
		b.active, b.stack = b.active[:0], b.stack[:0]
		b.t.raw = nil // do not keep the caller's bytes alive
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

// process tokenizes carry+p and keeps what is incomplete in carry. Tokens
// are read in place from p; only a token that spans the carried bytes and p
// is read from a copy.
func (w *Writer) process(p []byte, final bool) {
	if len(w.carry) > 0 {
		// The carried token needs at most MaxTokenBytes more to end or be cut.
		old := len(w.carry)
		take := min(len(p), w.p.maxTok)
		w.carry = append(w.carry, p[:take]...)
		last := take == len(p)
		c := w.run(w.carry, final && last)
		switch {
		case last:
			n := copy(w.carry, w.carry[c:])
			w.carry = w.carry[:n]
			w.stale = n
			return
		case c >= old:
			p = p[c-old:]
			w.carry = w.carry[:0]
		default: // not reached: a full window always ends or cuts its token
			w.carry = append(w.carry[:0], w.carry[c:old]...)
			w.carry = append(w.carry, p...)
			c = w.run(w.carry, final)
			n := copy(w.carry, w.carry[c:])
			w.carry = w.carry[:n]
			w.stale = n
			return
		}
	}
	c := w.run(p, final)
	w.carry = append(w.carry[:0], p[c:]...)
	w.stale = len(w.carry)
}

// run handles the complete tokens at the start of b and returns how many
// bytes they took. With final, b is the end of the document.
func (w *Writer) run(b []byte, final bool) int {
	pos := 0
	for !w.runTokens(b, &pos, final) {
	}
	return pos
}

// runTokens handles the tokens from b[*pos] on, moving *pos past each. It
// fails open: when a rule returns an error or panics, the token is written
// unmodified and so is the rest of the document. It returns false after a
// panic, for run to go on; one recover covers all tokens.
func (w *Writer) runTokens(b []byte, pos *int, final bool) bool {
	var tok []byte // the token being handled
	mark := 0      // len(w.out) before it
	defer func() {
		if r := recover(); r != nil {
			if tok == nil { // not in a rule: pass the rest through
				tok = b[*pos:]
			}
			w.out = append(w.out[:mark], tok...)
			*pos += len(tok)
			w.fail(fmt.Errorf("panic in rule: %v", r))
		}
	}()
	maxTok := w.p.maxTok
	for *pos < len(b) {
		tok, mark = nil, len(w.out)
		win := b[*pos:min(len(b), *pos+maxTok)]
		inRaw := w.pendingRaw
		resumed := w.sc.resume != openNone
		k, n := w.sc.next(win, inRaw, &w.t)
		if n == 0 {
			switch {
			case len(win) == maxTok:
				*pos += w.cut(win, inRaw, resumed)
				continue
			case !final:
				return true
			}
			n = len(win) // the token the end of the document cut off
		}
		w.pendingRaw = ""
		w.sc.resume = openNone
		cont := resumed || w.contText && k == tokText
		w.contText = false
		tok = win[:n]
		if w.failed {
			w.out = append(w.out, tok...)
		} else if err := w.handle(k, tok, inRaw, cont); err != nil {
			w.out = append(w.out[:mark], tok...)
			w.fail(err)
		}
		*pos += n
		if len(w.out) >= flushSize {
			tok, mark = nil, 0
			w.flush()
		}
	}
	return true
}

// cut handles a token that does not end within MaxTokenBytes (win): it
// passes its first part through, sets up the scanner to resume where it
// stopped and returns the length of that part.
func (w *Writer) cut(win []byte, inRaw string, resumed bool) int {
	s := &w.sc
	n := len(win)
	end := n
	w.pendingRaw = ""
	if !resumed {
		s.resumeRaw = ""
	}
	s.resume = openNone
	switch s.open {
	case openText:
		if win[n-1] == '<' { // keep "<" with what follows it
			end = n - 1
		}
		w.contText = true
	case openRaw:
		// Keep a possible "</script" at the end for the next token.
		if i := bytes.LastIndexByte(win, '<'); i >= n-len(inRaw)-2 && i > 0 {
			end = i
		}
		w.pendingRaw = inRaw
		w.contText = true
	case openComment:
		end = n - 3 // so that a "-->" split here is still seen
		s.resume = openComment
	case openCDATA:
		end = n - 2
		s.resume = openCDATA
	case openBogus:
		s.resume = openBogus
	case openTag:
		s.resume = openTag
		if !resumed && !s.endTag && s.tagSt != tsName {
			// The rest of a <script ...> is followed by its raw text.
			i := 2
			for i < n && !isSpace(win[i]) && win[i] != '/' && win[i] != '>' {
				i++
			}
			if i-1 <= len("plaintext") {
				var name [len("plaintext")]byte
				for j, c := range win[1:i] {
					if 'A' <= c && c <= 'Z' {
						c += 'a' - 'A'
					}
					name[j] = c
				}
				s.resumeRaw = rawTextTag(atom.Lookup(name[:i-1]))
			}
		}
	}
	if w.removing == 0 || w.failed {
		w.out = append(w.out, win[:end]...)
	}
	if len(w.out) >= flushSize {
		w.flush()
	}
	return end
}

// token handles one token outside runTokens (the end of the document),
// failing open as runTokens does.
func (w *Writer) token(k tokKind, raw []byte, inRaw string, cont bool) {
	if w.failed {
		w.out = append(w.out, raw...)
		return
	}
	mark := len(w.out)
	defer func() {
		if r := recover(); r != nil {
			w.out = append(w.out[:mark], raw...)
			w.fail(fmt.Errorf("panic in rule: %v", r))
		}
	}()
	if err := w.handle(k, raw, inRaw, cont); err != nil {
		w.out = append(w.out[:mark], raw...)
		w.fail(err)
	}
}

func (w *Writer) emit(b []byte) {
	if w.removing == 0 {
		w.out = append(w.out, b...)
	}
}

func (w *Writer) handle(k tokKind, raw []byte, inRaw string, cont bool) error {
	if w.p.testHook != nil {
		w.p.testHook(k, raw)
	}
	if cont {
		// The rest of a cut token.
		if k == tokStartTag {
			w.pendingRaw = w.sc.resumeRaw
		}
		w.emit(raw)
		return nil
	}
	switch k {
	case tokText:
		switch {
		case w.removing > 0:
		case inRaw != "":
			if inRaw == "title" && w.lang != nil && w.template == 0 {
				w.translateText(raw)
			} else {
				w.emit(raw)
			}
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
	case tokStartTag, tokSelfClosingTag:
		return w.startTag()
	case tokEndTag:
		return w.endTag()
	case tokEOF:
		return w.endDocument()
	default: // comments, doctype, CDATA, a tag cut off by the end of the document
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

// startTag handles the start tag that the scanner left in w.t.
func (w *Writer) startTag() error {
	t := &w.t
	a, selfClosing := t.a, t.selfClosing
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
			w.sc.cdata = true
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

// endTag handles the end tag that the scanner left in w.t.
func (w *Writer) endTag() error {
	t := &w.t
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
			w.sc.cdata = w.foreign > 0
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
	w.out = append(w.out, t.raw...)
	return nil
}
