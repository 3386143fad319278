package transform

import "testing"

func TestElementActions(t *testing.T) {
	r := &Rules{Elements: []ElementRule{
		{Selector: ".ad", Remove: true},
		{Selector: "#box", AppendHTML: "<i>A</i>", PrependHTML: "<i>P</i>"},
		{Selector: "img", SetAttr: map[string]string{"loading": "lazy", "alt": `say "hi"`}},
		{Selector: "input", AppendHTML: "<i>after void</i>"},
		{Selector: "p.only", Remove: true, Paths: []string{"/only/**"}},
	}}
	p, err := Compile(r, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, in, want string }{
		{"/", `<div class=ad>x<div>y</div>z</div><b>kept</b>`, `<b>kept</b>`},
		{"/", `<ul><li class=ad>a<li>b</ul>`, `<ul><li>b</ul>`},
		{"/", `<ul><li class=ad>a<ul><li>inner</ul><li>b</ul>`, `<ul><li>b</ul>`},
		{"/", `<p class=ad>a<div>b</div>`, `<div>b</div>`},
		{"/", `<div><span class=ad>a</div>after`, `<div></div>after`},
		{"/", `<div class=ad><span>a</div></span>after`, `</span>after`}, // a stray end tag passes through
		{"/", `<img class=ad src=x><img src=y>`, `<img alt="say &#34;hi&#34;" loading="lazy" src=y>`},
		{"/", `<img src=y alt='old' loading=eager />`, `<img src=y alt="say &#34;hi&#34;" loading="lazy" />`},
		{"/", `<div id=box>in</div>`, `<div id=box><i>P</i>in<i>A</i></div>`},
		{"/", `<div id=box>in<div>deep</div></DIV>x`, `<div id=box><i>P</i>in<div>deep</div><i>A</i></DIV>x`},
		{"/", `<section><div id=box>in</section>`, `<section><div id=box><i>P</i>in<i>A</i></section>`},
		{"/", `<div id=box>unclosed`, `<div id=box><i>P</i>unclosed<i>A</i>`},
		{"/", `<input name=q>`, `<input name=q><i>after void</i>`},
		{"/", `<p class=only>x</p>`, `<p class=only>x</p>`},
		{"/only/a", `<p class=only>x</p>y`, `y`},
		{"/", `<div class=ad>x</div><script>"</div>"</script>`, `<script>"</div>"</script>`},
	} {
		got := string(rewrite(t, p, Request{Path: c.path}, []byte(c.in)))
		if got != c.want {
			t.Errorf("%s %s:\n got %s\nwant %s", c.path, c.in, got, c.want)
		}
	}
}

func TestInjectionPoints(t *testing.T) {
	r := &Rules{Inject: []Injection{{At: HeadEnd, HTML: "[H]"}, {At: BodyStart, HTML: "[S]"}, {At: BodyEnd, HTML: "[E]"}}}
	p, err := Compile(r, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ in, want string }{
		{`<html><head><title>t</title></head><body class=x>b</body></html>`, `<html><head><title>t</title>[H]</head><body class=x>[S]b[E]</body></html>`},
		{`<html><head><title>t</title><body>b</html>`, `<html><head><title>t</title>[H]<body>[S]b[E]</html>`},
		{`<title>t</title><p>b`, `<title>t</title>[H][S]<p>b[E]`},
		{`<!doctype html>text`, `<!doctype html>[H][S]text[E]`},
		{"\ufeff\n<html>x", "\ufeff\n<html>[H][S]x[E]"},
		{`<body>a</body><body>b</body>`, `[H]<body>[S]a[E]</body><body>b</body>`},
		{`<head><!-- </head> --><script>"</head><body>"</script></head><body></body>`, `<head><!-- </head> --><script>"</head><body>"</script>[H]</head><body>[S][E]</body>`},
		{`<template><body>x</body></template><body>y</body>`, `<template><body>x</body></template>[H]<body>[S]y[E]</body>`},
		{``, ``},
	} {
		if got := string(rewrite(t, p, Request{Path: "/"}, []byte(c.in))); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}
