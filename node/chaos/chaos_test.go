package chaos

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Short mode (CYCLES unset): every fault once per cluster size,
// sized for make test on 2 cores. CYCLES=n runs n cycles in all, half on
// 3 nodes and half on 5.
const shortCyclesPerSize = 7

func TestChaos3Nodes(t *testing.T) { runChaos(t, 3) }
func TestChaos5Nodes(t *testing.T) { runChaos(t, 5) }

// fault is injected at the start of a cycle; the function it returns
// heals it.
type fault struct {
	name   string
	inject func(c *cluster, rng *rand.Rand) (target string, heal func())
}

func pick(c *cluster, rng *rand.Rand, leader bool) *proc {
	if leader {
		if l := c.leader(); l >= 0 {
			return c.nodes[l]
		}
	}
	return c.nodes[rng.IntN(len(c.nodes))]
}

func killFault(name string, leader bool) fault {
	return fault{name, func(c *cluster, rng *rand.Rand) (string, func()) {
		p := pick(c, rng, leader)
		c.kill(p)
		return p.id, func() { c.start(p) }
	}}
}

func pauseFault(name string, leader bool) fault {
	return fault{name, func(c *cluster, rng *rand.Rand) (string, func()) {
		p := pick(c, rng, leader)
		c.signal(p, syscall.SIGSTOP)
		return p.id, func() { c.signal(p, syscall.SIGCONT) }
	}}
}

var killAll = fault{"kill -9 all", func(c *cluster, _ *rand.Rand) (string, func()) {
	c.kill(c.nodes...)
	return "all", func() {
		for _, p := range c.nodes {
			c.start(p)
		}
	}
}}

// partitionFault cuts size nodes (the leader alone when leader is set)
// off from the others.
func partitionFault(name string, size int, leader bool) fault {
	return fault{name, func(c *cluster, rng *rand.Rand) (string, func()) {
		var minority []int
		if leader {
			minority = []int{pick(c, rng, true).i}
		} else {
			minority = rng.Perm(len(c.nodes))[:size]
		}
		if err := c.net.partition(minority); err != nil {
			c.t.Fatal(err)
		}
		return fmt.Sprint("nodes ", minority, " cut off"), func() {
			if err := c.net.heal(); err != nil {
				c.t.Fatal(err)
			}
		}
	}}
}

func faults(t *testing.T, n int, partitions bool) []fault {
	fs := []fault{
		killFault("kill -9 any", false), killFault("kill -9 leader", true), killAll,
		pauseFault("pause any", false), pauseFault("pause leader", true),
	}
	if partitions {
		fs = append(fs, partitionFault("partition: isolate leader", 1, true))
		if n == 3 {
			fs = append(fs, partitionFault("partition: split 1/2", 1, false))
		} else {
			fs = append(fs, partitionFault("partition: split 2/3", 2, false))
		}
	}
	return onlyFaults(t, fs, os.Getenv("CHAOS_FAULTS"))
}

