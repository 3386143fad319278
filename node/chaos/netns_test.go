package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
	"golang.org/x/sys/unix"
)

// network is where the nodes live: their own network namespaces on a
// bridge the test makes (partitions possible), or loopback (kill and pause
// only).
type network interface {
	// node returns node i's listen, advertised and client-side addresses.
	node(i int) nodeAddrs
	// command wraps edged's command line so it runs inside node i's network.
	command(i int, bin string, args []string) *exec.Cmd
	// dial connects the test's clients to an address from nodeAddrs.client.
	dial(ctx context.Context, addr string) (net.Conn, error)
	// partition puts the nodes of minority on a bridge of their own: they
	// reach each other but not the rest. Clients still reach every node, as
	// in Jepsen's model: the partition is between the servers.
	partition(minority []int) error
	heal() error
	canPartition() bool
	// listenOrigin opens the data-plane origin's listener and returns the
	// URL every node reaches it by.
	listenOrigin() (net.Listener, string, error)
}

type nodeAddrs struct {
	listenRaft, listenAdmin, listenHTTP, listenHTTPS, listenMetrics string
	raft, admin                                                     string // advertised to the other nodes
	client                                                          string // where the test's clients connect
	clientHTTP, clientMetrics                                       string // the proxy and /readyz, from the clients' side
}

// ---- loopback ----

type loopback struct{ addrs []nodeAddrs }

func newLoopback(t *testing.T, n int) *loopback {
	l := &loopback{}
	for i := 0; i < n; i++ {
		a := nodeAddrs{listenRaft: testkit.FreeAddr(t), listenAdmin: testkit.FreeAddr(t), listenHTTP: testkit.FreeAddr(t), listenHTTPS: testkit.FreeAddr(t), listenMetrics: testkit.FreeAddr(t)}
		a.raft, a.admin, a.client = a.listenRaft, a.listenAdmin, a.listenAdmin
		a.clientHTTP, a.clientMetrics = a.listenHTTP, a.listenMetrics
		l.addrs = append(l.addrs, a)
	}
	return l
}

func (l *loopback) node(i int) nodeAddrs { return l.addrs[i] }
func (l *loopback) command(_ int, bin string, args []string) *exec.Cmd {
	return exec.Command(bin, args...)
}
func (l *loopback) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
func (l *loopback) partition([]int) error { return fmt.Errorf("loopback network: no partitions") }
func (l *loopback) heal() error           { return nil }
func (l *loopback) canPartition() bool    { return false }

// ---- network namespaces ----

// netnsNet gives every node a namespace with two links: eth0 to a bridge
// in a hub namespace (10.99.0.0/24, raft and node-to-node admin traffic:
// the links partitions cut) and cl0, a point-to-point link to the hub
// (10.98.i.0/30) on which the test's clients reach the node's admin port.
// Nothing is added to the host's own namespace; deleting the namespaces
// removes every link and bridge.
type netnsNet struct {
	t      *testing.T
	prefix string // namespace names: prefix-hub, prefix-n0, ...
	n      int
}

const nsPrefix = "edgechaos-"

