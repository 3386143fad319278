package upstream

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// interims records the informational responses a round trip delivered.
type interims struct {
	mu  sync.Mutex
	got []string // "103 </a.css>; rel=preload"
}

func (r *interims) Interim(code int, h http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, http.StatusText(code)+" "+strings.Join(h["Link"], ","))
}

func (r *interims) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// earlyHintsOrigin answers every request with a 103 carrying a Link
// header, then a 200.
func earlyHintsOrigin(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Link", "</a.css>; rel=preload; as=style")
	w.WriteHeader(http.StatusEarlyHints)
	w.Header().Del("Link")
	io.WriteString(w, "page")
}

// TestRoundTripInterimDeliversEarlyHints: a 103 reaches the hook with
// its Link header before the final 200, on the lean client (plain http,
// and the direct round trip), on http.Transport (lean disabled) and on
// an HTTP/2 origin; the final response is the 200, never the 103.
func TestRoundTripInterimDeliversEarlyHints(t *testing.T) {
	ca := testkit.NewCA(t, "CA")
	leaf := ca.Issue(t, []string{"127.0.0.1"}).TLS
	plain := startOrigin(t, earlyHintsOrigin, nil, false)
	h2 := startOrigin(t, earlyHintsOrigin, &tls.Config{Certificates: []tls.Certificate{leaf}}, true)
	for _, tc := range []struct {
		name   string
		tg     Target
		mod    func(*Config)
		direct bool
		proto  int
	}{
		{"lean", Target{URL: plain.url}, nil, false, 1},
		{"lean direct", Target{URL: plain.url}, nil, true, 1},
		{"transport", Target{URL: plain.url}, func(c *Config) { c.DisableLeanHTTP1 = true }, false, 1},
		{"h2", Target{URL: h2.url, TLS: TLS{CAPEM: ca.PEM}}, nil, false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPools(t, tc.mod)
			rt, err := p.Get("t", tc.tg)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 2; i++ { // a fresh connection, then a reused one
				var in interims
				req, _ := http.NewRequest(http.MethodGet, tc.tg.URL.String()+"/p", nil)
				var resp *http.Response
				if tc.direct {
					buf := DirectBuf{Interim: &in}
					d, r, ok, err := rt.(DirectTripper).RoundTripDirect(req, &buf)
					if err != nil || !ok || d != nil {
						t.Fatalf("direct: d %v, ok %v, err %v (a 103 must leave the Direct path)", d, ok, err)
					}
					resp = r
				} else {
					resp, err = rt.(InterimTripper).RoundTripInterim(req, &in)
					if err != nil {
						t.Fatal(err)
					}
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "page" || resp.ProtoMajor != tc.proto {
					t.Fatalf("final: %d %q %s", resp.StatusCode, b, resp.Proto)
				}
				if got := in.list(); len(got) != 1 || got[0] != "Early Hints </a.css>; rel=preload; as=style" {
					t.Fatalf("interim responses %q", got)
				}
			}
		})
	}
}
