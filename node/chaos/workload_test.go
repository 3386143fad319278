package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/edgeproxy/edge/api/edgev1"
)

const (
	opTimeout       = 3 * time.Second // an operation that takes longer has an unknown outcome
	thinkTime       = 10 * time.Millisecond
	maxOpsPerClient = 200000
	originURL       = "http://127.0.0.1:9"
)

// workload runs concurrent clients against the cluster through the admin
// gRPC API and records every operation.
type workload struct {
	c      *cluster
	start  time.Time
	keys   []string
	init   map[string]int64
	prefix string // for added domains

	mu      sync.Mutex
	history []op

	nextValue atomic.Int64
	nextAdd   atomic.Int64
	stop      chan struct{}
	wg        sync.WaitGroup
}

func newWorkload(c *cluster, seed uint64, keys int) *workload {
	w := &workload{c: c, start: time.Now(), init: map[string]int64{}, stop: make(chan struct{}), prefix: fmt.Sprintf("s%d", seed%100000)}
	for k := 0; k < keys; k++ {
		w.keys = append(w.keys, fmt.Sprintf("k%d.chaos.test", k))
	}
	return w
}

func (w *workload) now() int64 { return time.Since(w.start).Nanoseconds() }

// setup creates the register tenants and reads their initial value.
func (w *workload) setup() error {
	deadline := time.Now().Add(30 * time.Second)
	for _, k := range w.keys {
		for {
			o, _, err := w.call(rand.IntN(len(w.c.nodes)), newID(), func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := edgev1.NewTenantServiceClient(cc).Add(ctx, &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: k, Origin: &edgev1.Origin{Url: originURL}}})
				if status.Code(err) == codes.AlreadyExists {
					return nil // an earlier attempt whose answer was lost
				}
				return err
			})
			if o == ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("create %s: %v", k, err)
			}
		}
		for {
			var v int64
			o, _, err := w.call(0, "", func(ctx context.Context, cc *grpc.ClientConn) error {
				r, err := edgev1.NewTenantServiceClient(cc).Get(ctx, &edgev1.GetTenantRequest{Domain: k, Consistency: edgev1.Consistency_CONSISTENCY_LEADER})
				v = r.GetTenant().GetCache().GetDefaultTtlSeconds()
				return err
			})
			if o == ok {
				w.init[k] = v
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("read %s: %v", k, err)
			}
		}
	}
	return nil
}

func newID() string {
	return fmt.Sprintf("chaos-%016x%016x", rand.Uint64(), rand.Uint64())
}

// call runs fn against node first and moves on to the next node the way
// edgectl does (cli/client.go, attempts): when the node is unavailable
// (down, or without a leader) or does not answer within the attempt's own
// deadline, the smaller of 2 s and a third of opTimeout, doubling each
// round through the list; a node that names the leader in its error
// (edgev1.LeaderHint) sends the call there next; rounds are 50–150 ms,
// then 100–300 ms apart. The request ID stays the same across attempts,
// so a write retried after an unknown outcome is applied at most once.
//
// Until 2026-06 the suite's clients gave every call the whole opTimeout
// and moved on only when the request could not be sent: a client that
// picked a paused node waited 3 s, which edgectl no longer does.
func (w *workload) call(first int, reqID string, fn func(context.Context, *grpc.ClientConn) error) (outcome, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	n := len(w.c.nodes)
	attempt := min(2*time.Second, opTimeout/3)
	var err error
	sent := false // some attempt may have reached a node: the outcome is unknown, not failed
	node := first
	hinted := map[int]bool{}
	for round := 0; ; round++ {
		var order []int
		for a := 0; a < n; a++ {
			order = append(order, (first+a)%n)
		}
		for a := 0; a < len(order); a++ {
			node = order[a]
			actx, acancel := opContext(ctx, attempt<<round, reqID)
			err = fn(actx, w.c.conns[node])
			attemptOver := actx.Err() != nil
			acancel()
			if err == nil {
				return ok, node, nil
			}
			s := status.Convert(err)
			switch s.Code() {
			case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
				codes.Unauthenticated, codes.PermissionDenied:
				return failed, node, err // the server refused it
			}
			if !(s.Code() == codes.Unavailable && notSent(s.Message())) {
				sent = true
			}
			if ctx.Err() != nil {
				break
			}
			if !attemptOver && s.Code() != codes.Unavailable && s.Code() != codes.DeadlineExceeded {
				return unknown, node, err
			}
			if h := w.hintedNode(err); h >= 0 && h != node && !hinted[h] {
				hinted[h] = true
				order = slices.Insert(order, a+1, h)
			}
		}
		if ctx.Err() != nil {
			break
		}
		d := 100 * time.Millisecond << min(round, 1)
		select {
		case <-ctx.Done():
		case <-time.After(d/2 + rand.N(d)):
		}
		if ctx.Err() != nil {
			break
		}
	}
	if sent {
		return unknown, node, err
	}
	return failed, node, err
}

