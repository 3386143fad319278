//go:build unix

package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// pod is one edged process standing in for a pod of deploy/k8s: the
// flags are its StatefulSet's, with loopback addresses.
type pod struct {
	t       *testing.T
	name    string
	args    []string
	admin   string
	dataDir string
	log     string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// loopbackPod turns a StatefulSet container's flags into pod name's
// edged arguments on loopback: every flag keeps the manifest's value but
// the addresses, the paths and the join list.
func loopbackPod(t *testing.T, c *corev1.Container, name, dir string, join []string, admin string) *pod {
	t.Helper()
	p := &pod{t: t, name: name, admin: admin, dataDir: filepath.Join(dir, name), log: filepath.Join(dir, name+".log")}
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	raft := free()
	own := map[string]string{
		"id": name, "data-dir": p.dataDir,
		"raft-addr": raft, "raft-advertise": raft,
		"admin-addr": admin, "admin-advertise": admin,
		"http-addr": free(), "https-addr": free(), "metrics-addr": free(),
		"join":             strings.Join(join, ","),
		"admin-token-file": filepath.Join(dir, "admin-token"),
		"cluster-key-file": filepath.Join(dir, "cluster-key"),
	}
	manifest := parseArgs(t, c.Args)
	for k := range own {
		if _, ok := manifest[k]; !ok {
			t.Fatalf("%s: the manifest has no --%s to replace", name, k)
		}
	}
	for _, k := range mapsKeys(manifest) {
		v, ok := own[k]
		if !ok {
			v = manifest[k]
		}
		p.args = append(p.args, "--"+k+"="+v)
	}
	return p
}

func freeAdmin(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (p *pod) start() {
	p.t.Helper()
	edged, _ := binaries(p.t)
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	p.cmd = exec.Command(edged, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.exited = make(chan struct{})
	cmd, exited := p.cmd, p.exited
	go func() { _ = cmd.Wait(); f.Close(); close(exited) }()
	p.t.Cleanup(func() { p.stop(syscall.SIGKILL) })
}

// stop sends sig and waits for the process to exit.
func (p *pod) stop(sig syscall.Signal) {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		p.t.Errorf("%s did not exit within 60s of %v", p.name, sig)
	}
}

func (p *pod) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return fmt.Sprintf("--- %s ---\n%s\n", p.name, b)
}

type member struct {
	ID       string `json:"id"`
	Suffrage string `json:"suffrage"`
	State    string `json:"state"`
}

// members reads `edgectl cluster status -o json` through servers: the
// raft configuration as the answering node's copy holds it.
func members(t *testing.T, servers []string, tokenFile string) (map[string]member, error) {
	t.Helper()
	_, edgectl := binaries(t)
	out, err := exec.Command(edgectl, "--server", strings.Join(servers, ","), "--token-file", tokenFile, "--timeout", "3s",
		"cluster", "status", "-o", "json").Output()
	if err != nil {
		return nil, fmt.Errorf("cluster status: %v", err)
	}
	var st struct {
		Leader  string   `json:"leader"`
		Members []member `json:"members"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, err
	}
	if st.Leader == "" {
		return nil, fmt.Errorf("no leader: %s", out)
	}
	ms := map[string]member{}
	for _, m := range st.Members {
		ms[m.ID] = m
	}
	return ms, nil
}

// suffrages renders a configuration as "id=suffrage" in ID order.
func suffrages(ms map[string]member) string {
	var s []string
	for _, id := range slices.Sorted(maps.Keys(ms)) {
		s = append(s, id+"="+ms[id].Suffrage)
	}
	return strings.Join(s, " ")
}

// TestVotersStayVotersThroughPVCLost replays issue 18 with the manifests'
// own flags: three voters (statefulset.yaml) and a replica (replicas.yaml);
// a voter's PVC is lost and the operator follows docs/operations.md, "PVC
// is lost" (edgectl cluster remove, a fresh volume, the same pod name); a
// replica the HPA added meanwhile joins first, while a voter slot is free;
// the voter comes back with an empty data dir and is a voter again, the
// replica stays a non-voter; the HPA scales the replicas down (SIGTERM) and
// the configuration holds exactly the three voters, all reachable, taking
// writes. Before --role, the replica took the free slot, the voter came
// back as a non-voter, and the scale-down left an unreachable voter.
func TestVotersStayVotersThroughPVCLost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five edged processes; skipped with -short")
	}
	m := loadManifests(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte("voters-test-admin-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster-key"), []byte("voters-test-cluster-key-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var voterAdmins []string
	for range 3 {
		voterAdmins = append(voterAdmins, freeAdmin(t))
	}
	var voters []*pod
	for i := range 3 {
		voters = append(voters, loopbackPod(t, m.container(t), fmt.Sprintf("edge-%d", i), dir, voterAdmins, voterAdmins[i]))
	}
	replica := func(i int) *pod {
		return loopbackPod(t, m.replicaContainer(t), fmt.Sprintf("edge-replica-%d", i), dir, voterAdmins, freeAdmin(t))
	}
	var replicas []*pod
	logs := func() string {
		var b strings.Builder
		for _, p := range append(slices.Clone(voters), replicas...) {
			b.WriteString(p.logTail())
		}
		return b.String()
	}
	ctl := func(args ...string) string {
		t.Helper()
		_, edgectl := binaries(t)
		var out []byte
		var err error
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, err = exec.Command(edgectl, append([]string{"--server", strings.Join(voterAdmins, ","), "--token-file", tokenFile, "--timeout", "5s"}, args...)...).CombinedOutput()
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("edgectl %s: %v: %s\n%s", strings.Join(args, " "), err, out, logs())
		}
		return string(out)
	}
	wait := func(what string, d time.Duration, cond func(map[string]member) error) map[string]member {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			ms, err := members(t, voterAdmins, tokenFile)
			if err == nil {
				if err = cond(ms); err == nil {
					return ms
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %v\n%s", what, err, logs())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	want := func(spec string) func(map[string]member) error {
		return func(ms map[string]member) error {
			if got := suffrages(ms); got != spec {
				return fmt.Errorf("configuration %q, want %q", got, spec)
			}
			return nil
		}
	}

	// The cluster as kubectl apply -k leaves it: three voters, one replica.
	for _, p := range voters {
		p.start()
	}
	replicas = append(replicas, replica(0))
	replicas[0].start()
	wait("three voters and a replica", 60*time.Second, want("edge-0=voter edge-1=voter edge-2=voter edge-replica-0=nonvoter"))
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }))
	defer origin.Close()
	ctl("tenant", "add", "before.example", "--origin", origin.URL)

	// edge-2's PVC is lost: the pod is gone for good (no goodbye), the
	// operator removes the member, the volume is new and empty.
	lost := voters[2]
	lost.stop(syscall.SIGKILL)
	ctl("cluster", "remove", lost.name)
	if err := os.RemoveAll(lost.dataDir); err != nil {
		t.Fatal(err)
	}
	wait("edge-2 out", 10*time.Second, want("edge-0=voter edge-1=voter edge-replica-0=nonvoter"))

	// Meanwhile the HPA adds a replica, which joins first, with a voter
	// slot free: it stays a non-voter, however long it waits.
	replicas = append(replicas, replica(1))
	replicas[1].start()
	wait("the new replica as a non-voter", 30*time.Second, want("edge-0=voter edge-1=voter edge-replica-0=nonvoter edge-replica-1=nonvoter"))
	time.Sleep(3 * time.Second) // past a keepRole round on every node
	if ms, err := members(t, voterAdmins, tokenFile); err != nil || ms["edge-replica-1"].Suffrage != "nonvoter" {
		t.Fatalf("a replica took the free voter slot: %s (%v)\n%s", suffrages(ms), err, logs())
	}

	// The StatefulSet recreates edge-2: same name, empty volume. It is a
	// voter again.
	lost.start()
	wait("edge-2 back as a voter", 60*time.Second, want("edge-0=voter edge-1=voter edge-2=voter edge-replica-0=nonvoter edge-replica-1=nonvoter"))

	// The HPA scales the replicas down, highest ordinal first: each leaves
	// on SIGTERM. The configuration is the three voters, all reachable.
	for i := len(replicas) - 1; i >= 0; i-- {
		replicas[i].stop(syscall.SIGTERM)
	}
	ms := wait("exactly the three voters", 30*time.Second, func(ms map[string]member) error {
		if err := want("edge-0=voter edge-1=voter edge-2=voter")(ms); err != nil {
			return err
		}
		for _, mb := range ms {
			if mb.State == "unreachable" || mb.State == "" {
				return fmt.Errorf("%s is %q", mb.ID, mb.State)
			}
		}
		return nil
	})
	t.Logf("after scale-down: %s", suffrages(ms))

	// Writes still commit, and the returned voter has them (it rebuilt its
	// state from the others: the tenant written before the loss is there).
	ctl("tenant", "add", "after.example", "--origin", origin.URL)
	_, edgectl := binaries(t)
	deadline := time.Now().Add(15 * time.Second)
	for _, d := range []string{"before.example", "after.example"} {
		for {
			out, err := exec.Command(edgectl, "--server", lost.admin, "--token-file", tokenFile, "--timeout", "3s",
				"tenant", "get", d, "--local", "-o", "json").CombinedOutput()
			if err == nil && strings.Contains(string(out), origin.URL) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s on the returned voter: %v: %s\n%s", d, err, out, logs())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
