package proxy

import (
	"compress/gzip"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgeproxy/edge/proxy/transform"
)

const shopPage = `<!doctype html><html><head><title>Welcome</title></head>
<body><h1>Welcome</h1><p>Hello world</p><a href="http://origin.shop.example/cart">cart</a>
<script>var s = "Welcome";</script></body></html>`

func rulesJSON(t *testing.T, yaml string) string {
	t.Helper()
	r, err := transform.ParseRules([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const issueRules = `
inject:
  - at: body-end
    html: '<div id="edge-toolbar"></div>'
rewrite_links: true
languages:
  - code: fr
    path_prefix: /fr/
    dictionary:
      Welcome: Bienvenue
      Hello world: Bonjour le monde
`

func TestTransformThroughProxyWithCache(t *testing.T) {
	var lastPath atomic.Value
	gz := atomic.Bool{}
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		lastPath.Store(r.URL.Path)
		w.Header().Set("Cache-Control", "public, max-age=300")
		switch r.URL.Path {
		case "/logo.png":
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte("\x89PNG Welcome"))
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if gz.Load() {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			zw.Write([]byte(shopPage))
			zw.Close()
			return
		}
		w.Write([]byte(shopPage))
	})
	ten := tenant("shop.example", o.url)
	ten.Origin.HostHeader = "origin.shop.example"
	ten.Transform = rulesJSON(t, issueRules)
	tr := NewTransformer(nil, nil)
	p := startCachedProxy(t, routesOf(ten), Config{Stages: []Stage{tr.Stage()}, Variant: tr.Variant})

	// Original language: toolbar injected, links rewritten, text untouched.
	resp, body := p.get(t, "GET", "shop.example", "/", "identity")
	if resp.StatusCode != 200 || !strings.Contains(body, `<div id="edge-toolbar"></div></body>`) {
		t.Fatalf("original page: %d %q", resp.StatusCode, body)
	}
	if !strings.Contains(body, `href="http://shop.example/cart"`) || !strings.Contains(body, "<h1>Welcome</h1>") {
		t.Fatalf("links or text wrong: %q", body)
	}

	// French: fetched from the origin as /, translated, script untouched.
	resp, body = p.get(t, "GET", "shop.example", "/fr/", "identity")
	if got := lastPath.Load(); got != "/" {
		t.Fatalf("origin saw %v for /fr/, want /", got)
	}
	for _, want := range []string{"<h1>Bienvenue</h1>", "<p>Bonjour le monde</p>", `var s = "Welcome";`, `lang="fr"`, `href="http://shop.example/fr/cart"`} {
		if !strings.Contains(body, want) {
			t.Errorf("french page lacks %q:\n%s", want, body)
		}
	}
	if resp.Header.Get("Content-Language") != "fr" {
		t.Errorf("Content-Language = %q", resp.Header.Get("Content-Language"))
	}
	// Each variant is cached on its own.
	before := o.hits.Load()
	resp, body2 := p.get(t, "GET", "shop.example", "/fr/", "identity")
	wantCacheStatus(t, resp, 200, "edge; hit")
	if body2 != body || o.hits.Load() != before {
		t.Fatal("french hit differs or reached the origin")
	}
	_, orig := p.get(t, "GET", "shop.example", "/", "identity")
	if strings.Contains(orig, "Bienvenue") {
		t.Fatal("original-language variant served the French page")
	}

	// A rules change makes a new variant: never the stale one.
	ten2 := *ten
	ten2.Transform = rulesJSON(t, strings.Replace(issueRules, "Bienvenue", "Salut", 1))
	tr2 := NewTransformer(nil, nil)
	if tr2.Variant(&Exchange{Tenant: &ten2, Host: "shop.example", Request: mustReq(t, "/fr/")}) == tr.Variant(&Exchange{Tenant: ten, Host: "shop.example", Request: mustReq(t, "/fr/")}) {
		t.Fatal("changing the rules kept the cache variant")
	}

	// Non-HTML passes through byte for byte.
	_, img := p.get(t, "GET", "shop.example", "/logo.png", "identity")
	if img != "\x89PNG Welcome" {
		t.Fatalf("image changed: %q", img)
	}

	// A gzip-encoded origin is decoded before rewriting.
	gz.Store(true)
	_, body = p.get(t, "GET", "shop.example", "/other.html", "identity")
	if !strings.Contains(body, "edge-toolbar") || !strings.Contains(body, "Welcome") {
		t.Fatalf("gzip origin page not transformed: %q", body)
	}
}

func mustReq(t *testing.T, path string) *http.Request {
	r, err := http.NewRequest("GET", "http://shop.example"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
