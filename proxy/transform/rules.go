package transform

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits enforced by validation. They bound what one tenant can make every
// node hold in memory and do per response.
const (
	MaxRulesBytes        = 16 << 20 // encoded rules, YAML or canonical JSON
	MaxSnippetBytes      = 64 << 10 // one html / append_html / prepend_html / set_attr value
	MaxDictionaryEntries = 100_000  // per language
	MaxSegmentBytes      = 4 << 10  // one dictionary key or value
	MaxLanguages         = 64
	MaxInjections        = 64
	MaxElementRules      = 256
	MaxPathGlobs         = 64
	MaxSelectorBytes     = 512
	maxGlobBytes         = 512
)

// Position is where an injection goes.
type Position string

// Injection positions.
const (
	HeadEnd   Position = "head-end"   // just before </head> (or where the head implicitly ends)
	BodyStart Position = "body-start" // just after <body ...> (or where the body implicitly starts)
	BodyEnd   Position = "body-end"   // just before </body>; before </html> or at the end of the document if it is missing
)

// Rules is one tenant's transformation rules. The zero value does nothing.
type Rules struct {
	// Inject inserts HTML snippets at fixed points of the document.
	Inject []Injection `yaml:"inject,omitempty" json:"inject,omitempty"`
	// RewriteLinks turns absolute and protocol-relative URLs that point at
	// the origin's host into URLs on the public scheme and host.
	RewriteLinks bool `yaml:"rewrite_links,omitempty" json:"rewrite_links,omitempty"`
	// SourceLanguage is the language of the origin's pages. When set, the
	// hreflang alternates also list it (pointing at the untranslated page).
	SourceLanguage string `yaml:"source_language,omitempty" json:"source_language,omitempty"`
	// Languages are translated variants of the site.
	Languages []Language `yaml:"languages,omitempty" json:"languages,omitempty"`
	// Elements are actions on the elements a selector matches.
	Elements []ElementRule `yaml:"elements,omitempty" json:"elements,omitempty"`
}

// Injection inserts an HTML snippet.
type Injection struct {
	At    Position `yaml:"at" json:"at"`
	HTML  string   `yaml:"html" json:"html"`
	Paths []string `yaml:"paths,omitempty" json:"paths,omitempty"` // globs on the origin path; empty = every page
}

// Language is one translated variant, selected by a path prefix or a host.
type Language struct {
	Code       string            `yaml:"code" json:"code"`
	PathPrefix string            `yaml:"path_prefix,omitempty" json:"path_prefix,omitempty"` // e.g. "/fr/"
	Host       string            `yaml:"host,omitempty" json:"host,omitempty"`               // e.g. "fr.shop.example"
	Dictionary map[string]string `yaml:"dictionary,omitempty" json:"dictionary,omitempty"`
}

// ElementRule applies actions to every element its selector matches.
type ElementRule struct {
	// Selector is a small CSS subset: a tag or "*", #id, .class, [attr],
	// [attr=value] (also ^= $= *=), combined on one element, and "," lists.
	Selector    string            `yaml:"selector" json:"selector"`
	Remove      bool              `yaml:"remove,omitempty" json:"remove,omitempty"`             // drop the element and its content
	SetAttr     map[string]string `yaml:"set_attr,omitempty" json:"set_attr,omitempty"`         // set (or add) attributes
	PrependHTML string            `yaml:"prepend_html,omitempty" json:"prepend_html,omitempty"` // insert right after the start tag
	AppendHTML  string            `yaml:"append_html,omitempty" json:"append_html,omitempty"`   // insert right before the end tag
	Paths       []string          `yaml:"paths,omitempty" json:"paths,omitempty"`               // globs on the origin path; empty = every page
}

// ValidationError says which field of the rules is wrong and why.
type ValidationError struct {
	Field  string // e.g. "languages[0].path_prefix"
	Reason string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Reason }

// ErrInvalidRules is wrapped by every error ParseRules, DecodeRules and
// Validate return.
var ErrInvalidRules = errors.New("invalid transform rules")

type invalid struct{ errs []error }

