package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// object is one fixed response of the origin.
type object struct {
	path         string
	contentType  string
	cacheControl string
	body         []byte
	length       string
	etag         string
}

// origin serves the fixed objects and counts the requests that reach it:
// all of them per path, and per path those that carry X-Forwarded-For, so
// that scripts/bench can tell a proxy that forwards the client's address
// (edged, its nginx doing the same work) from one that does not
// (nginx-min), and per path those that came over TLS, so that it can tell
// a proxy that used the https listener from one that fell back to http.
type origin struct {
	objects   map[string]*object
	total     atomic.Int64
	counts    map[string]*atomic.Int64
	forwarded map[string]*atomic.Int64
	overTLS   map[string]*atomic.Int64
	lastMod   string
}

func newOrigin() *origin {
	o := &origin{
		objects:   make(map[string]*object),
		counts:    make(map[string]*atomic.Int64),
		forwarded: make(map[string]*atomic.Int64),
		overTLS:   make(map[string]*atomic.Int64),
		lastMod:   time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat),
	}
	small := textBody(1024)
	for _, ob := range []*object{
		{path: "/small", contentType: "text/plain; charset=utf-8", cacheControl: "public, max-age=3600", body: small},
		{path: "/nostore", contentType: "text/plain; charset=utf-8", cacheControl: "no-store", body: small},
		{path: "/page.html", contentType: "text/html; charset=utf-8", cacheControl: "public, max-age=3600", body: htmlPage(40 * 1024)},
	} {
		ob.length = strconv.Itoa(len(ob.body))
		ob.etag = fmt.Sprintf(`"%x-%s"`, len(ob.body), ob.path[1:])
		o.objects[ob.path] = ob
		o.counts[ob.path] = new(atomic.Int64)
		o.forwarded[ob.path] = new(atomic.Int64)
		o.overTLS[ob.path] = new(atomic.Int64)
	}
	return o
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		o.writeStats(w)
		return
	}
	o.total.Add(1)
	ob := o.objects[r.URL.Path]
	if ob == nil {
		http.NotFound(w, r)
		return
	}
	o.counts[ob.path].Add(1)
	// The origin is timed too (and shares the cores with the proxies):
	// one map lookup on the already canonical header, an atomic add only
	// when the header is there.
	if _, ok := r.Header["X-Forwarded-For"]; ok {
		o.forwarded[ob.path].Add(1)
	}
	if r.TLS != nil {
		o.overTLS[ob.path].Add(1)
	}
	h := w.Header()
	h["Content-Type"] = []string{ob.contentType}
	h["Content-Length"] = []string{ob.length}
	h["Cache-Control"] = []string{ob.cacheControl}
	h["Etag"] = []string{ob.etag}
	h["Last-Modified"] = []string{o.lastMod}
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(ob.body)
}

// stats is the JSON body of /stats. Forwarded counts, per path, the
// requests that arrived with an X-Forwarded-For header, TLS those that
// arrived on the https listener.
type stats struct {
	Total     int64            `json:"total"`
	Paths     map[string]int64 `json:"paths"`
	Forwarded map[string]int64 `json:"forwarded"`
	TLS       map[string]int64 `json:"tls"`
}

func (o *origin) writeStats(w http.ResponseWriter) {
	s := stats{
		Total:     o.total.Load(),
		Paths:     make(map[string]int64, len(o.counts)),
		Forwarded: make(map[string]int64, len(o.forwarded)),
		TLS:       make(map[string]int64, len(o.overTLS)),
	}
	for p, c := range o.counts {
		s.Paths[p] = c.Load()
	}
	for p, c := range o.forwarded {
		s.Forwarded[p] = c.Load()
	}
	for p, c := range o.overTLS {
		s.TLS[p] = c.Load()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s)
}

// serveConfig is what `benchorigin serve` is told.
type serveConfig struct {
	Addr    string // plain HTTP listen address
	TLSAddr string // optional: also serve the same origin over https here
	TLSCA   string // with TLSAddr: file to write the PEM that verifies it
}

