package dnscache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Config configures a Resolver. The zero value is usable: every zero field
// takes the default named in its comment.
type Config struct {
	// Nameservers are queried in order, as "ip:port" or "ip" (port 53).
	// Default: the nameservers of ResolvConf.
	Nameservers []string
	// ResolvConf is read when Nameservers is empty. Default /etc/resolv.conf.
	ResolvConf string
	// HostsFile answers names such as localhost. Default /etc/hosts.
	HostsFile string

	// MinTTL is the shortest time an answer is cached (default 5s). It is
	// also the lifetime of hosts-file and negative answers, and the delay
	// before retrying a failed refresh while a stale answer is served.
	MinTTL time.Duration
	// MaxTTL is the longest time an answer is cached (default 5m).
	MaxTTL time.Duration
	// MaxStale is how long past its expiry an answer may still be served
	// while refreshes fail (default 1h).
	MaxStale time.Duration

	// QueryTimeout bounds one query to one nameserver (default 2s).
	QueryTimeout time.Duration
	// DialTimeout bounds each connection attempt made by DialContext
	// (default 5s). The caller's context bounds the whole dial.
	DialTimeout time.Duration

	// Now is the clock; tests inject one. Default time.Now.
	Now func() time.Time
	// Logger receives stale-answer warnings. Default: discard.
	Logger *slog.Logger
}

// Resolver is a caching resolver. It is safe for concurrent use.
type Resolver struct {
	cfg         Config
	nameservers []string
	log         *slog.Logger
	dialer      net.Dialer
	udp, tcp    dns.Client
	flight      singleflight.Group

	mu    sync.RWMutex
	cache map[string]*entry

	hostsMu sync.Mutex
	hosts   hostsTable
}

// entry is one cached answer. Entries are immutable once stored.
type entry struct {
	addrs      []netip.Addr
	err        error     // a negative answer (no such host)
	expires    time.Time // served without refresh until then
	staleUntil time.Time // served when refreshes fail until then
}

// New returns a Resolver. It fails only when no nameserver is configured and
// ResolvConf cannot be read.
func New(cfg Config) (*Resolver, error) {
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.HostsFile == "" {
		cfg.HostsFile = "/etc/hosts"
	}
	if cfg.MinTTL <= 0 {
		cfg.MinTTL = 5 * time.Second
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = 5 * time.Minute
	}
	if cfg.MaxTTL < cfg.MinTTL {
		cfg.MaxTTL = cfg.MinTTL
	}
	if cfg.MaxStale <= 0 {
		cfg.MaxStale = time.Hour
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 2 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	servers := make([]string, 0, len(cfg.Nameservers))
	for _, s := range cfg.Nameservers {
		servers = append(servers, withPort(s, "53"))
	}
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("dnscache: read nameservers: %w", err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, withPort(s, cc.Port))
		}
		if len(servers) == 0 {
			return nil, fmt.Errorf("dnscache: no nameserver in %s", cfg.ResolvConf)
		}
	}
	r := &Resolver{
		cfg:         cfg,
		nameservers: servers,
		log:         log,
		dialer:      net.Dialer{KeepAlive: 30 * time.Second},
		udp:         dns.Client{Net: "udp", Timeout: cfg.QueryTimeout, UDPSize: 1232},
		tcp:         dns.Client{Net: "tcp", Timeout: cfg.QueryTimeout},
		cache:       make(map[string]*entry),
	}
	r.hosts.path = cfg.HostsFile
	return r, nil
}

func withPort(s, port string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	if port == "" {
		port = "53"
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), port)
}