func (e *invalid) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}
func (e *invalid) Unwrap() []error { return append([]error{ErrInvalidRules}, e.errs...) }

// ParseRules decodes rules from YAML (JSON is YAML too) strictly: unknown
// fields, duplicate keys and several documents are errors. The rules are
// validated; errors name the field and the reason.
func ParseRules(data []byte) (*Rules, error) {
	if len(data) > MaxRulesBytes {
		return nil, &invalid{[]error{&ValidationError{"rules", fmt.Sprintf("%d bytes is more than the limit of %d", len(data), MaxRulesBytes)}}}
	}
	var r Rules
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil && !errors.Is(err, io.EOF) {
		return nil, &invalid{[]error{&ValidationError{"rules", yamlReason(err)}}}
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &invalid{[]error{&ValidationError{"rules", "more than one YAML document"}}}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

var yamlUnknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

func yamlReason(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.TrimPrefix(s, "unmarshal errors:\n")
	s = yamlUnknownField.ReplaceAllString(s, `unknown field "$1"`)
	lines := strings.Fields(strings.ReplaceAll(s, "\n", " \x00 "))
	return strings.ReplaceAll(strings.Join(lines, " "), " \x00 ", "; ")
}

// Encode returns the canonical form of the rules (compact JSON with sorted
// map keys), the form to store and replicate. Equal rules encode equally.
func (r *Rules) Encode() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode transform rules: %w", err)
	}
	return b, nil
}

