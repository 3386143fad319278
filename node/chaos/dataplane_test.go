package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgeproxy/edge/api/edgev1"
)

// The data plane under control-plane faults: while the faults run, every
// node is sent a steady stream of proxied GETs for one tenant, a cached
// path and a no-store one, and every answer that is not the origin's body
// with a 200 is an error Edge caused, unless the node was down or paused
// the test itself at the time (see dataplane.excluded).
const (
	dpDomain   = "dp.chaos.test"
	dpInterval = 50 * time.Millisecond // per node and path: 20 GETs/s
	dpTimeout  = 3 * time.Second
)

// dpRequest is one proxied GET as the test saw it.
type dpRequest struct {
	node       int
	start, end int64 // ns since the workload began
	path       string
	err        string // "" when the answer was the origin's body with a 200
}

// dataplane runs the origin and the request loops, and keeps, per node,
// the intervals during which the test had it killed or paused.
type dataplane struct {
	w       *workload
	origin  *http.Server
	url     string // the origin as the nodes reach it
	clients []*http.Client

	mu       sync.Mutex
	requests []dpRequest
	down     [][][2]int64 // per node: [from, to) intervals, to = -1 while open
	stop     chan struct{}
	wg       sync.WaitGroup
}

// newDataplane starts the origin. It answers /cached/* with a year's
// max-age and /pass/* with no-store, the body naming the path and query,
// so a body served for another request is caught.
func newDataplane(w *workload) (*dataplane, error) {
	ln, url, err := w.c.net.listenOrigin()
	if err != nil {
		return nil, fmt.Errorf("origin listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/cached/", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Cache-Control", "public, max-age=31536000")
		io.WriteString(rw, dpBody(r.URL.RequestURI()))
	})
	mux.HandleFunc("/pass/", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Cache-Control", "no-store")
		io.WriteString(rw, dpBody(r.URL.RequestURI()))
	})
	d := &dataplane{w: w, origin: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, url: url,
		down: make([][][2]int64, len(w.c.nodes)), stop: make(chan struct{})}
	go d.origin.Serve(ln)
	w.c.t.Cleanup(func() { d.origin.Close() })
	for range w.c.nodes {
		d.clients = append(d.clients, &http.Client{
			Timeout: dpTimeout,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
					return w.c.net.dial(ctx, addr)
				},
				MaxIdleConnsPerHost: 4,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		})
	}
	return d, nil
}

func dpBody(uri string) string { return "origin body for " + uri + "\n" }