// LookupHost returns the addresses of host, IPv4 first, from the cache when
// the answer is fresh. An IP literal is returned as is. A name that does not
// exist gives a *net.DNSError with IsNotFound set.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if looksLikeIP(host) {
		if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			return []netip.Addr{ip.Unmap()}, nil
		}
	}
	name := normalize(host)
	if name == "" {
		return nil, &net.DNSError{Err: "empty host name", Name: host, IsNotFound: true}
	}
	r.mu.RLock()
	e := r.cache[name]
	r.mu.RUnlock()
	if e != nil && r.cfg.Now().Before(e.expires) {
		return e.addrs, e.err
	}
	ch := r.flight.DoChan(name, func() (any, error) { return r.refresh(name) })
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		e := res.Val.(*entry)
		return e.addrs, e.err
	case <-ctx.Done():
		return nil, &net.DNSError{Err: ctx.Err().Error(), Name: name,
			IsTimeout: errors.Is(ctx.Err(), context.DeadlineExceeded), UnwrapErr: ctx.Err()}
	}
}

// refresh resolves name and stores the outcome. It runs once per name at a
// time (singleflight) and is not cancelled by any one caller.
func (r *Resolver) refresh(name string) (*entry, error) {
	now := r.cfg.Now()
	r.mu.RLock()
	old := r.cache[name]
	r.mu.RUnlock()
	if old != nil && now.Before(old.expires) {
		return old, nil // refreshed by a flight that just ended
	}

	addrs, ttl, err := r.resolve(name)
	var e *entry
	var nf *net.DNSError
	switch {
	case err == nil:
		ttl = min(max(ttl, r.cfg.MinTTL), r.cfg.MaxTTL)
		e = &entry{addrs: addrs, expires: now.Add(ttl), staleUntil: now.Add(ttl + r.cfg.MaxStale)}
	case errors.As(err, &nf) && nf.IsNotFound:
		e = &entry{err: err, expires: now.Add(r.cfg.MinTTL)}
	case old != nil && old.err == nil && now.Before(old.staleUntil):
		r.log.Warn("dns refresh failed, serving stale answer",
			"host", name, "err", err, "addrs", old.addrs,
			"expired_ago", now.Sub(old.expires).Round(time.Millisecond))
		e = &entry{addrs: old.addrs, expires: now.Add(r.cfg.MinTTL), staleUntil: old.staleUntil}
	default:
		return nil, err // nothing to fall back to; not cached, the next dial retries
	}
	r.mu.Lock()
	r.cache[name] = e
	r.mu.Unlock()
	return e, nil
}

// resolve answers name from the hosts file, the system resolver (single
// labels) or the nameservers, with the TTL to cache the answer for.
func (r *Resolver) resolve(name string) ([]netip.Addr, time.Duration, error) {
	if addrs := r.lookupHostsFile(name); len(addrs) > 0 {
		return addrs, r.cfg.MinTTL, nil
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") { // RFC 6761
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}, r.cfg.MinTTL, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.QueryTimeout*time.Duration(len(r.nameservers)+1))
	defer cancel()
	if !strings.Contains(name, ".") {
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
		if err != nil {
			return nil, 0, err
		}
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
		return addrs, r.cfg.MinTTL, nil
	}
	return r.query(ctx, name)
}

// answer is the outcome of one query type against one nameserver.
type answer struct {
	addrs []netip.Addr
	ttl   uint32
	rcode int
	err   error
}

