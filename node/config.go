package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/edgeproxy/edge/proxy/accesslog"
	"github.com/edgeproxy/edge/raftstore"
)

// Config is everything one node needs. Flags and EDGE_* environment
// variables map onto it in flags.go; tests fill it directly.
type Config struct {
	ID       string
	DataDir  string
	RaftAddr string
	// RaftAdvertise is the raft address peers dial (may be a DNS name).
	RaftAdvertise string
	AdminAddr     string
	// AdminAdvertise is the admin address other nodes use to reach this
	// one (may be a DNS name).
	AdminAdvertise string
	HTTPAddr       string
	HTTPSAddr      string
	MetricsAddr    string

	Join            []string
	BootstrapExpect int
	Voters          int

	AdminToken string
	// AdminTokensAccepted are further tokens the admin API accepts, for a
	// rotation without refused calls (docs/operations.md): the token file
	// lists AdminToken first (the one this node sends to its peers), then
	// these.
	AdminTokensAccepted []string
	AdminTLSCert        string
	AdminTLSKey         string
	AdminClientCA       string
	// ClusterKeys authenticate the raft port (raftstore/peertls): the
	// first signs this node's certificate, all are trusted, so a key can be
	// rotated like the admin token. --dev makes one in the data dir when
	// none is given.
	ClusterKeys [][]byte
	// PeerTLSCert, PeerTLSKey and PeerTLSCA use an operator's PKI for the
	// raft port instead of a cluster key (etcd's --peer-* flags).
	PeerTLSCert string
	PeerTLSKey  string
	PeerTLSCA   string
	Dev         bool
	// TempDataDir says ParseFlags made DataDir for --dev: edged removes
	// it on a clean exit.
	TempDataDir bool
	// Version is the build's version (edged --version), reported in
	// cluster status and the edge_build_info metric.
	Version       string
	Pprof         bool
	RaftTimings   raftstore.Timings
	RaftLogLevel  string
	ShutdownGrace time.Duration
	JoinRetry     time.Duration
	// ReapNonvotersAfter is how long the leader waits for an unreachable
	// non-voter before removing it; 0 disables reaping.
	ReapNonvotersAfter time.Duration
	// BackupInterval uploads a snapshot to the S3 bucket this often while
	// leading (0: no backups).
	BackupInterval time.Duration
	ProxyOptions   ProxyOptions
	ACME           ACMEOptions
	Logger         *slog.Logger
	// LogWriter, when set, is the buffered stdout writer behind Logger
	// (cmd/edged makes one for the process). The proxy then writes its
	// access lines straight into it, with "node" and "component" fields
	// as Logger would add them, instead of through slog; shutdown flushes
	// it after the proxy drained. Whoever made it closes it. Nil: access
	// lines go through Logger.
	LogWriter *accesslog.Writer
	// GCMinHeap is the smallest heap goal edged lets the garbage
	// collector work to (--gc-min-heap; node/gctune). cmd/edged applies
	// it, for the process; node itself does not use it.
	GCMinHeap int64
	// LokiURL, when set, also ships every log line to Loki's push API.
	LokiURL    string
	LokiLabels map[string]string
	// forwardTimeout bounds a write or read barrier forwarded to the
	// leader, retries included; forwardAttempt bounds one try (see
	// Node.forwardCtx).
	forwardTimeout time.Duration
	forwardAttempt time.Duration
}

// ProxyOptions are the data plane's tunables.
type ProxyOptions struct {
	MaxIdleConnsPerHost int
	IdleConnTimeout     time.Duration
	MaxConns            int
	RedisAddr           string
	S3Bucket            string
	S3Endpoint          string
	S3PathStyle         bool
	CacheSize           int64

	// Request bodies (issue 14, item 7): how long a body may stall
	// (--client-body-timeout; 0: proxy.DefaultClientBodyTimeout) and how
	// many may stream to one origin at once (--upstream-max-uploads; 0:
	// upstream.DefaultMaxUploadsPerOrigin, negative: unbounded).
	ClientBodyTimeout   time.Duration
	MaxUploadsPerOrigin int

	// StandardPaths (--standard-paths) turns every fast path off: the
	// plain-HTTP listener is served by net/http's server (not proxy/h1),
	// origin requests go through http.Transport (not the lean client),
	// sockets use net's own calls (not proxy/rawconn), and the direct
	// byte relay is off. For an incident where a fast path is suspected;
	// docs/proxy.md lists what each replaces.
	StandardPaths bool
}

