package transform

import (
	"fmt"
	"html"
	"strings"
	"sync"
)

// Config configures a compiled Program.
type Config struct {
	// OnError is called (at most once per response) when a rule fails
	// mid-stream; the rest of that response then passes through unmodified.
	// The error is a *StreamError. It must be safe for concurrent use. The
	// proxy counts and logs here. Nil ignores failures.
	OnError func(error)
	// MaxTokenBytes bounds the bytes held for one token (tag, text run,
	// comment, script). Longer tokens are cut and passed through unmodified.
	// 0 means 64 KiB; values under 1 KiB are raised to 1 KiB.
	MaxTokenBytes int
}

// StreamError reports a rule that failed while a response was streamed.
type StreamError struct {
	Path string // origin path
	Lang string // language variant, "" for the original
	Err  error
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("transform %s (lang %q): %v; rest of the page passed through unmodified", e.Path, e.Lang, e.Err)
}
func (e *StreamError) Unwrap() error { return e.Err }

// Request is what a writer needs to know about the response it rewrites.
type Request struct {
	Scheme     string  // public scheme the client used: "https" or "http"
	Host       string  // public host the client used (may be a language host)
	SiteHost   string  // the site's main public host for x-default and path-prefix languages; "" means Host
	OriginHost string  // host[:port] the origin's absolute links use, for rewrite_links
	Path       string  // public request path (with any language prefix)
	Variant    Variant // from Program.Variant; the zero value is the original language
}

// Variant is the language a request asks for.
type Variant struct {
	Lang       string // language code, "" for the original
	OriginPath string // path to fetch from the origin: "/fr/x" gives "/x"
}

// Program is compiled rules: immutable and safe for concurrent use. Build
// it once per rules version and share it among all responses.
type Program struct {
	version      string
	cfg          Config
	maxTok       int
	rewriteLinks bool
	sourceLang   string
	injects      [3][]injection // by position
	langs        []*language
	elems        []elemRule
	elemAttrs    bool // some selector looks at attributes
	needAttrs    bool // tags need their attributes scanned
	pool         sync.Pool
	testHook     func(tokKind, []byte) // tests make rules fail with it
}

type injection struct {
	html  string
	paths []glob
	bit   int // index into the writer's path mask
}

type language struct {
	code   string
	prefix string // "/fr/" or ""
	host   string // lower case, or ""
	dict   map[string]string
}

type elemRule struct {
	sel     selector
	remove  bool
	setAttr []kv // sorted by key; values escaped for a double-quoted attribute
	prepend string
	append  string
	paths   []glob
	bit     int
}

type kv struct{ k, v string }

const defaultMaxToken = 64 << 10

// Compile validates r and builds its program.
func Compile(r *Rules, cfg Config) (*Program, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("compile transform rules: %w", err)
	}
	p := &Program{
		version:      r.Version(),
		cfg:          cfg,
		maxTok:       cfg.MaxTokenBytes,
		rewriteLinks: r.RewriteLinks,
		sourceLang:   r.SourceLanguage,
	}
	if p.maxTok == 0 {
		p.maxTok = defaultMaxToken
	}
	p.maxTok = max(p.maxTok, 1<<10)
	bit := 0
	for _, in := range r.Inject {
		pos := map[Position]int{HeadEnd: 0, BodyStart: 1, BodyEnd: 2}[in.At]
		p.injects[pos] = append(p.injects[pos], injection{html: in.HTML, paths: compileGlobs(in.Paths), bit: bit})
		bit++
	}
	for _, l := range r.Languages {
		cl := &language{code: l.Code, prefix: l.PathPrefix, host: strings.ToLower(l.Host), dict: make(map[string]string, len(l.Dictionary))}
		var buf []byte
		for k, v := range l.Dictionary {
			buf = normalizeSpace(buf[:0], k)
			cl.dict[string(buf)] = html.EscapeString(v)
		}
		p.langs = append(p.langs, cl)
	}
	for _, e := range r.Elements {
		sel, err := parseSelector(e.Selector)
		if err != nil {
			return nil, fmt.Errorf("compile transform rules: %w", err)
		}
		er := elemRule{sel: sel, remove: e.Remove, prepend: e.PrependHTML, append: e.AppendHTML, paths: compileGlobs(e.Paths), bit: bit}
		bit++
		for _, k := range sortedKeys(e.SetAttr) {
			er.setAttr = append(er.setAttr, kv{strings.ToLower(k), html.EscapeString(e.SetAttr[k])})
		}
		p.elemAttrs = p.elemAttrs || sel.needsAttrs() || len(er.setAttr) > 0
		p.elems = append(p.elems, er)
	}
	p.needAttrs = p.rewriteLinks || len(p.langs) > 0 || p.elemAttrs
	return p, nil
}

