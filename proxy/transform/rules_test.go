package transform

import (
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// issueExample is the rules file from issue 5, as-is; the end-to-end test
// in node/ feeds the same file to edgectl.
var issueExample = func() string {
	b, err := os.ReadFile("../../testdata/transform/issue-example.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func TestParseRulesIssueExample(t *testing.T) {
	r, err := ParseRules([]byte(issueExample))
	if err != nil {
		t.Fatal(err)
	}
	want := &Rules{
		Inject:       []Injection{{At: BodyEnd, HTML: `<div id="edge-toolbar"></div>`}},
		RewriteLinks: true,
		Languages:    []Language{{Code: "fr", PathPrefix: "/fr/", Dictionary: map[string]string{"Welcome": "Bienvenue", "Hello world": "Bonjour le monde"}}},
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got %+v", r)
	}
}

func TestParseRulesErrors(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"languages:\n  - code: fr\n    path_prefix: fr/\n", `languages[0].path_prefix: must start and end with "/"`},
		{"languages:\n  - code: fr\n    path_prefix: /fr\n", `languages[0].path_prefix: must start and end with "/"`},
		{"languages:\n  - code: fr\n    path_prefix: /f r/\n", `languages[0].path_prefix: "/f r/" may only hold`},
		{"languages:\n  - code: french!\n    host: fr.example\n", `languages[0].code: "french!" is not a language code`},
		{"languages:\n  - code: fr\n", `languages[0]: needs path_prefix or host`},
		{"languages:\n  - code: fr\n    host: a.example\n    path_prefix: /fr/\n", `languages[0]: has both path_prefix and host`},
		{"languages:\n  - code: fr\n    host: a.example\n  - code: FR\n    host: b.example\n", `languages[1].code: "FR" is already used by languages[0]`},
		{"languages:\n  - code: fr\n    host: https://a.example/\n", `languages[0].host: "https://a.example/" is not a host name`},
		{"languages:\n  - code: fr\n    path_prefix: /fr/\n  - code: de\n    path_prefix: /fr/de/\n", `languages[1].path_prefix: "/fr/de/" overlaps languages[0].path_prefix "/fr/"`},
		{"languages:\n  - code: fr\n    host: a.example\n    dictionary:\n      'Hello  world': x\n      'Hello world': y\n", `same text as "Hello  world" after whitespace normalisation`},
		{"languages:\n  - code: fr\n    host: a.example\n    dictionary:\n      Hello:\n", `languages[0].dictionary["Hello"]: the translation is empty`},
		{"inject:\n  - at: footer\n    html: x\n", `inject[0].at: "footer" is not one of head-end, body-start, body-end`},
		{"inject:\n  - at: head-end\n    html: '<script>alert(1)'\n", `inject[0].html: ends inside a tag, comment or raw text element`},
		{"inject:\n  - at: head-end\n    html: '<!-- x'\n", `inject[0].html: ends inside`},
		{"inject:\n  - at: head-end\n    html: x\n    paths: [blog/*]\n", `inject[0].paths[0]: "blog/*" must start with "/"`},
		{"elements:\n  - selector: div .ad\n    remove: true\n", `elements[0].selector: unexpected ' ' at offset 3`},
		{"elements:\n  - selector: ul > li\n    remove: true\n", `combinators`},
		{"elements:\n  - selector: 'a:hover'\n    remove: true\n", `pseudo-classes are not supported`},
		{"elements:\n  - selector: '[href'\n    remove: true\n", `unclosed '['`},
		{"elements:\n  - selector: div\n", `elements[0]: needs an action`},
		{"elements:\n  - selector: div\n    remove: true\n    append_html: x\n", `elements[0]: remove cannot be combined`},
		{"elements:\n  - selector: div\n    set_attr: {'on click': x}\n", `elements[0].set_attr: "on click" is not an attribute name`},
		{"rewrite_links: true\nrewrite_link: true\n", `unknown field "rewrite_link"`},
		{"languages:\n  - code: fr\n    prefix: /fr/\n", `unknown field "prefix"`},
		{"rewrite_links: true\nrewrite_links: false\n", `already defined`},
		{"rewrite_links: yes please\n", `cannot unmarshal`},
		{"rewrite_links: true\n---\nrewrite_links: false\n", `more than one YAML document`},
	} {
		_, err := ParseRules([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalidRules) {
			t.Errorf("ParseRules(%q):\n got %v\nwant %q", c.yaml, err, c.want)
		}
	}
}

func TestValidateLimits(t *testing.T) {
	dict := make(map[string]string, MaxDictionaryEntries+1)
	for i := range MaxDictionaryEntries + 1 {
		dict["k"+strconv.Itoa(i)] = "v"
	}
	r := &Rules{Languages: []Language{{Code: "fr", Host: "fr.example", Dictionary: dict}}}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "languages[0].dictionary: 100001 entries is more than the limit of 100000") {
		t.Errorf("got %v", err)
	}
	delete(dict, "k0")
	if err := r.Validate(); err != nil {
		t.Errorf("100000 entries: %v", err)
	}
	r = &Rules{Inject: []Injection{{At: HeadEnd, HTML: strings.Repeat("x", MaxSnippetBytes+1)}}}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "inject[0].html: 65537 bytes is more than the limit") {
		t.Errorf("got %v", err)
	}
	if _, err := ParseRules(make([]byte, MaxRulesBytes+1)); err == nil {
		t.Error("oversized rules accepted")
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	r, err := ParseRules(readFile(t, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeRules(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, back) {
		t.Fatalf("round trip changed the rules")
	}
	if r.Version() != back.Version() {
		t.Error("version changed on round trip")
	}
	// JSON is YAML: the canonical form parses with ParseRules too.
	viaYAML, err := ParseRules(b)
	if err != nil || viaYAML.Version() != r.Version() {
		t.Errorf("ParseRules(canonical): %v, version %s vs %s", err, viaYAML.Version(), r.Version())
	}
	again, _ := r.Encode()
	if string(again) != string(b) {
		t.Error("Encode is not deterministic")
	}
	r.Languages[0].Dictionary["Welcome"] = "Salut"
	if r.Version() == back.Version() {
		t.Error("version did not change with the dictionary")
	}
	if _, err := DecodeRules([]byte(`{"rewrite_links":true,"bogus":1}`)); err == nil {
		t.Error("unknown JSON field accepted")
	}
	p, err := Compile(back, Config{})
	if err != nil || p.Version() != back.Version() {
		t.Errorf("Compile: %v, version %q", err, p.Version())
	}
}

func TestSelector(t *testing.T) {
	for _, c := range []struct {
		sel, tag string
		want     bool
	}{
		{"div", `<DIV class="x">`, true},
		{"div", `<span>`, false},
		{"*", `<span>`, true},
		{".ad", `<div class="top ad banner">`, true},
		{".ad", `<div class="adx">`, false},
		{"div.ad.banner", `<div class="ad banner">`, true},
		{"#main", `<section id=main>`, true},
		{"#main", `<section id="Main">`, false},
		{"[data-x]", `<p data-x>`, true},
		{"[data-x=1]", `<p DATA-X='1'>`, true},
		{`a[href^="https://"]`, `<a href="https://x">`, true},
		{`a[href$=".pdf"]`, `<a href="/f.pdf">`, true},
		{`a[href*=shop]`, `<a href="/shop/x">`, true},
		{`[rel~=nofollow]`, `<a rel="ugc nofollow">`, true},
		{`[title="a &amp; b"]`, `<a title="a &amp; b">`, false},
		{`[title="a & b"]`, `<a title="a &amp; b">`, true},
		{"p, li.ad", `<li class=ad>`, true},
		{"img[loading=eager]", `<img loading="eager" src=x>`, true},
	} {
		s, err := parseSelector(c.sel)
		if err != nil {
			t.Fatalf("%q: %v", c.sel, err)
		}
		var tg tag
		var sc scanner
		if k, n := sc.next([]byte(c.tag), "", &tg); k != tokStartTag || n != len(c.tag) {
			t.Fatalf("%s: scanned %v of %d bytes", c.tag, k, n)
		}
		if got := s.match(&tg); got != c.want {
			t.Errorf("%q matches %s = %v, want %v", c.sel, c.tag, got, c.want)
		}
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		glob, path string
		want       bool
	}{
		{"/blog/*", "/blog/x", true},
		{"/blog/*", "/blog/x/y", false},
		{"/blog/**", "/blog/x/y", true},
		{"/**/*.html", "/a/b/c.html", true},
		{"/**/*.html", "/a/b/c.htm", false},
		{"/p/?", "/p/1", true},
		{"/p/?", "/p/12", false},
		{"/", "/", true},
		{"/", "/x", false},
		{"/products/*/reviews", "/products/9/reviews", true},
		{"/products/*/reviews", "/products/9/x/reviews", false},
	} {
		if got := glob(c.glob).match(c.path); got != c.want {
			t.Errorf("glob %q matches %q = %v, want %v", c.glob, c.path, got, c.want)
		}
	}
}
