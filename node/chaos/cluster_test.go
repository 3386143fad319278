package chaos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestMain removes the binaries testkit built for this test process.
func TestMain(m *testing.M) { testkit.Main(m) }

// edged builds the real binary once per test process (testkit).
func edged(t *testing.T) string {
	bin, _ := testkit.Binaries(t)
	return bin
}

// perNodeFlags are the flags the suite sets itself; every other flag comes
// from scripts/dev-cluster.sh --print-args, which deploy/ keeps equal to
// the StatefulSet's.
var perNodeFlags = []string{
	"--id", "--data-dir", "--raft-addr", "--raft-advertise", "--admin-addr", "--admin-advertise",
	"--http-addr", "--https-addr", "--metrics-addr", "--bootstrap-expect", "--join", "--voters",
	"--admin-token-file", "--cluster-key-file",
}

// statefulSetFlags returns the StatefulSet's policy flags (cache size,
// shutdown grace, raft timings) as the dev cluster script prints them.
func statefulSetFlags(t *testing.T) []string {
	t.Helper()
	script, err := filepath.Abs("../../scripts/dev-cluster.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(script, "--print-args", "1")
	cmd.Env = append(os.Environ(), "DEV_CLUSTER_DIR="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s --print-args 1: %v", script, err)
	}
	var flags []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, _, _ := strings.Cut(sc.Text(), "=")
		own := false
		for _, f := range perNodeFlags {
			own = own || f == name
		}
		if !own && strings.HasPrefix(name, "--") {
			flags = append(flags, sc.Text())
		}
	}
	if len(flags) < 4 {
		t.Fatalf("dev-cluster.sh printed too few policy flags: %q", out)
	}
	return flags
}

const adminToken = "chaos-admin-token-0123456789abcdef"

type proc struct {
	i       int
	id      string
	args    []string
	logPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	expected bool          // the test caused the exit (kill -9)
	paused   bool
}

type cluster struct {
	t       *testing.T
	net     network
	nodes   []*proc
	conns   []*grpc.ClientConn
	bin     string
	exitsMu sync.Mutex
	exits   []string   // exits the test did not cause
	dp      *dataplane // told when the test kills or pauses a node; nil before it runs
}

// clusterOptions are startCluster's optional settings.
type clusterOptions struct {
	// dataDir is where node i keeps its data; default a directory in
	// the test's temp dir.
	dataDir func(i int) string
}

func startCluster(t *testing.T, nw network, n int, opts ...func(*clusterOptions)) *cluster {
	t.Helper()
	c := &cluster{t: t, net: nw, bin: edged(t)}
	dir := t.TempDir()
	o := clusterOptions{dataDir: func(i int) string { return filepath.Join(dir, fmt.Sprintf("edge-%d", i)) }}
	for _, f := range opts {
		f(&o)
	}
	tokenFile := filepath.Join(dir, "admin-token")
	keyFile := filepath.Join(dir, "cluster-key")
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("chaos-cluster-key-0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var join []string
	for i := 0; i < n; i++ {
		join = append(join, nw.node(i).admin)
	}
	policy := statefulSetFlags(t)
	for i := 0; i < n; i++ {
		a := nw.node(i)
		p := &proc{i: i, id: fmt.Sprintf("edge-%d", i), logPath: filepath.Join(dir, fmt.Sprintf("edge-%d.log", i))}
		p.args = append([]string{
			"--id=" + p.id, "--data-dir=" + o.dataDir(i),
			"--raft-addr=" + a.listenRaft, "--raft-advertise=" + a.raft,
			"--admin-addr=" + a.listenAdmin, "--admin-advertise=" + a.admin,
			"--http-addr=" + a.listenHTTP, "--https-addr=" + a.listenHTTPS, "--metrics-addr=" + a.listenMetrics,
			fmt.Sprintf("--bootstrap-expect=%d", n), "--join=" + strings.Join(join, ","),
			// Every node votes: the StatefulSet's --voters=3 would make
			// nodes 4 and 5 non-voters, and a 5-voter quorum is the point.
			fmt.Sprintf("--voters=%d", n),
			"--admin-token-file=" + tokenFile, "--cluster-key-file=" + keyFile,
			"--raft-log-level=info", // the election milestones failoverTable reads
		}, policy...)
		// CHAOS_EDGED_FLAGS (space-separated) come last and win: to
		// measure other raft timings than the StatefulSet's.
		p.args = append(p.args, strings.Fields(os.Getenv("CHAOS_EDGED_FLAGS"))...)
		c.nodes = append(c.nodes, p)
	}
	t.Cleanup(c.stopAll)
	for _, p := range c.nodes {
		c.start(p)
	}
	for i := 0; i < n; i++ {
		cc, err := grpc.NewClient("passthrough:///"+nw.node(i).client,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(nw.dial),
			// Reconnect quickly after a restart: gRPC's default backoff
			// grows to two minutes.
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
				BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 300 * time.Millisecond,
			}, MinConnectTimeout: time.Second}),
		)
		if err != nil {
			t.Fatal(err)
		}
		c.conns = append(c.conns, cc)
		t.Cleanup(func() { cc.Close() })
	}
	c.waitHealthy(60 * time.Second)
	return c
}

