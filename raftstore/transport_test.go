package raftstore

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeproxy/edge/raftstore/peertls"
	"github.com/edgeproxy/edge/scripts/testkit"
	"github.com/hashicorp/raft"
)

// singleLeader opens a one-voter cluster and waits until it leads.
func singleLeader(t *testing.T) *Store {
	t.Helper()
	s := openStore(t, "n0", t.TempDir())
	t.Cleanup(func() { s.Close() })
	if err := s.Bootstrap([]raft.Server{{ID: "n0", Address: raft.ServerAddress(s.Addr()), Suffrage: raft.Voter}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "leadership", s.IsLeader)
	addTenant(t, s, "shop.example")
	return s
}

// forgedAppend is what an intruder who can reach the raft port sends: an
// AppendEntries from a made-up leader of the next term, carrying a
// tenant.add of its own.
func forgedAppend(t *testing.T, s *Store) *raft.AppendEntriesRequest {
	t.Helper()
	cmd, err := NewCommand(CmdTenantAdd, "", time.Now(), tenant("evil.example"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r := s.Raft()
	term := r.CurrentTerm() + 1
	last := r.LastIndex()
	return &raft.AppendEntriesRequest{
		RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte("127.0.0.1:1")},
		Term:              term,
		PrevLogEntry:      last,
		PrevLogTerm:       term - 1,
		Entries:           []*raft.Log{{Index: last + 1, Term: term, Type: raft.LogCommand, Data: data}},
		LeaderCommitIndex: last + 1,
	}
}

// dialerTransport is a raft NetworkTransport whose connections go through
// dial, so a test speaks raft's real wire protocol over whatever it likes.
type dialerTransport struct {
	net.Listener
	dial func(addr string, timeout time.Duration) (net.Conn, error)
}

func (d *dialerTransport) Dial(a raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return d.dial(string(a), timeout)
}

func newClientTransport(t *testing.T, dial func(string, time.Duration) (net.Conn, error)) *raft.NetworkTransport {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransport(&dialerTransport{Listener: ln, dial: dial}, 1, 2*time.Second, io.Discard)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// TestRaftPortRefusesPeersWithoutTheClusterCredential is the attack from
// issue 14: a process that reaches the raft port and speaks
// hashicorp/raft's protocol, in plain TCP or in TLS with a certificate of
// its own (another cluster's key, or a self-made one), gets no RPC
// processed: no answer, no term change, nothing written.
func TestRaftPortRefusesPeersWithoutTheClusterCredential(t *testing.T) {
	s := singleLeader(t)
	otherCluster, err := peertls.FromClusterKeys([][]byte{[]byte(peertls.NewKey())})
	if err != nil {
		t.Fatal(err)
	}
	attackers := map[string]func(string, time.Duration) (net.Conn, error){
		"plain TCP": func(a string, to time.Duration) (net.Conn, error) {
			return net.DialTimeout("tcp", a, to)
		},
		"TLS with another cluster's key": func(a string, to time.Duration) (net.Conn, error) {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: to}, Config: otherCluster.ClientConfig(a)}
			return d.Dial("tcp", a)
		},
		"TLS without a client certificate": func(a string, to time.Duration) (net.Conn, error) {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: to}, Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}
			return d.Dial("tcp", a)
		},
	}
	for name, dial := range attackers {
		t.Run(name, func(t *testing.T) {
			before := s.RejectedPeers()
			term, last := s.Raft().CurrentTerm(), s.Raft().LastIndex()
			tr := newClientTransport(t, dial)
			var resp raft.AppendEntriesResponse
			err := tr.AppendEntries("n0", raft.ServerAddress(s.Addr()), forgedAppend(t, s), &resp)
			if err == nil {
				t.Fatalf("forged AppendEntries answered: %+v", resp)
			}
			var vote raft.RequestVoteResponse
			if err := tr.RequestVote("n0", raft.ServerAddress(s.Addr()), &raft.RequestVoteRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte("127.0.0.1:1")},
				Term:      term + 5, LastLogIndex: last + 100, LastLogTerm: term + 5,
			}, &vote); err == nil {
				t.Fatalf("forged RequestVote answered: %+v", vote)
			}
			testkit.Eventually(t, 5*time.Second, "the refusal to be counted", func() bool { return s.RejectedPeers() > before })
			if got := s.Raft().CurrentTerm(); got != term {
				t.Fatalf("term moved %d → %d", term, got)
			}
			if !s.IsLeader() {
				t.Fatal("the intruder deposed the leader")
			}
			if got := s.Raft().LastIndex(); got != last {
				t.Fatalf("log grew %d → %d", last, got)
			}
			if s.Lookup("evil.example") != nil {
				t.Fatal("the intruder's tenant is in the state")
			}
		})
	}

	// The control: the same client with the cluster's credential is
	// answered, so the refusals above are the credential's doing.
	t.Run("control: TLS with the cluster key", func(t *testing.T) {
		good := testPeerTLS(t)
		tr := newClientTransport(t, func(a string, to time.Duration) (net.Conn, error) {
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: to}, Config: good.ClientConfig(a)}
			return d.Dial("tcp", a)
		})
		var vote raft.RequestVoteResponse
		if err := tr.RequestVote("n0", raft.ServerAddress(s.Addr()), &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n9"), Addr: []byte("127.0.0.1:1")},
			Term:      1,
		}, &vote); err != nil {
			t.Fatalf("a member's RequestVote got no answer: %v", err)
		}
		if vote.Granted || vote.Term < s.Raft().CurrentTerm() {
			t.Fatalf("stale vote request: %+v", vote)
		}
	})
}