// onlyFaults keeps the faults whose name contains one of the
// comma-separated words of filter (CHAOS_FAULTS=leader: the three leader
// faults), so that a long run spends its cycles where a p99 is wanted.
func onlyFaults(t *testing.T, fs []fault, filter string) []fault {
	if filter == "" {
		return fs
	}
	var out []fault
	for _, f := range fs {
		for _, w := range strings.Split(filter, ",") {
			if w = strings.TrimSpace(w); w != "" && strings.Contains(f.name, w) {
				out = append(out, f)
				break
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("CHAOS_FAULTS=%q matches no fault", filter)
	}
	return out
}

func cyclesPerSize(t *testing.T) int {
	s := os.Getenv("CYCLES")
	if s == "" {
		return shortCyclesPerSize
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 2 {
		t.Fatalf("CYCLES=%q: want a number of cycles, at least 2", s)
	}
	return n / 2
}

func seed(t *testing.T) uint64 {
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", s, err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// chooseNetwork puts the nodes in network namespaces when this process
// may make them, else on loopback without partitions. Under CI=true a
// machine that can make namespaces must run the partitions: a failure to
// set them up fails the test rather than skipping them.
func chooseNetwork(t *testing.T, n int) network {
	usable, why := netnsUsable()
	if !usable {
		if os.Getenv("CI") == "true" && strings.Contains(why, "not installed") {
			t.Fatalf("network partitions: %s (scripts/install-test-deps.sh installs iproute2)", why)
		}
		msg := fmt.Sprintf("SKIPPING network partitions: cannot create network namespaces (%s); running kill -9 and pause faults on loopback", why)
		t.Log(msg)
		t.Run("partitions", func(t *testing.T) { t.Skip(msg) }) // shows as SKIP in go test -v
		return newLoopback(t, n)
	}
	return newNetns(t, fmt.Sprintf("%d", n), n)
}

type cycleRecord struct {
	fault string
	at    int64     // when the fault was injected, ns since the workload began
	wall  time.Time // the same instant on the clock the nodes log with
	// settled is when the cluster was healthy again after the heal: an
	// election outside [wall, settled] was not caused by the test.
	settled time.Time
}

func runChaos(t *testing.T, n int) {
	if testing.Short() {
		t.Skip("fault suite: skipped with -short")
	}
	sd := seed(t) + uint64(n)
	rng := rand.New(rand.NewPCG(sd, 0x5eed))
	cycles := cyclesPerSize(t)
	t.Logf("seed %d (rerun with CHAOS_SEED=%d), %d cycles", sd, sd-uint64(n), cycles)

	nw := chooseNetwork(t, n)
	c := startCluster(t, nw, n)
	fs := faults(t, n, nw.canPartition())
	w := newWorkload(c, sd, 4)
	if err := w.setup(); err != nil {
		t.Fatal(err)
	}
	dp, err := newDataplane(w)
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.setup(); err != nil {
		t.Fatal(err)
	}
	c.dp = dp
	dp.run()
	w.run(5, sd)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			w.stopClients()
			dp.stopLoops()
		}
	}
	t.Cleanup(stop)

	var records []cycleRecord
	var lostAdds []string
	began := time.Now()
	for cycle := 0; cycle < cycles; cycle++ {
		f := fs[cycle%len(fs)]
		// Let the clients get some writes through between faults.
		time.Sleep(time.Duration(200+rng.IntN(300)) * time.Millisecond)
		leaderBefore := c.leader()
		target, heal := f.inject(c, rng)
		at, wall := w.now(), time.Now() // the fault is in effect from here
		// The fault lasts longer than an election (2 × 300ms heartbeat +
		// 300ms election at most), so a paused or cut-off leader is replaced.
		time.Sleep(time.Duration(1500+rng.IntN(1500)) * time.Millisecond)
		heal()
		c.waitHealthy(45 * time.Second)
		records = append(records, cycleRecord{fault: f.name, at: at, wall: wall, settled: time.Now()})
		dp.waitRestarted(45 * time.Second)
		t.Logf("cycle %d: %s (%s; leader before edge-%d, after edge-%d) at %v", cycle, f.name, target, leaderBefore, c.leader(), time.Duration(at).Round(time.Millisecond))
		if lost := w.waitAddsEverywhere(20 * time.Second); len(lost) > 0 {
			t.Errorf("cycle %d (%s): acknowledged adds missing after heal: %v", cycle, f.name, lost)
			for _, m := range lost {
				lostAdds = append(lostAdds, m...)
			}
		}
		if exits := c.unexpectedExits(); len(exits) > 0 {
			t.Fatalf("cycle %d (%s): node exits the test did not cause: %v", cycle, f.name, exits)
		}
	}
	elapsed := time.Since(began)
	stop()

	// One more leader read per key, after everything settled.
	for _, k := range w.keys {
		w.read(99, rand.IntN(n), k)
	}
	history := w.snapshot()

	failedCheck := checkHistory(t, w, history, sd)
	if p := c.logsWithPanic(); len(p) > 0 {
		t.Errorf("node logs mention a panic:\n%s", strings.Join(p, "\n"))
	}
	for _, o := range history {
		if o.kind == opAdd && strings.Contains(o.err, "AlreadyExists") {
			t.Errorf("add of fresh domain %s answered AlreadyExists (applied twice?): %s", o.key, o.err)
		}
	}
	logErrorSample(t, history)
	dpTable, dpBad := dp.summary(records)
	for i, r := range dpBad {
		if i == 10 {
			t.Logf("… and %d more", len(dpBad)-i)
			break
		}
		t.Logf("proxy error on edge-%d at %v: GET %s: %s", r.node, time.Duration(r.start).Round(time.Millisecond), r.path, r.err)
	}
	if len(dpBad) > 0 {
		t.Errorf("%d proxied requests failed through Edge's fault (the node was neither killed nor paused by the test)", len(dpBad))
	}
	events := c.raftEvents()
	summary := summarize(n, cycles, elapsed, nw.canPartition(), records, history, len(lostAdds), failedCheck) + "\n" +
		failoverTable(t, records, history, events) + "\n" + dpTable
	t.Log("\n" + summary)
	if path := os.Getenv("CHAOS_SUMMARY"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			_, _ = f.WriteString(summary + "\n")
			f.Close()
		}
	}
}

// checkHistory runs porcupine on every key and reports the keys whose
// history is not linearizable, keeping the history and a visualisation.
func checkHistory(t *testing.T, w *workload, history []op, sd uint64) int {
	timeout := 60 * time.Second
	if os.Getenv("CYCLES") != "" {
		timeout = 5 * time.Minute
	}
	bad := 0
	for _, k := range w.keys {
		var ops []op
		for _, o := range history {
			if o.key == k {
				ops = append(ops, o)
			}
		}
		v := checkKey(k, w.init[k], ops, timeout)
		t.Logf("key %s: %d ops checked (%d unknown writes left open, %d unobserved ones dropped): %s", k, v.ops, v.pending, v.dropped, v.result)
		switch v.result {
		case porcupine.Ok:
		case porcupine.Unknown:
			t.Logf("key %s: porcupine gave up after %v; its history is not verified", k, timeout)
		default:
			bad++
			dir, _ := os.MkdirTemp("", fmt.Sprintf("edge-chaos-seed%d-", sd))
			path := filepath.Join(dir, strings.ReplaceAll(k, ".", "_")+".txt")
			var b strings.Builder
			for _, o := range ops {
				fmt.Fprintf(&b, "client=%d node=%d kind=%d value=%d call=%d ret=%d outcome=%s err=%q\n", o.client, o.node, o.kind, o.value, o.call, o.ret, o.outcome, o.err)
			}
			_ = os.WriteFile(path, []byte(b.String()), 0o644)
			t.Errorf("key %s: history NOT linearizable (seed %d); history in %s", k, sd, path)
		}
	}
	return bad
}

func summarize(n, cycles int, elapsed time.Duration, partitions bool, records []cycleRecord, history []op, lost, nonLinearizable int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %d nodes: %d cycles in %s (partitions: %v)\n\n", n, cycles, elapsed.Round(time.Second), partitions)
	counts := map[opKind]map[outcome]int{opWrite: {}, opRead: {}, opAdd: {}}
	for _, o := range history {
		counts[o.kind][o.outcome]++
	}
	fmt.Fprintf(&b, "| operation | ok | failed | unknown |\n|---|---|---|---|\n")
	for _, k := range []opKind{opWrite, opRead, opAdd} {
		fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", [...]string{"register write", "leader read", "unique add"}[k], counts[k][ok], counts[k][failed], counts[k][unknown])
	}
	fmt.Fprintf(&b, "\nacknowledged adds lost: %d; keys not linearizable: %d\n\n", lost, nonLinearizable)

	// Unavailability: from the fault to the first acknowledged write
	// (register write or add) that was sent after it.
	var writes []op
	for _, o := range history {
		if (o.kind == opWrite || o.kind == opAdd) && o.outcome == ok {
			writes = append(writes, o)
		}
	}
	byFault := map[string][]time.Duration{}
	var order []string
	for _, r := range records {
		if _, seen := byFault[r.fault]; !seen {
			order = append(order, r.fault)
		}
		first := int64(-1)
		for _, o := range writes {
			if o.call >= r.at && (first < 0 || o.ret < first) {
				first = o.ret
			}
		}
		if first >= 0 {
			byFault[r.fault] = append(byFault[r.fault], time.Duration(first-r.at))
		} else {
			byFault[r.fault] = append(byFault[r.fault], -1)
		}
	}
	fmt.Fprintf(&b, "| fault | cycles | unavailable p50 | p99 | max |\n|---|---|---|---|---|\n")
	for _, f := range order {
		d := byFault[f]
		slices.Sort(d)
		q := func(p float64) string { // nearest rank
			v := d[max(0, int(math.Ceil(p*float64(len(d))))-1)]
			if v < 0 {
				return "never"
			}
			return v.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s |\n", f, len(d), q(0.5), q(0.99), q(1))
	}
	return b.String()
}

// logErrorSample logs how many operations ended with each kind of error,
// with one example each, so a change in how faults surface is visible.
func logErrorSample(t *testing.T, history []op) {
	type bucket struct {
		n       int
		example string
	}
	buckets := map[string]*bucket{}
	var keys []string
	for _, o := range history {
		if o.err == "" {
			continue
		}
		k := fmt.Sprintf("%s %s", o.outcome, firstWords(o.err, 6))
		if buckets[k] == nil {
			buckets[k] = &bucket{example: o.err}
			keys = append(keys, k)
		}
		buckets[k].n++
	}
	slices.Sort(keys)
	for _, k := range keys {
		t.Logf("%5d × %s   e.g. %s", buckets[k].n, k, buckets[k].example)
	}
}

func firstWords(s string, n int) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(n, len(f))], " ")
}

