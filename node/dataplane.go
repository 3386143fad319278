package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgeproxy/edge/proxy"
	"github.com/edgeproxy/edge/proxy/accesslog"
	"github.com/edgeproxy/edge/proxy/cache"
	"github.com/edgeproxy/edge/proxy/compress"
	"github.com/edgeproxy/edge/proxy/dnscache"
	"github.com/edgeproxy/edge/proxy/upstream"
)

// dataPlane is the proxy side of a node: origin pools, the handler and
// the client-facing listeners. It reads tenants straight from the store's
// published View, so a change applied by raft is live on the next request.
//
// newDataPlane pushes a release on the node's closers for each part that
// holds something (closers.go), so shutdown runs them in reverse: the
// server drains, then the cache closes (its revalidations use the pools),
// then the pools close their idle origin connections.
type dataPlane struct {
	pools  *upstream.Pools
	ups    *proxy.PoolUpstreams
	server *proxy.Server
}

func (n *Node) newDataPlane(reg *prometheus.Registry) (*dataPlane, error) {
	if n.cfg.HTTPAddr == "" && n.cfg.HTTPSAddr == "" {
		return nil, nil
	}
	log := n.logger.With("component", "proxy")
	resolver, err := dnscache.New(dnscache.Config{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("dns cache: %w", err)
	}
	po := n.cfg.ProxyOptions
	if po.StandardPaths {
		log.Warn("fast paths off (--standard-paths): plain HTTP served by net/http, origins through http.Transport, no raw socket calls, no direct relay")
	}
	pools, err := upstream.New(upstream.Config{
		MaxIdleConnsPerHost: po.MaxIdleConnsPerHost,
		IdleConnTimeout:     po.IdleConnTimeout,
		MaxUploadsPerOrigin: po.MaxUploadsPerOrigin,
		DisableLeanHTTP1:    po.StandardPaths,
		DialContext:         resolver.DialContext,
		Logger:              log,
		Registerer:          reg,
	})
	if err != nil {
		return nil, fmt.Errorf("upstream pools: %w", err)
	}
	n.closers.push("origin pools", func(context.Context) error { pools.Close(); return nil })
	cc := cache.Config{MaxBytes: po.CacheSize, Logger: log.With("component", "cache"), Registerer: reg}
	if cc.Redis, err = po.redisConfig(); err != nil {
		return nil, err
	}
	if po.S3Bucket != "" {
		cc.S3 = &cache.S3Config{Bucket: po.S3Bucket, Endpoint: po.S3Endpoint, PathStyle: po.S3PathStyle}
	}
	if n.cache, err = cache.New(cc); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	n.closers.push("cache", func(context.Context) error { return n.cache.Close() })
	comp, err := compress.New(compress.Config{})
	if err != nil {
		return nil, fmt.Errorf("compression: %w", err)
	}
	// The access line skips slog but keeps the shape n.logger's "node" and
	// "component" attributes give it, and still reaches Loki.
	var access *accesslog.Writer
	if lw := n.cfg.LogWriter; lw != nil {
		var tee func([]byte)
		if n.shipper != nil {
			tee = n.shipper.Ship
		}
		access = lw.With([]accesslog.Field{{Key: "node", Value: n.cfg.ID}, {Key: "component", Value: "proxy"}}, tee)
	}
	ups := proxy.NewPoolUpstreams(pools)
	tr := proxy.NewTransformer(log, reg)
	direct := &proxy.DirectConfig{Untransformed: tr.Untransformed, Compressor: comp}
	if po.StandardPaths {
		direct = nil
	}
	h, err := proxy.New(proxy.Config{
		Stages:       []proxy.Stage{tr.Stage()},
		Variant:      tr.Variant,
		Routes:       n.store,
		Upstreams:    ups,
		Cache:        n.cache,
		WrapWriter:   proxy.CompressWriter(comp),
		DecodeOrigin: proxy.CompressDecoder(comp),
		Direct:       direct,
		IsTimeout:    upstream.IsTimeout,
		ErrorReason:  upstream.Reason,
		Logger:       log,
		AccessLog:    access,
		Registerer:   reg,

		ClientBodyTimeout: po.ClientBodyTimeout,
	})
	if err != nil {
		return nil, err
	}
	// Certificates: stored ones first, on-demand ACME for licensed domains
	// (proxy/certs). The plain-HTTP side answers ACME HTTP-01 challenges
	// for licensed hosts before the proxy sees the request.
	if n.certMgr, err = n.newCertManager(reg); err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	srv, err := proxy.NewServer(proxy.ServerConfig{
		HTTPAddr:  n.cfg.HTTPAddr,
		HTTPSAddr: n.cfg.HTTPSAddr,
		Handler:   n.certMgr.HTTPHandler(h),
		// The proxy handler recovers its own panics; the challenge
		// handler in front of it is a few map reads.
		HandlerRecovers: true,
		GetCertificate:  n.certMgr.GetCertificate,
		TLSConfig:       n.certMgr.TLSConfig("h2", "http/1.1"),
		// Resumed sessions: the stored certificate for their SNI, never
		// an order from the request path (the proxy's 421 check).
		LookupCertificate: n.certMgr.Certificate,
		MaxConns:          po.MaxConns,
		Logger:            log,
		Registerer:        reg,
		StandardPaths:     po.StandardPaths,
	})
	if err != nil {
		return nil, err
	}
	n.closers.push("proxy", srv.Shutdown)
	return &dataPlane{pools: pools, ups: ups, server: srv}, nil
}

// HTTPAddr is the bound plain-HTTP proxy address, or "".
func (n *Node) HTTPAddr() string {
	if n.dp == nil {
		return ""
	}
	return addrString(n.dp.server.HTTPAddr())
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// HTTPSAddr is the bound TLS proxy address, or "".
func (n *Node) HTTPSAddr() string {
	if n.dp == nil {
		return ""
	}
	return addrString(n.dp.server.HTTPSAddr())
}

// MetricsAddr is the bound metrics address, or "".
func (n *Node) MetricsAddr() string {
	if n.metricsLn == nil {
		return ""
	}
	return n.metricsLn.Addr().String()
}

// newMetricsServer binds --metrics-addr for /metrics, /healthz and
// /readyz (and pprof with --pprof); Run serves it.
func (n *Node) newMetricsServer(reg *prometheus.Registry) error {
	if n.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", n.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := n.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	if n.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.metrics, n.metricsLn = srv, ln
	n.closers.push("metrics listener", func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		ln.Close() // Shutdown closes only what Serve was given
		return err
	})
	return nil
}

// ready reports whether this node should receive traffic: it is in a
// cluster with a known leader and has applied everything it knows to be
// committed.
//
// Once ready, a node stays ready when it later loses sight of the leader:
// it still holds the last replicated state and serves from it, which is
// better for clients than dropping every pod out of the Service during a
// control-plane outage.
func (n *Node) ready() error {
	if n.wasReady.Load() {
		return nil
	}
	r := n.store.Raft()
	if _, id := n.store.Leader(); id == "" {
		return errors.New("no leader known")
	}
	if applied, commit := r.AppliedIndex(), r.CommitIndex(); applied < commit || commit == 0 {
		return fmt.Errorf("catching up: applied %d of %d", applied, commit)
	}
	n.wasReady.Store(true)
	return nil
}

func newRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// edge_build_info is 1, labelled with what runs: a dashboard joins it
	// to other series to see which node runs which build mid-rollout.
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "edge_build_info",
		Help:        "Always 1; the labels say which build this node runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	}, func() float64 { return 1 }))
	return reg
}