// Version is the version of the rules the program was compiled from.
func (p *Program) Version() string { return p.version }

// Variant tells which language a request for host and path asks for, and
// which path to fetch from the origin.
func (p *Program) Variant(host, path string) Variant {
	h := hostOnly(host)
	for _, l := range p.langs { // a language host wins over path prefixes
		if l.host != "" && strings.EqualFold(h, l.host) {
			return Variant{Lang: l.code, OriginPath: path}
		}
	}
	for _, l := range p.langs {
		if v, ok := prefixVariant(l.code, l.prefix, path); ok {
			return v
		}
	}
	return Variant{OriginPath: path}
}

func prefixVariant(code, prefix, path string) (Variant, bool) {
	switch {
	case prefix == "":
		return Variant{}, false
	case strings.HasPrefix(path, prefix):
		return Variant{Lang: code, OriginPath: path[len(prefix)-1:]}, true
	case path == prefix[:len(prefix)-1]:
		return Variant{Lang: code, OriginPath: "/"}, true
	case strings.HasPrefix(path, prefix[:len(prefix)-1]+"?"):
		return Variant{Lang: code, OriginPath: "/" + path[len(prefix)-1:]}, true
	}
	return Variant{}, false
}

// Variant is Program.Variant without compiling the rules.
func (r *Rules) Variant(host, path string) Variant {
	h := hostOnly(host)
	for _, l := range r.Languages {
		if l.Host != "" && strings.EqualFold(h, l.Host) {
			return Variant{Lang: l.Code, OriginPath: path}
		}
	}
	for _, l := range r.Languages {
		if v, ok := prefixVariant(l.Code, l.PathPrefix, path); ok {
			return v
		}
	}
	return Variant{OriginPath: path}
}

func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		return h[:i]
	}
	return h
}

func (p *Program) language(code string) *language {
	if code == "" {
		return nil
	}
	for _, l := range p.langs {
		if l.code == code {
			return l
		}
	}
	return nil
}

// glob matches paths: "*" matches within one segment, "**" across
// segments, "?" one byte other than "/".
type glob string

func compileGlobs(ss []string) []glob {
	gs := make([]glob, len(ss))
	for i, s := range ss {
		gs[i] = glob(s)
	}
	return gs
}

func matchAny(gs []glob, path string) bool {
	if len(gs) == 0 {
		return true
	}
	for _, g := range gs {
		if g.match(path) {
			return true
		}
	}
	return false
}

func (g glob) match(s string) bool {
	p := string(g)
	// Backtracking to the last "*" (which cannot cross "/"), and when that
	// fails to the last "**" (which can).
	dsP, dsS := -1, 0
	sP, sS := -1, 0
	i, j := 0, 0
	for j < len(s) {
		if i < len(p) && p[i] == '*' {
			if i+1 < len(p) && p[i+1] == '*' {
				for i < len(p) && p[i] == '*' {
					i++
				}
				dsP, dsS, sP = i, j, -1
			} else {
				i++
				sP, sS = i, j
			}
			continue
		}
		if i < len(p) && (p[i] == s[j] || p[i] == '?' && s[j] != '/') {
			i++
			j++
			continue
		}
		switch {
		case sP >= 0 && s[sS] != '/':
			sS++
			i, j = sP, sS
		case dsP >= 0:
			dsS++
			i, j, sP = dsP, dsS, -1
		default:
			return false
		}
	}
	for i < len(p) && p[i] == '*' {
		i++
	}
	return i == len(p)
}
