package proxy

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"sync"

	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/upstream"
)

// Early Hints (103, RFC 8297) reach the client two ways: the origin's own,
// forwarded as they arrive while the handler waits for its final response
// (state.Interim, the upstream.Interim hook), and, with the tenant's
// EarlyHints setting, one built from a cached HTML page's Link headers
// right before the cache writes it (state.cachedHints). A 103 is written
// straight to the server's writer: it never sets the logged status, the
// timing headers or the cache's stored response.

// hintState says whether interim responses may still go to the client.
type hintState uint8

const (
	hintsNone   hintState = iota // never: HTTP/1.0 client (RFC 9110 §15.2), upgrade, or not decided yet
	hintsOpen                    // until the final status is written
	hintsClosed                  // the final status (or a hijack) is out
)

// hints is the responseWriter's record of interim responses. Its mutex
// orders a 103 that http.Transport delivers from its own goroutine
// against the final status (a request that timed out may still get one).
type hints struct {
	mu    sync.Mutex
	state hintState
	sent  bool // a 103 went out
}

// open lets interim responses through until close.
func (hs *hints) open() { hs.state = hintsOpen }

// close ends interim responses; called by the handler's goroutine before
// the final status is written. Costs nothing for a request that had none.
func (hs *hints) close() {
	if hs.state != hintsOpen {
		return
	}
	hs.mu.Lock()
	hs.state = hintsClosed
	hs.mu.Unlock()
}

// Interim implements upstream.Interim: an origin's 103 goes to the client
// with its end-to-end fields (hop-by-hop ones and those its Connection
// names are dropped). Other informational statuses stay here: 100
// Continue is the server's business, 102 is obsolete.
func (st *state) Interim(code int, hdr http.Header) {
	if code != http.StatusEarlyHints {
		return
	}
	w := &st.responseWriter
	w.hints.mu.Lock()
	defer w.hints.mu.Unlock()
	if w.hints.state != hintsOpen {
		return
	}
	fields := make(http.Header, len(hdr))
	for k, v := range hdr {
		if k != "Content-Length" {
			fields[k] = v
		}
	}
	removeHopHeaders(fields) // a copy: hdr is the origin client's
	if len(fields) == 0 {
		return
	}
	writeInterim(w.rw, http.StatusEarlyHints, fields)
	w.hints.sent = true
}

var _ upstream.Interim = (*state)(nil)

// cachedHints sends a 103 with the preload and preconnect Link values of
// a cached HTML page (hd, about to be written) when the tenant asked for
// Early Hints and nothing sent one yet.
func (st *state) cachedHints(hd http.Header, res cache.Result) {
	w := &st.responseWriter
	if w.hints.state != hintsOpen || res.StatusCode != http.StatusOK ||
		(res.Outcome != cache.OutcomeHit && res.Outcome != cache.OutcomeStale) {
		return
	}
	links := hd["Link"]
	if len(links) == 0 || !isHTML(hd["Content-Type"]) {
		return
	}
	hints := earlyLinks(links)
	if len(hints) == 0 {
		return
	}
	w.hints.mu.Lock()
	defer w.hints.mu.Unlock()
	if w.hints.state != hintsOpen || w.hints.sent {
		return
	}
	writeInterim(w.rw, http.StatusEarlyHints, http.Header{"Link": hints})
	w.hints.sent = true
}

// writeInterim writes an informational response with exactly fields.
// net/http and proxy/h1 send the whole header map with a 1xx, so a map
// that already holds the final response's fields (a cache hit's) is set
// aside and put back.
func writeInterim(rw http.ResponseWriter, code int, fields http.Header) {
	hd := rw.Header()
	var saved http.Header
	if len(hd) > 0 {
		saved = maps.Clone(hd)
		clear(hd)
	}
	maps.Copy(hd, fields)
	rw.WriteHeader(code)
	clear(hd)
	maps.Copy(hd, saved)
}

func isHTML(ct []string) bool {
	return len(ct) > 0 && len(ct[0]) >= 9 && strings.EqualFold(ct[0][:9], "text/html")
}

// earlyLinks returns the link-values of Link fields whose rel names
// preload or preconnect: what a browser can act on before the page
// arrives (RFC 8297 §2; prefetch or canonical links are not hints).
func earlyLinks(fields []string) []string {
	var out []string
	for _, f := range fields {
		for len(f) > 0 {
			v, rest := nextLinkValue(f)
			f = rest
			if v = strings.TrimSpace(v); v != "" && earlyRel(v) {
				out = append(out, v)
			}
		}
	}
	return out
}

// nextLinkValue splits the first link-value off a Link field: at a comma
// outside <…> and quoted strings.
func nextLinkValue(s string) (v, rest string) {
	inURI, inQuote := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQuote = false
			}
		case inURI:
			inURI = c != '>'
		case c == '<':
			inURI = true
		case c == '"':
			inQuote = true
		case c == ',':
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// earlyRel reports whether a link-value's rel parameter holds preload or
// preconnect (rel is a space-separated list, quoted or not).
func earlyRel(v string) bool {
	end := strings.IndexByte(v, '>')
	if !strings.HasPrefix(v, "<") || end < 0 {
		return false
	}
	for p := range strings.SplitSeq(v[end+1:], ";") {
		name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "rel") {
			continue
		}
		for rel := range strings.FieldsSeq(strings.Trim(strings.TrimSpace(val), `"`)) {
			if strings.EqualFold(rel, "preload") || strings.EqualFold(rel, "preconnect") {
				return true
			}
		}
		return false // the first rel counts (RFC 8288 §3.3)
	}
	return false
}

// stateKey finds the request's state in the contexts the cache derives
// this client's fetches from (cache.Request.Context), so that the fetch
// chain can forward the origin's 103s to it.
type stateKey struct{}

// fetchContext is the client's context with its state attached: it lives
// in the state, so attaching costs no allocation. It is only ever handed
// to the cache (which derives from it or passes it to the Fetcher), never
// to an origin request as is, whose client looks for the concrete context
// types it can register with cheaply.
type fetchContext struct {
	context.Context
	st *state
}

func (c *fetchContext) Value(k any) any {
	if k == (stateKey{}) {
		return c.st
	}
	return c.Context.Value(k)
}