// serve runs the origin on c.Addr, and with c.TLSAddr also over https
// (see listenTLS), until ctx ends. Both listeners share one origin, so
// /stats on either counts the requests of both.
func serve(ctx context.Context, c serveConfig, stdout io.Writer) error {
	if c.TLSAddr != "" && c.TLSCA == "" {
		return errors.New("serve: -tls-addr needs -tls-ca, the file to write its CA to")
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.Addr, err)
	}
	o := newOrigin()
	newServer := func() *http.Server {
		return &http.Server{Handler: o, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	}
	srvs := []*http.Server{newServer()}
	lns := []net.Listener{ln}
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	if c.TLSAddr != "" {
		tln, err := listenTLS(c.TLSAddr, c.TLSCA)
		if err != nil {
			ln.Close()
			return fmt.Errorf("tls: %w", err)
		}
		srvs = append(srvs, newServer())
		lns = append(lns, tln)
		fmt.Fprintf(stdout, "listening https %s (%s, CA in %s)\n", tln.Addr(), originTLSName, c.TLSCA)
	}
	errc := make(chan error, len(srvs))
	for i, srv := range srvs {
		go func() { errc <- srv.Serve(lns[i]) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range srvs {
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown: %w", err)
		}
	}
	return nil
}

// words feed the generated bodies; a fixed linear congruential sequence
// picks them, so every run serves the same bytes.
var words = strings.Fields(`the edge proxy serves cached pages from memory close to readers while
origin servers stay quiet and every tenant keeps its own domains certificates and rules
latency matters more than throughput for a page that a person waits for so we measure both
request response header body cache hit miss stale revalidate purge node cluster raft leader
shop product price basket checkout delivery account order review search category offer`)

type lcg uint32

func (l *lcg) next(n int) int {
	*l = *l*1664525 + 1013904223
	return int(uint32(*l)>>8) % n
}

func textBody(n int) []byte {
	var b strings.Builder
	r := lcg(1)
	for b.Len() < n {
		b.WriteString(words[r.next(len(words))])
		b.WriteByte(' ')
	}
	return []byte(b.String()[:n])
}

// htmlPage builds a product-listing page of about n bytes: a head with
// inline CSS, navigation, article cards with attributes and links, a footer.
func htmlPage(n int) []byte {
	var b strings.Builder
	r := lcg(7)
	sentence := func(k int) string {
		ws := make([]string, k)
		for i := range ws {
			ws[i] = words[r.next(len(words))]
		}
		return strings.Join(ws, " ")
	}
	b.WriteString(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bench Shop — products</title>
<link rel="stylesheet" href="/assets/site.css">
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header,footer{background:#123;color:#fff;padding:1rem 2rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:1rem;padding:2rem}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1rem}
.card h2{font-size:1.1rem;margin:.2rem 0}.price{font-weight:700;color:#a30}
</style>
</head>
<body>
<header><nav><a href="/">Home</a> <a href="/products">Products</a> <a href="/offers">Offers</a> <a href="/account">Account</a> <a href="/basket">Basket</a></nav></header>
<main class="grid">
`)
	for i := 0; b.Len() < n-600; i++ {
		fmt.Fprintf(&b, `<article class="card" id="p%d" data-sku="SKU-%05d" data-category="%s">
<a href="/products/%d"><img src="/img/p%d.jpg" alt="%s" width="200" height="150" loading="lazy"></a>
<h2><a href="/products/%d">%s</a></h2>
<p>%s.</p>
<p class="price">%d.%02d EUR</p>
<button type="button" class="add" data-id="%d">Add to basket</button>
</article>
`, i, r.next(100000), words[r.next(len(words))], i, i, sentence(3), i, sentence(4), sentence(18+r.next(12)), 5+r.next(300), r.next(100), i)
	}
	b.WriteString(`</main>
<footer><p>Bench Shop · a fixed page served by scripts/benchorigin for the whole-system benchmark.</p>
<p><a href="/terms">Terms</a> · <a href="/privacy">Privacy</a> · <a href="/contact">Contact</a></p></footer>
<script src="/assets/site.js" defer></script>
</body>
</html>
`)
	return []byte(b.String())
}