// TestRaftKeyRotation runs the middle of a rotation: one node signs with
// the new key and trusts the old, the other still signs with the old key
// and trusts the new. They form a cluster and replicate; a node with only
// a third key cannot join.
func TestRaftKeyRotation(t *testing.T) {
	oldKey, newKey := []byte(peertls.NewKey()), []byte(peertls.NewKey())
	open := func(id string, keys ...[]byte) *Store {
		c, err := peertls.FromClusterKeys(keys)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(Config{ID: id, DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Timings: fastTimings, RaftLogLevel: "error", PeerTLS: c})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a := open("a", newKey, oldKey)
	b := open("b", oldKey, newKey)
	if err := a.Bootstrap([]raft.Server{
		{ID: "a", Address: raft.ServerAddress(a.Addr()), Suffrage: raft.Voter},
		{ID: "b", Address: raft.ServerAddress(b.Addr()), Suffrage: raft.Voter},
	}); err != nil {
		t.Fatal(err)
	}
	stores := []*Store{a, b}
	testkit.Eventually(t, 5*time.Second, "a leader", func() bool { return leaderOf(stores) != nil })
	r := addTenant(t, leaderOf(stores), "shop.example")
	for _, s := range stores {
		testkit.Eventually(t, 5*time.Second, "replication to "+s.ID(), func() bool { return s.AppliedIndex() >= r.Index })
	}

	stranger := open("c", []byte(peertls.NewKey()))
	leader := leaderOf(stores)
	f := leader.Raft().AddVoter("c", raft.ServerAddress(stranger.Addr()), 0, time.Second)
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	r2 := addTenant(t, leaderOf(stores), "blog.example")
	// The leader cannot reach c (c refuses its certificate, it refuses
	// c's), so c never receives the log.
	testkit.Eventually(t, 5*time.Second, "c to refuse the leader", func() bool { return stranger.RejectedPeers() > 0 })
	if stranger.AppliedIndex() >= r2.Index || stranger.Lookup("shop.example") != nil {
		t.Fatal("a node with a foreign key received the cluster's state")
	}
}

// TestDataDirIsPrivate: a data dir that exists with loose modes is
// tightened at start (0700 directories, 0600 files), and the snapshots
// raft writes afterwards are private too.
func TestDataDirIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "old", "leftover"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, "n0", dir)
	t.Cleanup(func() { s.Close() })
	if err := s.Bootstrap([]raft.Server{{ID: "n0", Address: raft.ServerAddress(s.Addr()), Suffrage: raft.Voter}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "leadership", s.IsLeader)
	addTenant(t, s, "shop.example")
	if err := s.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	snaps, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("no snapshot written: %v", err)
	}
	checkPrivate(t, dir)
}

func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if info.IsDir() {
			want = 0o700
		}
		if got := info.Mode().Perm(); got != want {
			return fmt.Errorf("%s: mode %v, want %v", p, got, want)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d entries checked under %s", n, dir)
	}
}
