package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeproxy/edge/proxy/transform"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// Transformer plugs the streaming HTML rewriter (proxy/transform) into the
// fetch chain. It compiles each tenant's rules once per version and keeps
// the program while the rules stay the same; a language variant changes
// the origin path (/fr/x is fetched as /x) and the cache variant, so a
// rules change never serves an old variant.
type Transformer struct {
	progs    sync.Map // domain → *compiled
	log      *slog.Logger
	failures prometheus.Counter
}

type compiled struct {
	src      string // the tenant's stored rules this program was built from
	prog     *transform.Program
	variants map[string]string // language code ("" = original) → cache variant
	err      error
}

// NewTransformer returns a Transformer; reg may be nil.
func NewTransformer(log *slog.Logger, reg prometheus.Registerer) *Transformer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transformer{log: log, failures: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "edge_transform_failures_total",
		Help: "Responses whose HTML transformation failed mid-stream and passed the rest through unmodified.",
	})}
	if reg != nil {
		reg.MustRegister(t.failures)
	}
	return t
}

// program returns the tenant's compiled rules, or nil when it has none or
// they cannot be compiled (logged once per version; pages then pass
// through untouched).
func (t *Transformer) program(ten *tenantcfg.Tenant) *transform.Program {
	if c := t.compiled(ten); c != nil {
		return c.prog
	}
	return nil
}

func (t *Transformer) compiled(ten *tenantcfg.Tenant) *compiled {
	if ten.Transform == "" {
		return nil
	}
	if v, ok := t.progs.Load(ten.Domain); ok {
		if c := v.(*compiled); c.src == ten.Transform {
			return c
		}
	}
	c := &compiled{src: ten.Transform}
	rules, err := transform.DecodeRules([]byte(ten.Transform))
	if err == nil {
		domain := ten.Domain
		c.prog, err = transform.Compile(rules, transform.Config{OnError: func(err error) {
			t.failures.Inc()
			t.log.Warn("transform failed mid-stream; rest of the page passed through", "tenant", domain, "err", err)
		}})
	}
	if err != nil {
		c.err = err
		t.log.Error("tenant transform rules do not compile; pages pass through untouched", "tenant", ten.Domain, "err", err)
	} else {
		// Cache variants are built once per rules version, not per request.
		c.variants = map[string]string{"": c.prog.Version() + "/"}
		for _, l := range rules.Languages {
			c.variants[l.Code] = c.prog.Version() + "/" + l.Code
		}
	}
	t.progs.Store(ten.Domain, c)
	return c
}

// Variant is the cache variant of a request: rules version and language.
func (t *Transformer) Variant(x *Exchange) string {
	c := t.compiled(x.Tenant)
	if c == nil || c.prog == nil {
		return ""
	}
	return c.variants[c.prog.Variant(x.Host, x.Request.URL.Path).Lang]
}

// Untransformed reports that the tenant has no transform rules: its
// requests and responses pass the Stage untouched (DirectConfig).
func (t *Transformer) Untransformed(tenant *tenantcfg.Tenant) bool {
	return t.program(tenant) == nil
}

// Stage returns the fetch stage that rewrites HTML responses.
func (t *Transformer) Stage() Stage {
	return func(next FetchFunc) FetchFunc {
		return func(x *Exchange) (*http.Response, error) {
			p := t.program(x.Tenant)
			if p == nil {
				return next(x)
			}
			publicPath := x.Request.URL.Path
			v := p.Variant(x.Host, publicPath)
			if v.Lang != "" && v.OriginPath != publicPath {
				u := *x.Request.URL
				u.Path, u.RawPath = v.OriginPath, ""
				x.Request.URL = &u
			}
			resp, err := next(x)
			if err != nil || resp.Body == nil || resp.Body == http.NoBody || x.Request.Method == http.MethodHead {
				return resp, err
			}
			if !transform.Applies(resp.Header.Get("Content-Type")) || resp.StatusCode != http.StatusOK {
				return resp, nil
			}
			dec, err := transform.Decoder(resp.Body, resp.Header.Get("Content-Encoding"))
			if err != nil {
				if errors.Is(err, transform.ErrUnsupportedEncoding) {
					return resp, nil // pass through what we cannot decode
				}
				resp.Body.Close()
				return nil, err
			}
			scheme := "http"
			if x.Request.TLS != nil {
				scheme = "https"
			}
			req := transform.Request{Scheme: scheme, Host: x.Host, SiteHost: x.Tenant.Domain, OriginHost: originHost(x.Tenant), Path: publicPath, Variant: v}
			tr := &transformReader{src: dec, orig: resp.Body}
			tr.w = p.NewWriter(&tr.out, req)
			resp.Body = tr
			resp.Header.Del("Content-Encoding")
			resp.Header.Del("Content-Length")
			resp.ContentLength = -1
			if et := resp.Header.Get("Etag"); et != "" && !strings.HasPrefix(et, "W/") {
				resp.Header.Set("Etag", "W/"+et)
			}
			if v.Lang != "" {
				resp.Header.Set("Content-Language", v.Lang)
			}
			return resp, nil
		}
	}
}