// start launches p in its own process group, appending to its log.
func (c *cluster) start(p *proc) {
	c.t.Helper()
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := c.net.command(p.i, c.bin, p.args)
	cmd.Stdout, cmd.Stderr = f, f
	// No Pdeathsig: it fires when the forking thread exits, and the netns
	// dialer retires the threads it locks. Cleanup kills the groups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		c.t.Fatalf("start %s: %v", p.id, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.expected, p.paused = cmd, done, false, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		expected := p.expected
		p.mu.Unlock()
		if !expected {
			c.exitsMu.Lock()
			c.exits = append(c.exits, fmt.Sprintf("%s exited by itself: %v", p.id, err))
			c.exitsMu.Unlock()
		}
		close(done)
	}()
}

// kill sends SIGKILL to the process groups of ps at once, then waits for
// them to be gone.
func (c *cluster) kill(ps ...*proc) {
	c.t.Helper()
	for _, p := range ps {
		c.dp.markDown(p.i)
		p.mu.Lock()
		p.expected = true
		pid := p.cmd.Process.Pid
		p.mu.Unlock()
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	for _, p := range ps {
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.t.Fatalf("%s did not exit 10s after SIGKILL", p.id)
		}
	}
}

func (c *cluster) signal(p *proc, sig syscall.Signal) {
	c.t.Helper()
	p.mu.Lock()
	pid := p.cmd.Process.Pid
	p.paused = sig == syscall.SIGSTOP
	p.mu.Unlock()
	if sig == syscall.SIGSTOP {
		c.dp.markDown(p.i)
	}
	if err := syscall.Kill(-pid, sig); err != nil {
		c.t.Fatalf("signal %v to %s: %v", sig, p.id, err)
	}
	if sig == syscall.SIGCONT {
		c.dp.markUp(p.i)
	}
}

// stopAll ends every node on every exit path: SIGKILL to each process
// group (a stopped process dies of it too), then a wait.
func (c *cluster) stopAll() {
	for _, p := range c.nodes {
		p.mu.Lock()
		cmd, done := p.cmd, p.done
		p.expected = true
		p.mu.Unlock()
		if cmd == nil {
			continue
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		if c.t.Failed() {
			b, _ := os.ReadFile(p.logPath)
			c.t.Logf("--- last lines of %s's log (%s) ---\n%s", p.id, p.logPath, tail(string(b), 3000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (c *cluster) unexpectedExits() []string {
	c.exitsMu.Lock()
	defer c.exitsMu.Unlock()
	return append([]string(nil), c.exits...)
}

// ctx returns a context carrying the admin token and a request ID, which a
// node keeps across its own retries (at most one apply per ID).
func opContext(parent context.Context, timeout time.Duration, requestID string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	md := metadata.Pairs("authorization", "Bearer "+adminToken, "x-edge-actor", "chaos@suite")
	if requestID != "" {
		md.Append("x-edge-request-id", requestID)
	}
	return metadata.NewOutgoingContext(ctx, md), cancel
}

// leader returns the index of the node every reachable node names as
// leader, or -1.
func (c *cluster) leader() int {
	ctx, cancel := opContext(context.Background(), 2*time.Second, "")
	defer cancel()
	for _, i := range c.runningNodes() {
		st, err := edgev1.NewClusterServiceClient(c.conns[i]).Status(ctx, &edgev1.StatusRequest{})
		if err == nil && st.GetLeader() != "" {
			for _, p := range c.nodes {
				if p.id == st.GetLeader() {
					return p.i
				}
			}
		}
	}
	return -1
}

func (c *cluster) runningNodes() []int {
	var out []int
	for _, p := range c.nodes {
		p.mu.Lock()
		if !p.expected && !p.paused {
			out = append(out, p.i)
		}
		p.mu.Unlock()
	}
	return out
}

// healthy reports whether every node answers, all name the same leader,
// and that leader's view has every member as leader or follower.
func (c *cluster) healthy() (bool, string) {
	ctx, cancel := opContext(context.Background(), 2*time.Second, "")
	defer cancel()
	leader := ""
	for i := range c.nodes {
		st, err := edgev1.NewClusterServiceClient(c.conns[i]).Status(ctx, &edgev1.StatusRequest{})
		if err != nil {
			return false, fmt.Sprintf("%s: %v", c.nodes[i].id, err)
		}
		if st.GetLeader() == "" || (leader != "" && st.GetLeader() != leader) {
			return false, fmt.Sprintf("%s names leader %q, another node %q", c.nodes[i].id, st.GetLeader(), leader)
		}
		leader = st.GetLeader()
		if len(st.GetMembers()) != len(c.nodes) {
			return false, fmt.Sprintf("%s lists %d members", c.nodes[i].id, len(st.GetMembers()))
		}
		leaders := 0
		for _, m := range st.GetMembers() {
			switch m.GetState() {
			case "leader":
				leaders++
			case "follower":
			default:
				return false, fmt.Sprintf("%s sees %s %s", c.nodes[i].id, m.GetId(), m.GetState())
			}
		}
		if leaders != 1 {
			return false, fmt.Sprintf("%s sees %d leaders", c.nodes[i].id, leaders)
		}
	}
	return true, ""
}

func (c *cluster) waitHealthy(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := c.healthy()
		if ok {
			return
		}
		if exits := c.unexpectedExits(); len(exits) > 0 {
			c.t.Fatalf("node exits the test did not cause: %v", exits)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster not healthy after %v: %s", d, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logsWithPanic returns the nodes whose log mentions a panic.
func (c *cluster) logsWithPanic() []string {
	var out []string
	for _, p := range c.nodes {
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			continue
		}
		if i := bytes.Index(b, []byte("panic")); i >= 0 {
			lo := max(0, i-300)
			hi := min(len(b), i+1500)
			out = append(out, fmt.Sprintf("%s (%s): …%s…", p.id, p.logPath, b[lo:hi]))
		}
	}
	return out
}
