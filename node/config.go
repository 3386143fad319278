package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/edgeproxy/edge/proxy/accesslog"
	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/raftstore"
)

// Config is everything one node needs. Flags and EDGE_* environment
// variables map onto it in flags.go (ParseFlags); tests fill it directly.
// New applies the defaults named below to zero fields; "required" fields
// make New fail when empty. A flag's own default, where it differs from
// the zero value's, is ParseFlags' and is named too.
type Config struct {
	// ID is the node's stable raft server ID (--id). Required; ParseFlags
	// uses the host name when the flag is not given.
	ID string
	// DataDir holds raft's log, stable store and snapshots (--data-dir).
	// Required, except that ParseFlags makes a temporary one for --dev.
	DataDir string
	// RaftAddr is the raft TCP listen address (--raft-addr, flag default
	// 127.0.0.1:7000). Required; port 0 binds a free port.
	RaftAddr string
	// RaftAdvertise is the raft address peers dial (may be a DNS name).
	// Empty: RaftAddr, or the bound address when RaftAddr has port 0.
	RaftAdvertise string
	// AdminAddr is the admin gRPC listen address (--admin-addr, flag
	// default 127.0.0.1:7001). Required; port 0 binds a free port.
	AdminAddr string
	// AdminAdvertise is the admin address other nodes use to reach this
	// one (may be a DNS name). Empty: AdminAddr, or the bound address when
	// AdminAddr has port 0.
	AdminAdvertise string
	// HTTPAddr is the plain-HTTP proxy listen address (--http-addr, flag
	// default 127.0.0.1:8080). Empty: no plain-HTTP listener.
	HTTPAddr string
	// HTTPSAddr is the TLS proxy listen address (--https-addr). Empty: no
	// TLS listener. With neither proxy address the node runs no data
	// plane at all (no proxy, cache or certificate manager): a pure raft
	// member.
	HTTPSAddr string
	// MetricsAddr serves /metrics, /healthz and /readyz (--metrics-addr).
	// Empty: not served.
	MetricsAddr string

	// Join lists other nodes' admin addresses to join through (--join).
	// Empty: with BootstrapExpect 1 the node bootstraps alone; otherwise
	// it has no one to join and keeps waiting (and logging so).
	Join []string
	// BootstrapExpect bootstraps a new cluster once this many nodes found
	// each other through Join (--bootstrap-expect). 0: never bootstrap,
	// only join an existing cluster; 1: bootstrap alone. Above 1 needs
	// Join. Ignored when DataDir already holds raft state.
	BootstrapExpect int
	// Voters is how many members vote (--voters): the most voters this
	// node, when it leads, lets into the configuration. 0: 3.
	Voters int
	// NonVoter (--role=nonvoter) makes this node a read replica for
	// good: it asks to join as a non-voter, the leader never makes it a
	// voter, and it never bootstraps. Otherwise (--role=voter) the node
	// is one of the voters: it joins as a voter while the leader has
	// fewer than its Voters, and, held as a non-voter because the voters
	// were full, asks again until a slot is free (keepRole). The role
	// belongs to the node, not to the order in which nodes joined.
	NonVoter bool

	// AdminToken is the admin API's bearer token, also sent to peers
	// (--admin-token-file or EDGE_ADMIN_TOKEN). At least
	// MinAdminTokenLen bytes. Empty: no token; then AdminClientCA is
	// required, or Dev with a loopback AdminAddr (no authentication).
	AdminToken string
	// AdminTokensAccepted are further tokens the admin API accepts, for a
	// rotation without refused calls (docs/operations.md): the token file
	// lists AdminToken first (the one this node sends to its peers), then
	// these. Empty: only AdminToken.
	AdminTokensAccepted []string
	// AdminTLSCert and AdminTLSKey are PEM files for TLS on the admin
	// listener; both or neither. Empty: the admin API is plaintext.
	AdminTLSCert string
	AdminTLSKey  string
	// AdminClientCA is a PEM CA bundle: clients presenting a certificate
	// it signed need no token (mTLS). Needs AdminTLSCert. Empty: tokens
	// only.
	AdminClientCA string
	// ClusterKeys authenticate the raft port (raftstore/peertls): the
	// first signs this node's certificate, all are trusted, so a key can be
	// rotated like the admin token. --dev makes one in the data dir when
	// none is given. Empty: PeerTLS* must be set, or Dev.
	ClusterKeys [][]byte
	// PeerTLSCert, PeerTLSKey and PeerTLSCA use an operator's PKI for the
	// raft port instead of a cluster key (etcd's --peer-* flags): all
	// three or none. Empty: ClusterKeys.
	PeerTLSCert string
	PeerTLSKey  string
	PeerTLSCA   string
	// Dev is a throwaway single node (--dev): it may run without a token
	// on loopback and makes its own cluster key. ParseFlags also makes a
	// temporary DataDir and sets BootstrapExpect 1. False: every
	// credential is required.
	Dev bool
	// TempDataDir says ParseFlags made DataDir for --dev: edged removes
	// it on a clean exit. False: DataDir is the operator's.
	TempDataDir bool
	// Version is the build's version (edged --version), reported in
	// cluster status and the edge_build_info metric. Empty: "dev".
	Version string
	// Pprof serves /debug/pprof on MetricsAddr (--pprof). False: not
	// served.
	Pprof bool
	// RaftTimings are raft's heartbeat, election, leader lease and commit
	// timeouts (--raft-*-timeout). All zero: raftstore.DefaultTimings
	// (250/250/125/5 ms); a partly set value is used as it is.
	RaftTimings raftstore.Timings
	// RaftLogLevel is the raft library's own log level: trace, debug,
	// info, warn or error (--raft-log-level, flag default warn). Empty:
	// info.
	RaftLogLevel string
	// ShutdownGrace bounds each drain at shutdown: the proxy and metrics
	// listeners share one, the admin API has its own
	// (--shutdown-grace). 0: 10s.
	ShutdownGrace time.Duration
	// JoinRetry is the pause between attempts to join or bootstrap
	// through Join. 0: 250ms.
	JoinRetry time.Duration
	// ReapNonvotersAfter is how long the leader waits for an unreachable
	// non-voter before removing it (--reap-nonvoters-after, flag default
	// 5m). 0: never; voters are never removed automatically.
	ReapNonvotersAfter time.Duration
	// BackupInterval uploads a snapshot to the S3 bucket this often while
	// leading (--backup-interval). 0: no backups.
	BackupInterval time.Duration
	// ProxyOptions tune the data plane; each field says its default.
	ProxyOptions ProxyOptions
	// ACME configures on-demand certificates (the --acme-* and
	// --cert-grace flags; proxy/certs documents the zero values).
	ACME ACMEOptions
	// Logger receives the node's logs. Nil: slog.Default().
	Logger *slog.Logger
	// LogWriter, when set, is the buffered stdout writer behind Logger
	// (cmd/edged makes one for the process). The proxy then writes its
	// access lines straight into it, with "node" and "component" fields
	// as Logger would add them, instead of through slog; shutdown flushes
	// it after the proxy drained. Whoever made it closes it. Nil: access
	// lines go through Logger.
	LogWriter *accesslog.Writer
	// GCMinHeap is the smallest heap goal edged lets the garbage
	// collector work to (--gc-min-heap; node/gctune). cmd/edged applies
	// it, for the process; node itself does not use it. 0: Go's default.
	GCMinHeap int64
	// LokiURL, when set, also ships every log line to Loki's push API
	// (--loki-url). Empty: logs go to Logger only.
	LokiURL string
	// LokiLabels are extra Loki stream labels (--loki-labels), added to
	// job=edge and node=ID. Nil: those two.
	LokiLabels map[string]string
	// forwardTimeout bounds a write or read barrier forwarded to the
	// leader, retries included (0: 10s); forwardAttempt bounds one try
	// (0: 2s; see Node.forwardCtx).
	forwardTimeout time.Duration
	forwardAttempt time.Duration
}