// setup adds the tenant and waits until every node serves both paths.
func (d *dataplane) setup() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, _, err := d.w.call(0, newID(), func(ctx context.Context, cc *grpc.ClientConn) error {
			_, err := edgev1.NewTenantServiceClient(cc).Add(ctx, &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: dpDomain, Origin: &edgev1.Origin{Url: d.url}}})
			if status.Code(err) == codes.AlreadyExists {
				return nil
			}
			return err
		})
		if o == ok {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("add %s: %v", dpDomain, err)
		}
	}
	for i := range d.w.c.nodes {
		for _, p := range []string{"/cached/warm", "/pass/warm"} {
			for {
				err := d.get(i, p)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("edge-%d GET %s: %v", i, p, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	return nil
}

// get sends one proxied GET to node i and checks the answer.
func (d *dataplane) get(i int, path string) error {
	req, err := http.NewRequest("GET", "http://"+d.w.c.net.node(i).clientHTTP+path, nil)
	if err != nil {
		return err
	}
	req.Host = dpDomain
	resp, err := d.clients[i].Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("status %d, reading body: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, firstWords(string(b), 12))
	}
	if string(b) != dpBody(path) {
		return fmt.Errorf("wrong body %q", firstWords(string(b), 12))
	}
	return nil
}

// run starts two loops per node, one per path, each sending a GET every
// dpInterval (one at a time, so the rate is bounded).
func (d *dataplane) run() {
	for i := range d.w.c.nodes {
		for _, kind := range []string{"cached", "pass"} {
			d.wg.Add(1)
			go d.loop(i, kind)
		}
	}
}

func (d *dataplane) loop(i int, kind string) {
	defer d.wg.Done()
	t := time.NewTicker(dpInterval)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		path := "/cached/" + string(rune('a'+n%8)) // 8 objects, all hits after the first round
		if kind == "pass" {
			path = fmt.Sprintf("/pass/x?n=%d&r=%d", n, rand.Uint32())
		}
		r := dpRequest{node: i, path: path, start: d.w.now()}
		if err := d.get(i, path); err != nil {
			r.err = err.Error()
		}
		r.end = d.w.now()
		d.mu.Lock()
		d.requests = append(d.requests, r)
		d.mu.Unlock()
	}
}

func (d *dataplane) stopLoops() {
	close(d.stop)
	d.wg.Wait()
}

// markDown records that the test is about to kill or pause node i.
func (d *dataplane) markDown(i int) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.down[i]; len(l) > 0 && l[len(l)-1][1] < 0 {
		return // already down (kill -9 all after a pause, say)
	}
	d.down[i] = append(d.down[i], [2]int64{d.w.now(), -1})
}

// markUp records that node i is back: resumed, or restarted and ready.
func (d *dataplane) markUp(i int) {
	if d == nil {
		return
	}
	d.clients[i].CloseIdleConnections() // connections to the dead process
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.down[i]; len(l) > 0 && l[len(l)-1][1] < 0 {
		l[len(l)-1][1] = d.w.now()
	}
}

// waitRestarted waits, after a heal, for every node still marked down
// (restarted after a kill; a paused one was marked up at SIGCONT).
func (d *dataplane) waitRestarted(timeout time.Duration) {
	d.mu.Lock()
	var open []int
	for i, l := range d.down {
		if len(l) > 0 && l[len(l)-1][1] < 0 {
			open = append(open, i)
		}
	}
	d.mu.Unlock()
	for _, i := range open {
		d.waitReady(i, timeout)
	}
}

// waitReady polls a restarted node's /readyz, as a load balancer would,
// and marks it up once it answers 200.
func (d *dataplane) waitReady(i int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := d.clients[i].Get("http://" + d.w.c.net.node(i).clientMetrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				d.markUp(i)
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.w.c.t.Errorf("edge-%d: /readyz not 200 %v after its restart", i, timeout)
	d.markUp(i)
}

// excluded reports whether r overlapped a time when the test had its node
// killed (until /readyz said ready again after the restart) or paused
// (until SIGCONT). Partitions exclude nothing: they cut the links between
// nodes, never a client's link to a node, and a node cut off from the
// others must go on serving from its last View.
func (d *dataplane) excluded(r dpRequest) bool {
	for _, iv := range d.down[r.node] {
		to := iv[1]
		if to < 0 {
			to = 1 << 62
		}
		if r.start < to && r.end >= iv[0] {
			return true
		}
	}
	return false
}

// dpCounts is one row of the data-plane table.
type dpCounts struct{ sent, excluded, errors int }

// tally attributes each request to the fault of the cycle it was sent in
// ("before the first fault" before it) and counts Edge's errors.
func (d *dataplane) tally(records []cycleRecord) (map[string]*dpCounts, []string, []dpRequest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	const before = "before the first fault"
	counts := map[string]*dpCounts{before: {}}
	order := []string{before}
	for _, r := range records {
		if counts[r.fault] == nil {
			counts[r.fault] = &dpCounts{}
			order = append(order, r.fault)
		}
	}
	var bad []dpRequest
	for _, r := range d.requests {
		f := before
		for _, rec := range records {
			if rec.at <= r.start {
				f = rec.fault
			}
		}
		c := counts[f]
		c.sent++
		switch {
		case d.excluded(r):
			c.excluded++
		case r.err != "":
			c.errors++
			bad = append(bad, r)
		}
	}
	return counts, order, bad
}

func (d *dataplane) summary(records []cycleRecord) (string, []dpRequest) {
	counts, order, bad := d.tally(records)
	var b strings.Builder
	fmt.Fprintf(&b, "| proxied GETs sent in cycles of | sent | excluded (node killed/paused by the test) | Edge errors |\n|---|---|---|---|\n")
	for _, f := range order {
		c := counts[f]
		fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", f, c.sent, c.excluded, c.errors)
	}
	return b.String(), bad
}

// listenOrigin, for the network interface: the origin's listener and its
// URL as every node reaches it.
func (l *loopback) listenOrigin() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	return ln, "http://" + ln.Addr().String(), nil
}

// The origin lives in the hub namespace on originIP, an address of the
// hub's loopback that every node routes to over its client link: a
// partition (which moves bridge ports) never cuts a node from its origin.
const originIP = "10.97.0.1"

func (nn *netnsNet) listenOrigin() (net.Listener, string, error) {
	var ln net.Listener
	err := inNetns(nn.hub(), func() (err error) {
		ln, err = net.Listen("tcp", originIP+":8000")
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return ln, "http://" + originIP + ":8000", nil
}