// DecodeRules decodes and validates the canonical form made by Encode. It
// is much faster than ParseRules on large dictionaries.
func DecodeRules(data []byte) (*Rules, error) {
	if len(data) > MaxRulesBytes {
		return nil, &invalid{[]error{&ValidationError{"rules", fmt.Sprintf("%d bytes is more than the limit of %d", len(data), MaxRulesBytes)}}}
	}
	var r Rules
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, &invalid{[]error{&ValidationError{"rules", err.Error()}}}
	}
	if dec.More() {
		return nil, &invalid{[]error{&ValidationError{"rules", "trailing data after the rules"}}}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Version is a stable hash of the canonical form, for cache keys: equal
// rules have equal versions. It costs an encoding; a Program keeps it.
func (r *Rules) Version() string {
	b, err := r.Encode()
	if err != nil {
		return "invalid"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// Validate checks limits, selectors, language codes, prefixes, hosts and
// snippets. It reports up to 20 problems at once.
func (r *Rules) Validate() error {
	v := &validator{}
	v.rules(r)
	if len(v.errs) == 0 {
		return nil
	}
	return &invalid{v.errs}
}

type validator struct{ errs []error }

func (v *validator) add(field, format string, args ...any) {
	if len(v.errs) < 20 {
		v.errs = append(v.errs, &ValidationError{field, fmt.Sprintf(format, args...)})
	}
}

var (
	langCodeRe = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$`)
	prefixRe   = regexp.MustCompile(`^/([A-Za-z0-9._~-]+/)+$`)
	hostRe     = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$`)
	attrNameRe = regexp.MustCompile(`^[A-Za-z_:][-A-Za-z0-9_:.]*$`)
)

func (v *validator) rules(r *Rules) {
	if len(r.Inject) > MaxInjections {
		v.add("inject", "%d injections is more than the limit of %d", len(r.Inject), MaxInjections)
	}
	for i, in := range r.Inject {
		f := fmt.Sprintf("inject[%d]", i)
		switch in.At {
		case HeadEnd, BodyStart, BodyEnd:
		case "":
			v.add(f+".at", "missing (one of head-end, body-start, body-end)")
		default:
			v.add(f+".at", "%q is not one of head-end, body-start, body-end", in.At)
		}
		v.snippet(f+".html", in.HTML, true)
		v.paths(f+".paths", in.Paths)
	}
	if r.SourceLanguage != "" && !langCodeRe.MatchString(r.SourceLanguage) {
		v.add("source_language", "%q is not a language code like fr or pt-BR", r.SourceLanguage)
	}
	if len(r.Languages) > MaxLanguages {
		v.add("languages", "%d languages is more than the limit of %d", len(r.Languages), MaxLanguages)
	}
	codes, prefixes, hosts := map[string]int{}, map[string]int{}, map[string]int{}
	for i, l := range r.Languages {
		f := fmt.Sprintf("languages[%d]", i)
		switch {
		case l.Code == "":
			v.add(f+".code", "missing")
		case !langCodeRe.MatchString(l.Code):
			v.add(f+".code", "%q is not a language code like fr or pt-BR", l.Code)
		case strings.EqualFold(l.Code, r.SourceLanguage):
			v.add(f+".code", "%q is the source_language", l.Code)
		default:
			if j, dup := codes[strings.ToLower(l.Code)]; dup {
				v.add(f+".code", "%q is already used by languages[%d]", l.Code, j)
			}
			codes[strings.ToLower(l.Code)] = i
		}
		switch {
		case l.PathPrefix == "" && l.Host == "":
			v.add(f, "needs path_prefix or host")
		case l.PathPrefix != "" && l.Host != "":
			v.add(f, "has both path_prefix and host; use one")
		case l.PathPrefix != "":
			switch {
			case len(l.PathPrefix) < 3 || l.PathPrefix[0] != '/' || l.PathPrefix[len(l.PathPrefix)-1] != '/':
				v.add(f+".path_prefix", `must start and end with "/" and not be "/" (like /fr/)`)
			case !prefixRe.MatchString(l.PathPrefix) || strings.Contains(l.PathPrefix, "/./") || strings.Contains(l.PathPrefix, "/../"):
				v.add(f+".path_prefix", "%q may only hold letters, digits and -._~ between slashes", l.PathPrefix)
			default:
				for p, j := range prefixes {
					if strings.HasPrefix(l.PathPrefix, p) || strings.HasPrefix(p, l.PathPrefix) {
						v.add(f+".path_prefix", "%q overlaps languages[%d].path_prefix %q", l.PathPrefix, j, p)
					}
				}
				prefixes[l.PathPrefix] = i
			}
		default:
			h := strings.ToLower(l.Host)
			switch {
			case len(h) > 253 || !hostRe.MatchString(h):
				v.add(f+".host", "%q is not a host name (no scheme, port or path)", l.Host)
			default:
				if j, dup := hosts[h]; dup {
					v.add(f+".host", "%q is already used by languages[%d]", l.Host, j)
				}
				hosts[h] = i
			}
		}
		v.dictionary(f+".dictionary", l.Dictionary)
	}
	if len(r.Elements) > MaxElementRules {
		v.add("elements", "%d element rules is more than the limit of %d", len(r.Elements), MaxElementRules)
	}
	for i, e := range r.Elements {
		f := fmt.Sprintf("elements[%d]", i)
		if e.Selector == "" {
			v.add(f+".selector", "missing")
		} else if _, err := parseSelector(e.Selector); err != nil {
			v.add(f+".selector", "%v", err)
		}
		if !e.Remove && len(e.SetAttr) == 0 && e.PrependHTML == "" && e.AppendHTML == "" {
			v.add(f, "needs an action: remove, set_attr, prepend_html or append_html")
		}
		if e.Remove && (len(e.SetAttr) > 0 || e.PrependHTML != "" || e.AppendHTML != "") {
			v.add(f, "remove cannot be combined with other actions")
		}
		if e.PrependHTML != "" {
			v.snippet(f+".prepend_html", e.PrependHTML, true)
		}
		if e.AppendHTML != "" {
			v.snippet(f+".append_html", e.AppendHTML, true)
		}
		for _, k := range sortedKeys(e.SetAttr) {
			if !attrNameRe.MatchString(k) {
				v.add(f+".set_attr", "%q is not an attribute name", k)
			}
			v.snippet(fmt.Sprintf("%s.set_attr[%q]", f, k), e.SetAttr[k], false)
		}
		v.paths(f+".paths", e.Paths)
	}
}

func (v *validator) snippet(field, s string, markup bool) {
	switch {
	case markup && strings.TrimSpace(s) == "":
		v.add(field, "missing")
	case len(s) > MaxSnippetBytes:
		v.add(field, "%d bytes is more than the limit of %d", len(s), MaxSnippetBytes)
	case !utf8.ValidString(s):
		v.add(field, "not valid UTF-8")
	case markup && !balancedSnippet(s):
		v.add(field, "ends inside a tag, comment or raw text element (script, style, textarea, ...); it would swallow the page")
	}
}

// balancedSnippet reports whether the writer's tokenizer is back in the
// data state after s, so that an injected snippet cannot swallow the rest
// of the page.
func balancedSnippet(s string) bool {
	const sentinel = "<x-edge-sentinel>"
	b := []byte(s + sentinel)
	var sc scanner
	var t tag
	var last []byte
	inRaw := ""
	for len(b) > 0 {
		k, n := sc.next(b, inRaw, &t)
		if n == 0 {
			n = len(b) // cut off by the end
		}
		inRaw = ""
		if k == tokStartTag || k == tokSelfClosingTag {
			inRaw = rawTextTag(t.a)
		}
		last, b = b[:n], b[n:]
	}
	return string(last) == sentinel
}

func (v *validator) paths(field string, globs []string) {
	if len(globs) > MaxPathGlobs {
		v.add(field, "%d globs is more than the limit of %d", len(globs), MaxPathGlobs)
	}
	for i, g := range globs {
		switch {
		case g == "" || g[0] != '/':
			v.add(fmt.Sprintf("%s[%d]", field, i), "%q must start with \"/\"", g)
		case len(g) > maxGlobBytes:
			v.add(fmt.Sprintf("%s[%d]", field, i), "longer than %d bytes", maxGlobBytes)
		}
	}
}

func (v *validator) dictionary(field string, d map[string]string) {
	if len(d) > MaxDictionaryEntries {
		v.add(field, "%d entries is more than the limit of %d", len(d), MaxDictionaryEntries)
		return
	}
	seen := make(map[string]string, len(d))
	var buf []byte
	for _, k := range sortedKeys(d) {
		val := d[k]
		f := fmt.Sprintf("%s[%q]", field, truncate(k, 60))
		buf = normalizeSpace(buf[:0], k)
		switch {
		case len(buf) == 0:
			v.add(f, "the source text is empty")
			continue
		case len(k) > MaxSegmentBytes || len(val) > MaxSegmentBytes:
			v.add(f, "longer than %d bytes", MaxSegmentBytes)
			continue
		case !utf8.ValidString(k) || !utf8.ValidString(val):
			v.add(f, "not valid UTF-8")
			continue
		case strings.TrimSpace(val) == "":
			v.add(f, "the translation is empty")
			continue
		}
		if other, dup := seen[string(buf)]; dup {
			v.add(f, "same text as %q after whitespace normalisation", truncate(other, 60))
			continue
		}
		seen[string(buf)] = k
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// isSpace reports HTML's ASCII whitespace.
func isSpace(c byte) bool { return c <= ' ' && spaceMask&(1<<c) != 0 }

// Byte classes as bit masks over the bytes 0-63 (all the delimiters of the
// tag syntax are there), so that one test covers several bytes.
const (
	spaceMask   = 1<<' ' | 1<<'\t' | 1<<'\n' | 1<<'\r' | 1<<'\f'
	nameEnd     = spaceMask | 1<<'/' | 1<<'>' // ends a tag name
	keyEnd      = nameEnd | 1<<'='            // ends an attribute name
	unquotedEnd = spaceMask | 1<<'>'          // ends an unquoted value
)

// in reports whether c is in the class mask.
func in(c byte, mask uint64) bool { return c < 64 && mask&(1<<c) != 0 }

// normalizeSpace appends s to dst with runs of HTML whitespace collapsed to
// one space and leading and trailing whitespace removed.
func normalizeSpace[S string | []byte](dst []byte, s S) []byte {
	space, start := false, len(dst)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isSpace(c) {
			space = true
			continue
		}
		if space && len(dst) > start {
			dst = append(dst, ' ')
		}
		space = false
		dst = append(dst, c)
	}
	return dst
}