// firstAck returns when the first write (register write or add) sent at
// or after at was acknowledged, or -1.
func firstAck(history []op, at int64) int64 {
	first := int64(-1)
	for _, o := range history {
		if (o.kind == opWrite || o.kind == opAdd) && o.outcome == ok && o.call >= at && (first < 0 || o.ret < first) {
			first = o.ret
		}
	}
	return first
}

// raftEvent is one line of a node's log that marks a step of a failover.
type raftEvent struct {
	at   time.Time
	node string
	what string // "detect": a follower gave up on its leader; "leader": a node won an election; "stepdown": a leader lost its lease
}

// raftEvents reads the election milestones from every node's log (the
// suite runs the nodes with --raft-log-level=info).
func (c *cluster) raftEvents() []raftEvent {
	var out []raftEvent
	for _, p := range c.nodes {
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			what := ""
			switch {
			case strings.Contains(line, `"heartbeat timeout reached, starting election"`):
				what = "detect"
			case strings.Contains(line, `"entering leader state"`):
				what = "leader"
			case strings.Contains(line, `"failed to contact quorum of nodes, stepping down"`):
				what = "stepdown"
			default:
				continue
			}
			var l struct {
				Time time.Time `json:"time"`
			}
			if json.Unmarshal([]byte(line), &l) == nil {
				out = append(out, raftEvent{at: l.Time, node: p.id, what: what})
			}
		}
	}
	return out
}