// netnsUsable reports whether this process may create network namespaces,
// and why not.
func netnsUsable() (bool, string) {
	if _, err := exec.LookPath("ip"); err != nil {
		return false, "the ip command (iproute2) is not installed"
	}
	if os.Geteuid() != 0 {
		return false, "not running as root"
	}
	name := fmt.Sprintf("%s%d-probe", nsPrefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return false, fmt.Sprintf("ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	if out, err := exec.Command("ip", "-n", name, "link", "add", "probe0", "type", "bridge").CombinedOutput(); err != nil {
		return false, fmt.Sprintf("ip link add type bridge: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return true, ""
}

// removeStaleNamespaces deletes namespaces this suite left behind in a run
// that could not clean up (its process is gone).
func removeStaleNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, nsPrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if unix.Kill(pid, 0) == unix.ESRCH {
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
	}
}

func newNetns(t *testing.T, tag string, n int) *netnsNet {
	t.Helper()
	removeStaleNamespaces()
	nn := &netnsNet{t: t, prefix: fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), tag), n: n}
	t.Cleanup(nn.destroy)
	hub := nn.hub()
	nn.ip("netns", "add", hub)
	nn.ip("-n", hub, "link", "set", "lo", "up")
	nn.ip("-n", hub, "addr", "add", originIP+"/32", "dev", "lo") // the data-plane origin
	for _, br := range []string{"br0", "br1"} {
		nn.ip("-n", hub, "link", "add", br, "type", "bridge")
		nn.ip("-n", hub, "link", "set", br, "up")
	}
	for i := 0; i < n; i++ {
		ns := nn.ns(i)
		nn.ip("netns", "add", ns)
		nn.ip("-n", ns, "link", "set", "lo", "up")
		// cluster link: eth0 in the node, n<i> on the hub's bridge
		nn.ip("-n", hub, "link", "add", fmt.Sprintf("n%d", i), "type", "veth", "peer", "name", "eth0", "netns", ns)
		nn.ip("-n", hub, "link", "set", fmt.Sprintf("n%d", i), "master", "br0")
		nn.ip("-n", hub, "link", "set", fmt.Sprintf("n%d", i), "up")
		nn.ip("-n", ns, "addr", "add", fmt.Sprintf("10.99.0.%d/24", 11+i), "dev", "eth0")
		nn.ip("-n", ns, "link", "set", "eth0", "up")
		// client link: cl0 in the node, c<i> in the hub
		nn.ip("-n", hub, "link", "add", fmt.Sprintf("c%d", i), "type", "veth", "peer", "name", "cl0", "netns", ns)
		nn.ip("-n", hub, "addr", "add", fmt.Sprintf("10.98.%d.1/30", i), "dev", fmt.Sprintf("c%d", i))
		nn.ip("-n", hub, "link", "set", fmt.Sprintf("c%d", i), "up")
		nn.ip("-n", ns, "addr", "add", fmt.Sprintf("10.98.%d.2/30", i), "dev", "cl0")
		nn.ip("-n", ns, "link", "set", "cl0", "up")
		nn.ip("-n", ns, "route", "add", originIP+"/32", "via", fmt.Sprintf("10.98.%d.1", i), "dev", "cl0")
	}
	return nn
}

func (nn *netnsNet) hub() string     { return nn.prefix + "-hub" }
func (nn *netnsNet) ns(i int) string { return fmt.Sprintf("%s-n%d", nn.prefix, i) }

func (nn *netnsNet) ip(args ...string) {
	nn.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		nn.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (nn *netnsNet) destroy() {
	_ = exec.Command("ip", "netns", "del", nn.hub()).Run()
	for i := 0; i < nn.n; i++ {
		_ = exec.Command("ip", "netns", "del", nn.ns(i)).Run()
	}
}

func (nn *netnsNet) node(i int) nodeAddrs {
	ip := fmt.Sprintf("10.99.0.%d", 11+i)
	return nodeAddrs{
		// The StatefulSet's listen addresses and ports.
		listenRaft: "0.0.0.0:7000", listenAdmin: "0.0.0.0:7001", listenHTTP: "0.0.0.0:8080",
		listenHTTPS: "0.0.0.0:8443", listenMetrics: "0.0.0.0:9090",
		raft: ip + ":7000", admin: ip + ":7001",
		client:     fmt.Sprintf("10.98.%d.2:7001", i),
		clientHTTP: fmt.Sprintf("10.98.%d.2:8080", i), clientMetrics: fmt.Sprintf("10.98.%d.2:9090", i),
	}
}

func (nn *netnsNet) command(i int, bin string, args []string) *exec.Cmd {
	// ip netns exec execs edged in place: the pid is edged's.
	return exec.Command("ip", append([]string{"netns", "exec", nn.ns(i), bin}, args...)...)
}

// dial opens the socket inside the hub namespace.
func (nn *netnsNet) dial(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(nn.hub(), func() (err error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// inNetns runs fn on a thread that has entered the named network namespace,
// so the sockets fn opens belong to it. The thread never returns to the
// host namespace: it exits with its goroutine.
func inNetns(name string, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		fd, err := unix.Open("/var/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			ch <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		ch <- fn()
	}()
	return <-ch
}

func (nn *netnsNet) partition(minority []int) error {
	for _, i := range minority {
		if err := nn.setMaster(i, "br1"); err != nil {
			return err
		}
	}
	return nil
}

func (nn *netnsNet) heal() error {
	for i := 0; i < nn.n; i++ {
		if err := nn.setMaster(i, "br0"); err != nil {
			return err
		}
	}
	return nil
}

func (nn *netnsNet) setMaster(i int, br string) error {
	if out, err := exec.Command("ip", "-n", nn.hub(), "link", "set", fmt.Sprintf("n%d", i), "master", br).CombinedOutput(); err != nil {
		return fmt.Errorf("move n%d to %s: %v: %s", i, br, err, out)
	}
	return nil
}

func (nn *netnsNet) canPartition() bool { return true }