// query asks the nameservers in order for A and AAAA records (in parallel),
// moving to the next nameserver when one fails. TTL is the smallest TTL of
// the answer records, CNAMEs included.
func (r *Resolver) query(ctx context.Context, name string) ([]netip.Addr, time.Duration, error) {
	fqdn := dns.Fqdn(name)
	var lastErr error
	for _, ns := range r.nameservers {
		var a6 answer
		done := make(chan struct{})
		go func() {
			a6 = r.exchange(ctx, ns, fqdn, dns.TypeAAAA)
			close(done)
		}()
		a4 := r.exchange(ctx, ns, fqdn, dns.TypeA)
		<-done

		addrs := append(a4.addrs, a6.addrs...)
		if len(addrs) > 0 { // one family answering is enough
			ttl := uint32(1<<32 - 1)
			for _, a := range []answer{a4, a6} {
				if len(a.addrs) > 0 {
					ttl = min(ttl, a.ttl)
				}
			}
			return addrs, time.Duration(ttl) * time.Second, nil
		}
		if a4.err == nil && a6.err == nil { // NXDOMAIN or no records of either type
			return nil, 0, &net.DNSError{Err: "no such host", Name: name, Server: ns, IsNotFound: true}
		}
		lastErr = errors.Join(a4.err, a6.err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, 0, &net.DNSError{Err: lastErr.Error(), Name: name, IsTemporary: true,
		IsTimeout: isTimeout(lastErr), UnwrapErr: lastErr}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// exchange sends one query, over TCP if the UDP answer was truncated. err is
// nil for NOERROR and NXDOMAIN, which are answers; anything else is a failure.
func (r *Resolver) exchange(ctx context.Context, ns, fqdn string, qtype uint16) answer {
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype)
	m.SetEdns0(1232, false)
	resp, _, err := r.udp.ExchangeContext(ctx, m, ns)
	if err == nil && resp.Truncated {
		resp, _, err = r.tcp.ExchangeContext(ctx, m, ns)
	}
	if err != nil {
		return answer{err: fmt.Errorf("query %s %s at %s: %w", dns.TypeToString[qtype], fqdn, ns, err)}
	}
	if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
		return answer{rcode: resp.Rcode, err: fmt.Errorf("query %s %s at %s: %s",
			dns.TypeToString[qtype], fqdn, ns, dns.RcodeToString[resp.Rcode])}
	}
	a := answer{rcode: resp.Rcode, ttl: 1<<32 - 1}
	for _, rr := range resp.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			if ip, ok := netip.AddrFromSlice(rr.A.To4()); ok {
				a.addrs = append(a.addrs, ip)
			}
		case *dns.AAAA:
			if ip, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok {
				a.addrs = append(a.addrs, ip)
			}
		case *dns.CNAME:
		default:
			continue
		}
		a.ttl = min(a.ttl, rr.Header().Ttl)
	}
	if len(a.addrs) == 0 {
		a.ttl = 0
	}
	return a
}

// DialContext dials address ("host:port") like net.Dialer.DialContext,
// resolving host through the cache and trying its addresses in order, each
// attempt bounded by DialTimeout. It suits http.Transport.DialContext.
func (r *Resolver) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		p, lerr := net.DefaultResolver.LookupPort(ctx, network, portStr)
		if lerr != nil {
			return nil, fmt.Errorf("dial %s: %w", address, lerr)
		}
		port = uint64(p)
	}
	addrs, err := r.LookupHost(ctx, host)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	var lastErr error
	tried := 0
	for _, a := range addrs {
		if (strings.HasSuffix(network, "4") && !a.Is4()) || (strings.HasSuffix(network, "6") && !a.Is6()) {
			continue
		}
		tried++
		dctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
		c, err := r.dialer.DialContext(dctx, network, netip.AddrPortFrom(a, uint16(port)).String())
		cancel()
		if err == nil {
			return c, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	switch {
	case tried == 0:
		return nil, &net.OpError{Op: "dial", Net: network,
			Err: &net.DNSError{Err: "no address for network " + network, Name: host, IsNotFound: true}}
	case tried == 1:
		return nil, lastErr
	default:
		return nil, fmt.Errorf("dial %s: %d addresses failed, last: %w", address, tried, lastErr)
	}
}

// looksLikeIP reports whether host may be an IP literal: it has a colon or
// ends in a digit (no top-level domain is numeric). It keeps ParseAddr, whose
// error allocates, off the path of ordinary names.
func looksLikeIP(host string) bool {
	if host == "" {
		return false
	}
	c := host[len(host)-1]
	return (c >= '0' && c <= '9') || strings.IndexByte(host, ':') >= 0
}

// normalize lowercases host and drops a trailing dot.
func normalize(host string) string {
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