// ProxyOptions are the data plane's tunables. Each zero value takes the
// default named, as the flag defaults do.
type ProxyOptions struct {
	// MaxIdleConnsPerHost is the number of keep-alive connections kept
	// per origin pool (--upstream-max-idle). 0 or negative: 50.
	MaxIdleConnsPerHost int
	// IdleConnTimeout closes an origin connection idle this long
	// (--upstream-idle-timeout). 0 or negative: 60s.
	IdleConnTimeout time.Duration
	// MaxConns caps the client connections open at once, over the HTTP
	// and HTTPS listeners together; beyond it new connections wait in
	// the kernel's accept queue (--max-conns). 0: proxy.DefaultMaxConns
	// (50 000); negative: no cap.
	MaxConns int
	// RedisAddr is the Redis address of the shared L2 cache
	// (--redis-addr): one host:port, or with RedisMode cluster or
	// sentinel a comma-separated list of cluster nodes or sentinels.
	// Empty: no L2.
	RedisAddr string
	// RedisMode is single, cluster or sentinel (--redis-mode; see
	// cache.RedisMode). Empty: single.
	RedisMode string
	// RedisMasterName is the primary's name the sentinels monitor
	// (--redis-master-name); sentinel mode only.
	RedisMasterName string
	// S3Bucket is the bucket of the L3 cache, certificates and backups
	// (--s3-bucket). Empty: no L3, no certificate mirror, no backups.
	S3Bucket string
	// S3Endpoint is the endpoint URL of an S3-compatible server
	// (--s3-endpoint). Empty: AWS's, from the SDK's configuration.
	S3Endpoint string
	// S3PathStyle uses path-style S3 addressing (--s3-path-style).
	// False: virtual-hosted style.
	S3PathStyle bool
	// CacheSize is the L1 (memory) cache size in bytes (--cache-size,
	// flag default 256 MiB). 0 or negative: 256 MiB.
	CacheSize int64

	// ClientBodyTimeout is how long a client's request body may stall
	// before it gets 408 and its origin connection is closed
	// (--client-body-timeout; issue 14, item 7). 0:
	// proxy.DefaultClientBodyTimeout (60s); negative: no bound.
	ClientBodyTimeout time.Duration
	// MaxUploadsPerOrigin bounds the request bodies streaming to one
	// origin at once; more get 503 (--upstream-max-uploads). 0:
	// upstream.DefaultMaxUploadsPerOrigin (128); negative: unbounded.
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
	if c.NonVoter && c.BootstrapExpect > 0 {
		errs = append(errs, errors.New("--role=nonvoter never bootstraps a cluster: drop --bootstrap-expect (the voters bootstrap; a non-voter joins them)"))
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
	if rc, err := c.ProxyOptions.redisConfig(); err != nil {
		errs = append(errs, err)
	} else if rc != nil {
		if err := rc.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--redis-addr, --redis-mode, --redis-master-name: %w", err))
		}
	}
	return errors.Join(errs...)
}

// redisConfig is the L2's configuration from the --redis-* flags; nil
// without --redis-addr.
func (po *ProxyOptions) redisConfig() (*cache.RedisConfig, error) {
	if po.RedisAddr == "" {
		if po.RedisMasterName != "" || po.RedisMode != "" && po.RedisMode != string(cache.RedisSingle) {
			return nil, errors.New("--redis-mode and --redis-master-name need --redis-addr")
		}
		return nil, nil
	}
	mode, err := cache.ParseRedisMode(po.RedisMode)
	if err != nil {
		return nil, fmt.Errorf("--redis-mode: %w", err)
	}
	return &cache.RedisConfig{Addr: po.RedisAddr, Mode: mode, MasterName: po.RedisMasterName}, nil
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