// failoverTable splits each cycle's unavailability into its steps, from
// the nodes' own clocks (the same host's): the first follower giving up
// on the leader (detection), the first node entering the leader state
// (election), and the first acknowledged write sent after the fault (what
// the client sees). What lies between the last two is forwarding and
// client pacing.
func failoverTable(t *testing.T, records []cycleRecord, history []op, events []raftEvent) string {
	type steps struct {
		detect, leader, anyWrite, write []time.Duration
		elections                       int
	}
	by := map[string]*steps{}
	var order []string
	for i, r := range records {
		end := time.Now()
		if i+1 < len(records) {
			end = records[i+1].wall
		}
		first := func(what string) time.Duration {
			d := time.Duration(-1)
			for _, e := range events {
				if e.what == what && !e.at.Before(r.wall) && e.at.Before(end) {
					if x := e.at.Sub(r.wall); d < 0 || x < d {
						d = x
					}
				}
			}
			return d
		}
		w, anyW := time.Duration(-1), time.Duration(-1)
		if a := firstAck(history, r.at); a >= 0 {
			w = time.Duration(a - r.at)
		}
		// Any write acknowledged after the fault, even one sent before
		// it and held by a node through the election: when the cluster
		// took writes again, without the suite's own pacing (a client
		// counts only once its call in flight has ended).
		for _, o := range history {
			if (o.kind == opWrite || o.kind == opAdd) && o.outcome == ok && o.ret >= r.at && (anyW < 0 || time.Duration(o.ret-r.at) < anyW) {
				anyW = time.Duration(o.ret - r.at)
			}
		}
		leaders := 0
		for _, e := range events {
			if e.what == "leader" && !e.at.Before(r.wall) && e.at.Before(end) {
				leaders++
			}
		}
		s := by[r.fault]
		if s == nil {
			s = &steps{}
			by[r.fault] = s
			order = append(order, r.fault)
		}
		det, lead := first("detect"), first("leader")
		s.detect, s.leader, s.anyWrite, s.write = append(s.detect, det), append(s.leader, lead), append(s.anyWrite, anyW), append(s.write, w)
		s.elections += leaders
		t.Logf("cycle %d %s: detected %v, new leader %v (%d elections won), a write acknowledged %v, the first sent after the fault %v", i, r.fault, ms(det), ms(lead), leaders, ms(anyW), ms(w))
	}
	// Elections the test did not cause: a leader elected outside every
	// fault-to-settled window, after the first fault (before it the
	// cluster is still forming), and leaders stepping down there.
	unprovoked, stepDowns := 0, 0
	for _, e := range events {
		if len(records) == 0 || e.at.Before(records[0].wall) {
			continue
		}
		inside := false
		for _, r := range records {
			inside = inside || (!e.at.Before(r.wall) && !e.at.After(r.settled))
		}
		if !inside {
			switch e.what {
			case "leader":
				unprovoked++
			case "stepdown":
				stepDowns++
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "elections outside the faults: %d won, %d leaders stepped down for want of a quorum\n\n", unprovoked, stepDowns)
	fmt.Fprintf(&b, "| fault | cycles | elections won | detected p50 / p99 | new leader p50 / p99 | any write acked p50 / p99 | first write sent after p50 / p99 / max |\n|---|---|---|---|---|---|---|\n")
	for _, f := range order {
		s := by[f]
		fmt.Fprintf(&b, "| %s | %d | %d | %s / %s | %s / %s | %s / %s | %s / %s / %s |\n", f, len(s.write), s.elections,
			quantile(s.detect, 0.5), quantile(s.detect, 0.99), quantile(s.leader, 0.5), quantile(s.leader, 0.99),
			quantile(s.anyWrite, 0.5), quantile(s.anyWrite, 0.99),
			quantile(s.write, 0.5), quantile(s.write, 0.99), quantile(s.write, 1))
	}
	return b.String()
}

func ms(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}

// quantile is the nearest-rank quantile of the non-negative values ("-"
// when none; a fault that does not cost an election has no detection).
func quantile(ds []time.Duration, p float64) string {
	var v []time.Duration
	for _, d := range ds {
		if d >= 0 {
			v = append(v, d)
		}
	}
	if len(v) == 0 {
		return "-"
	}
	slices.Sort(v)
	return v[max(0, int(math.Ceil(p*float64(len(v))))-1)].Round(10 * time.Millisecond).String()
}