// hintedNode is the node whose admin address err names as the leader,
// or -1.
func (w *workload) hintedNode(err error) int {
	_, addr := edgev1.LeaderHint(err)
	if addr == "" {
		return -1
	}
	for i := range w.c.nodes {
		if w.c.net.node(i).admin == addr {
			return i
		}
	}
	return -1
}

// notSent reports whether a gRPC Unavailable error means the request never
// left this process (no connection to the node).
func notSent(msg string) bool {
	return strings.Contains(msg, "Error while dialing") || strings.Contains(msg, "connection refused") ||
		strings.Contains(msg, "produced zero addresses")
}

func (w *workload) record(o op) {
	w.mu.Lock()
	w.history = append(w.history, o)
	w.mu.Unlock()
}

func (w *workload) snapshot() []op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]op(nil), w.history...)
}

// run starts n clients; stopClients ends them.
func (w *workload) run(clients int, seed uint64) {
	for cl := 0; cl < clients; cl++ {
		w.wg.Add(1)
		go w.client(cl, rand.New(rand.NewPCG(seed, uint64(cl))))
	}
}

func (w *workload) stopClients() {
	close(w.stop)
	w.wg.Wait()
}

func (w *workload) client(id int, rng *rand.Rand) {
	defer w.wg.Done()
	for i := 0; i < maxOpsPerClient; i++ {
		select {
		case <-w.stop:
			return
		case <-time.After(thinkTime):
		}
		node := rng.IntN(len(w.c.nodes))
		key := w.keys[rng.IntN(len(w.keys))]
		switch p := rng.IntN(100); {
		case p < 40:
			w.write(id, node, key)
		case p < 85:
			w.read(id, node, key)
		default:
			w.add(id, node)
		}
	}
}

func (w *workload) write(client, node int, key string) {
	v := w.nextValue.Add(1)
	o := op{client: client, kind: opWrite, key: key, value: v, call: w.now()}
	var err error
	o.outcome, o.node, err = w.call(node, newID(), func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := edgev1.NewTenantServiceClient(cc).Update(ctx, &edgev1.UpdateTenantRequest{Domain: key, Patch: &edgev1.TenantPatch{CacheDefaultTtlSeconds: proto.Int64(v)}})
		return err
	})
	o.ret = w.now()
	if err != nil {
		o.err = err.Error()
	}
	w.record(o)
}

func (w *workload) read(client, node int, key string) {
	o := op{client: client, kind: opRead, key: key, call: w.now()}
	var err error
	o.outcome, o.node, err = w.call(node, "", func(ctx context.Context, cc *grpc.ClientConn) error {
		r, err := edgev1.NewTenantServiceClient(cc).Get(ctx, &edgev1.GetTenantRequest{Domain: key, Consistency: edgev1.Consistency_CONSISTENCY_LEADER})
		o.value = r.GetTenant().GetCache().GetDefaultTtlSeconds()
		return err
	})
	o.ret = w.now()
	if err != nil {
		o.err = err.Error()
	}
	w.record(o)
}

func (w *workload) add(client, node int) {
	d := fmt.Sprintf("a%d-%s.chaos.test", w.nextAdd.Add(1), w.prefix)
	o := op{client: client, kind: opAdd, key: d, call: w.now()}
	var err error
	o.outcome, o.node, err = w.call(node, newID(), func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := edgev1.NewTenantServiceClient(cc).Add(ctx, &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: d, Origin: &edgev1.Origin{Url: originURL}}})
		return err
	})
	o.ret = w.now()
	if err != nil {
		o.err = err.Error()
	}
	w.record(o)
}

// missingAdds returns the acknowledged adds node i's own view (a local
// read) does not hold.
func (w *workload) missingAdds(i int, history []op) ([]string, error) {
	ctx, cancel := opContext(context.Background(), 5*time.Second, "")
	defer cancel()
	r, err := edgev1.NewTenantServiceClient(w.c.conns[i]).List(ctx, &edgev1.ListTenantsRequest{Consistency: edgev1.Consistency_CONSISTENCY_LOCAL})
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, t := range r.GetTenants() {
		have[t.GetDomain()] = true
	}
	var missing []string
	for _, o := range history {
		if o.kind == opAdd && o.outcome == ok && !have[o.key] {
			missing = append(missing, o.key)
		}
	}
	return missing, nil
}

// waitAddsEverywhere polls every node until its own view holds every add
// acknowledged so far, and returns what is still missing at the deadline.
func (w *workload) waitAddsEverywhere(d time.Duration) map[string][]string {
	history := w.snapshot()
	deadline := time.Now().Add(d)
	for {
		lost := map[string][]string{}
		for i := range w.c.nodes {
			m, err := w.missingAdds(i, history)
			if err != nil {
				m = []string{"(list failed: " + err.Error() + ")"}
			}
			if len(m) > 0 {
				lost[w.c.nodes[i].id] = m
			}
		}
		if len(lost) == 0 || time.Now().After(deadline) {
			return lost
		}
		time.Sleep(100 * time.Millisecond)
	}
}
