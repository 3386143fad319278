package node

import (
	"errors"
	"flag"
	"fmt"
	"github.com/edgeproxy/edge/raftstore/peertls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeproxy/edge/node/logship"
	"github.com/edgeproxy/edge/proxy"
)

// ParseFlags turns edged's command line and environment into a Config.
// Every flag --foo-bar also reads EDGE_FOO_BAR when it is not given on the
// command line; the admin token itself may come from EDGE_ADMIN_TOKEN.
// ErrVersion is ParseFlags' answer to --version: print the version and
// exit 0.
var ErrVersion = errors.New("version requested")

func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("edged", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var join, tokenFile string
	fs.StringVar(&c.ID, "id", "", "stable node ID (default: the host name)")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory for raft state and snapshots")
	fs.StringVar(&c.RaftAddr, "raft-addr", "127.0.0.1:7000", "raft TCP listen address")
	fs.StringVar(&c.RaftAdvertise, "raft-advertise", "", "raft address peers dial, may be a DNS name (default: --raft-addr)")
	fs.StringVar(&c.AdminAddr, "admin-addr", "127.0.0.1:7001", "admin gRPC listen address")
	fs.StringVar(&c.AdminAdvertise, "admin-advertise", "", "admin address other nodes dial, may be a DNS name (default: --admin-addr)")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:8080", "plain HTTP listen address (empty disables)")
	fs.StringVar(&c.HTTPSAddr, "https-addr", "", "HTTPS listen address (empty disables)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "metrics and health listen address (empty disables)")
	fs.StringVar(&join, "join", "", "comma-separated admin addresses of other nodes")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", 0, "bootstrap a new cluster once this many nodes are found (1: alone)")
	fs.IntVar(&c.Voters, "voters", 3, "the most voting members the leader admits; a --role=voter node beyond them joins as a non-voter until a slot is free")
	role := fs.String("role", "voter", "voter: one of the voting members (restored as one after a removal); nonvoter: a read replica that never votes nor bootstraps")
	fs.StringVar(&tokenFile, "admin-token-file", "", "file holding the admin API bearer token (one per line: the first is sent to peers, all are accepted, for rotation)")
	fs.StringVar(&c.AdminTLSCert, "admin-tls-cert", "", "PEM certificate for the admin listener")
	fs.StringVar(&c.AdminTLSKey, "admin-tls-key", "", "PEM key for the admin listener")
	fs.StringVar(&c.AdminClientCA, "admin-client-ca", "", "PEM CA bundle; clients presenting a certificate it signed need no token (mTLS)")
	var clusterKeyFile string
	fs.StringVar(&clusterKeyFile, "cluster-key-file", "", "file holding the raft port's cluster key, at least 32 bytes (one per line: the first signs, all are accepted, for rotation); or EDGE_CLUSTER_KEY")
	fs.StringVar(&c.PeerTLSCert, "peer-tls-cert", "", "PEM certificate of this node for the raft port (instead of --cluster-key-file)")
	fs.StringVar(&c.PeerTLSKey, "peer-tls-key", "", "PEM key for --peer-tls-cert")
	fs.StringVar(&c.PeerTLSCA, "peer-tls-ca", "", "PEM CA bundle that signed every member's --peer-tls-cert")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof on --metrics-addr")
	fs.BoolVar(&c.Dev, "dev", false, "throwaway single node: temporary data dir, bootstrap alone, token optional on loopback")
	fs.DurationVar(&c.RaftTimings.HeartbeatTimeout, "raft-heartbeat-timeout", 0, "raft heartbeat timeout (default 250ms)")
	fs.DurationVar(&c.RaftTimings.ElectionTimeout, "raft-election-timeout", 0, "raft election timeout (default 250ms)")
	fs.DurationVar(&c.RaftTimings.LeaderLeaseTimeout, "raft-leader-lease-timeout", 0, "raft leader lease timeout (default 125ms)")
	fs.DurationVar(&c.RaftTimings.CommitTimeout, "raft-commit-timeout", 0, "raft commit timeout (default 5ms)")
	fs.StringVar(&c.RaftLogLevel, "raft-log-level", "warn", "raft library log level (trace, debug, info, warn, error)")
	fs.DurationVar(&c.ReapNonvotersAfter, "reap-nonvoters-after", 5*time.Minute, "the leader removes a non-voter unreachable this long (0: never); voters are never removed automatically")
	fs.DurationVar(&c.BackupInterval, "backup-interval", 0, "upload a state snapshot to --s3-bucket this often while leading (0: off); an empty new cluster restores the newest one")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 0, "how long SIGTERM waits for in-flight work (default 10s)")
	fs.IntVar(&c.ProxyOptions.MaxIdleConnsPerHost, "upstream-max-idle", 50, "idle keep-alive connections kept per origin")
	fs.DurationVar(&c.ProxyOptions.IdleConnTimeout, "upstream-idle-timeout", 0, "how long an idle origin connection is kept (default 60s)")
	fs.IntVar(&c.ProxyOptions.MaxConns, "max-conns", 0, fmt.Sprintf("cap on client connections open at once, over the HTTP and HTTPS listeners together; more wait in the accept queue (0: %d; negative: no cap)", proxy.DefaultMaxConns))
	fs.StringVar(&c.ProxyOptions.RedisAddr, "redis-addr", "", "Redis for the shared L2 cache (optional): host:port; with --redis-mode cluster or sentinel, a comma-separated list of cluster nodes or of sentinels")
	fs.StringVar(&c.ProxyOptions.RedisMode, "redis-mode", "single", "what --redis-addr is: single (one Redis), cluster (Redis Cluster seed nodes) or sentinel (sentinels; needs --redis-master-name)")
	fs.StringVar(&c.ProxyOptions.RedisMasterName, "redis-master-name", "", "with --redis-mode sentinel: the name the sentinels monitor the primary under")
	fs.StringVar(&c.ProxyOptions.S3Bucket, "s3-bucket", "", "S3 bucket for the L3 cache, certificates and backups (optional)")
	fs.StringVar(&c.ProxyOptions.S3Endpoint, "s3-endpoint", "", "S3 endpoint URL for S3-compatible servers")
	fs.BoolVar(&c.ProxyOptions.S3PathStyle, "s3-path-style", false, "use path-style S3 addressing")
	fs.Int64Var(&c.ProxyOptions.CacheSize, "cache-size", 256<<20, "L1 cache size in bytes")

	// Request bodies (issue 14, item 7).
	fs.DurationVar(&c.ProxyOptions.ClientBodyTimeout, "client-body-timeout", 0, "a client that sends no request-body bytes for this long gets 408 and its origin connection is closed (default 60s, like nginx's client_body_timeout; negative: none)")
	fs.IntVar(&c.ProxyOptions.MaxUploadsPerOrigin, "upstream-max-uploads", 0, "request bodies streaming to one origin at once; more get 503 (default 128; negative: unbounded)")
	fs.BoolVar(&c.ProxyOptions.StandardPaths, "standard-paths", false, "serve everything through net/http's server and http.Transport: no fast path (h1 server, lean origin client, raw socket calls, direct relay); for an incident where one is suspected")
	fs.Int64Var(&c.GCMinHeap, "gc-min-heap", 64<<20, "heap size below which the garbage collector is not run more often (0: Go's default; ignored when GOGC is set)")

	fs.StringVar(&c.ACME.Directory, "acme-directory", "https://acme-v02.api.letsencrypt.org/directory", "ACME directory URL (tests: Pebble's)")
	fs.StringVar(&c.ACME.Email, "acme-email", "", "ACME account contact e-mail")
	fs.StringVar(&c.ACME.CARootFile, "acme-ca-root", "", "PEM file trusted for the ACME server's own TLS (e.g. Pebble's)")
	fs.StringVar(&c.ACME.Challenge, "acme-challenge", "http-01", "ACME challenge: http-01 or tls-alpn-01")
	fs.DurationVar(&c.ACME.RenewBefore, "acme-renew-before", 30*24*time.Hour, "renew certificates this long before they expire")
	fs.DurationVar(&c.ACME.Grace, "cert-grace", 72*time.Hour, "keep serving a removed or suspended tenant's certificate this long")
	var lokiLabels string
	fs.StringVar(&c.LokiURL, "loki-url", "", "Loki push URL (e.g. http://loki:3100/loki/api/v1/push); logs also go to stdout")
	fs.StringVar(&lokiLabels, "loki-labels", "", "extra Loki stream labels, k=v,… (default job=edge,node=<id>)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *showVersion {
		return c, ErrVersion
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		key := "EDGE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(key); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = errors.Join(envErr, fmt.Errorf("%s=%q: %w", key, v, err))
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	switch *role {
	case "voter":
	case "nonvoter":
		c.NonVoter = true
	default:
		return c, fmt.Errorf("--role=%q: want voter or nonvoter", *role)
	}
	if lokiLabels != "" {
		l, err := logship.ParseLabels(lokiLabels)
		if err != nil {
			return c, fmt.Errorf("--loki-labels: %w", err)
		}
		c.LokiLabels = l
	}
	for _, a := range strings.Split(join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Join = append(c.Join, a)
		}
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return c, fmt.Errorf("--admin-token-file: %w", err)
		}
		c.AdminToken, c.AdminTokensAccepted = splitTokens(string(b), "\n")
		if c.AdminToken == "" {
			return c, fmt.Errorf("--admin-token-file %s is empty", tokenFile)
		}
	} else if t := getenv("EDGE_ADMIN_TOKEN"); t != "" {
		c.AdminToken, c.AdminTokensAccepted = splitTokens(t, ",")
	}
	if clusterKeyFile != "" {
		b, err := os.ReadFile(clusterKeyFile)
		if err != nil {
			return c, fmt.Errorf("--cluster-key-file: %w", err)
		}
		if c.ClusterKeys, err = peertls.ParseKeys(string(b)); err != nil {
			return c, fmt.Errorf("--cluster-key-file %s: %w", clusterKeyFile, err)
		}
	} else if k := getenv("EDGE_CLUSTER_KEY"); k != "" {
		var err error
		if c.ClusterKeys, err = peertls.ParseKeys(k); err != nil {
			return c, fmt.Errorf("EDGE_CLUSTER_KEY: %w", err)
		}
	}
	if c.ID == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("--id not given and no host name: %w", err)
		}
		c.ID = h
	}
	if c.Dev {
		if c.DataDir == "" {
			d, err := os.MkdirTemp("", "edged-dev-")
			if err != nil {
				return c, err
			}
			c.DataDir, c.TempDataDir = d, true
		}
		if c.BootstrapExpect == 0 && len(c.Join) == 0 {
			c.BootstrapExpect = 1
		}
	}
	if c.DataDir != "" {
		c.DataDir = filepath.Clean(c.DataDir)
	}
	return c, nil
}

// splitTokens reads admin tokens, one per line in a token file (or comma
// separated in EDGE_ADMIN_TOKEN): the first is the node's own, the others
// are accepted too, so that a token can be rotated without a window in
// which nodes or clients are refused. Blank lines are skipped.
func splitTokens(s, sep string) (own string, accepted []string) {
	for _, t := range strings.Split(s, sep) {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if own == "" {
			own = t
			continue
		}
		accepted = append(accepted, t)
	}
	return own, accepted
}