func originHost(t *tenantcfg.Tenant) string {
	if t.Origin.HostHeader != "" {
		return t.Origin.HostHeader
	}
	if u, err := url.Parse(t.Origin.URL); err == nil {
		return u.Host
	}
	return ""
}

// transformReader runs the rewriter as the body is read, without a
// goroutine: each Read pulls a chunk from the origin, feeds it through the
// writer and hands out what the writer produced.
type transformReader struct {
	src  io.ReadCloser // decoded origin body
	orig io.ReadCloser // the raw origin body, closed with us
	w    *transform.Writer
	out  bytes.Buffer
	buf  [32 << 10]byte
	done bool
}

func (r *transformReader) Read(p []byte) (int, error) {
	for r.out.Len() == 0 {
		if r.done {
			return 0, io.EOF
		}
		n, err := r.src.Read(r.buf[:])
		if n > 0 {
			if _, werr := r.w.Write(r.buf[:n]); werr != nil {
				return 0, werr
			}
		}
		if errors.Is(err, io.EOF) {
			r.done = true
			if cerr := r.w.Close(); cerr != nil {
				return 0, cerr
			}
		} else if err != nil {
			return 0, err
		}
	}
	return r.out.Read(p)
}

func (r *transformReader) Close() error {
	r.src.Close()
	return r.orig.Close()
}

// PreviewResult is a page before and after transformation.
type PreviewResult struct {
	Status       int
	ContentType  string
	Original     []byte
	Transformed  []byte
	OriginPath   string
	RulesVersion string
}

// maxPreviewBytes bounds a previewed page.
const maxPreviewBytes = 8 << 20

// Preview fetches path from the tenant's origin through ups and runs rules
// over it (for `edgectl transform preview`): nothing is cached. lang picks a
// language variant ("" for the original).
func Preview(ctx context.Context, ups Upstreams, ten *tenantcfg.Tenant, rules *transform.Rules, lang, path string) (*PreviewResult, error) {
	prog, err := transform.Compile(rules, transform.Config{})
	if err != nil {
		return nil, err
	}
	host, public := ten.Domain, path
	if lang != "" {
		found := false
		for _, l := range rules.Languages {
			if l.Code != lang {
				continue
			}
			found = true
			if l.Host != "" {
				host = l.Host
			} else {
				public = strings.TrimSuffix(l.PathPrefix, "/") + path
			}
		}
		if !found {
			return nil, fmt.Errorf("lang %q: no such language in the rules", lang)
		}
	}
	v := prog.Variant(host, public)
	rt, base, err := ups.RoundTripper(ten)
	if err != nil {
		return nil, err
	}
	u := *base
	u.Path = strings.TrimSuffix(base.Path, "/") + v.OriginPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if ten.Origin.HostHeader != "" {
		req.Host = ten.Origin.HostHeader
	}
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec, err := transform.Decoder(resp.Body, resp.Header.Get("Content-Encoding"))
	if err != nil {
		return nil, err
	}
	orig, err := io.ReadAll(io.LimitReader(dec, maxPreviewBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read origin page: %w", err)
	}
	if len(orig) > maxPreviewBytes {
		return nil, fmt.Errorf("page larger than %d bytes; preview refuses it", maxPreviewBytes)
	}
	res := &PreviewResult{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Original: orig, OriginPath: v.OriginPath, RulesVersion: prog.Version()}
	if !transform.Applies(res.ContentType) {
		res.Transformed = orig
		return res, nil
	}
	scheme := "https"
	var out bytes.Buffer
	w := prog.NewWriter(&out, transform.Request{Scheme: scheme, Host: host, SiteHost: ten.Domain, OriginHost: originHost(ten), Path: public, Variant: v})
	if _, err := w.Write(orig); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	res.Transformed = out.Bytes()
	return res, nil
}