func (c *Config) setDefaults() {
	if c.Voters == 0 {
		c.Voters = 3
	}
	if c.RaftTimings == (raftstore.Timings{}) {
		c.RaftTimings = raftstore.DefaultTimings()
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.JoinRetry == 0 {
		c.JoinRetry = 250 * time.Millisecond
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.forwardTimeout == 0 {
		c.forwardTimeout = 10 * time.Second
	}
	if c.forwardAttempt == 0 {
		c.forwardAttempt = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RaftAdvertise == "" {
		c.RaftAdvertise = c.RaftAddr
	}
	if c.AdminAdvertise == "" {
		c.AdminAdvertise = c.AdminAddr
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.ID == "" {
		errs = append(errs, errors.New("--id is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	if c.RaftAddr == "" {
		errs = append(errs, errors.New("--raft-addr is required"))
	}
	if c.AdminAddr == "" {
		errs = append(errs, errors.New("--admin-addr is required"))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, errors.New("--bootstrap-expect must not be negative"))
	}
	if c.BootstrapExpect > 1 && len(c.Join) == 0 {
		errs = append(errs, fmt.Errorf("--bootstrap-expect %d needs --join with the other nodes' admin addresses", c.BootstrapExpect))
	}
	if c.Voters < 1 {
		errs = append(errs, errors.New("--voters must be at least 1"))
	}
	if (c.AdminTLSCert == "") != (c.AdminTLSKey == "") {
		errs = append(errs, errors.New("--admin-tls-cert and --admin-tls-key go together"))
	}
	for _, tok := range append([]string{c.AdminToken}, c.AdminTokensAccepted...) {
		if err := checkAdminToken(tok); err != nil {
			errs = append(errs, err)
			break
		}
	}
	pki := c.PeerTLSCert != "" || c.PeerTLSKey != "" || c.PeerTLSCA != ""
	switch {
	case pki && (c.PeerTLSCert == "" || c.PeerTLSKey == "" || c.PeerTLSCA == ""):
		errs = append(errs, errors.New("--peer-tls-cert, --peer-tls-key and --peer-tls-ca go together"))
	case pki && len(c.ClusterKeys) > 0:
		errs = append(errs, errors.New("give the raft port a cluster key (--cluster-key-file) or peer certificates (--peer-tls-*), not both"))
	case !pki && len(c.ClusterKeys) == 0 && !c.Dev:
		errs = append(errs, errors.New("the raft port needs the cluster credential: --cluster-key-file (or EDGE_CLUSTER_KEY; make one with: head -c 32 /dev/urandom | base64) or --peer-tls-cert/--peer-tls-key/--peer-tls-ca; only --dev makes its own"))
	}
	if c.AdminToken == "" && c.AdminClientCA == "" {
		if !c.Dev {
			errs = append(errs, errors.New("the admin API needs a token (--admin-token-file or EDGE_ADMIN_TOKEN) or mTLS (--admin-client-ca); only --dev may run without one"))
		} else if !isLoopback(c.AdminAddr) {
			errs = append(errs, fmt.Errorf("--dev without an admin token only listens on loopback, not %s", c.AdminAddr))
		}
	}
	return errors.Join(errs...)
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// MinAdminTokenLen is the shortest admin token edged accepts, in bytes.
const MinAdminTokenLen = 32

// checkAdminToken refuses the manifests' placeholder and short tokens, and
// says how to make a good one: a token guards every tenant, certificate
// key and the cluster's membership.
func checkAdminToken(tok string) error {
	const how = "make one with: head -c 32 /dev/urandom | base64"
	switch {
	case tok == "":
		return nil
	case strings.Contains(tok, "PLACEHOLDER"):
		return fmt.Errorf("the admin token is the manifests' placeholder; %s", how)
	case len(tok) < MinAdminTokenLen:
		return fmt.Errorf("an admin token is %d bytes, want at least %d; %s", len(tok), MinAdminTokenLen, how)
	}
	return nil
}
