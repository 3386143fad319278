package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/acme"
	"golang.org/x/sync/singleflight"
)

// Store is the replicated KV space (raftstore's CmdKVPut/CmdKVDelete).
// Reads are local memory reads; writes go through the leader and return
// once applied there.
type Store interface {
	// Get returns the value under key and its version (the raft index of
	// its last write).
	Get(key string) (value []byte, version uint64, ok bool)
	// Keys returns the keys that start with prefix, sorted.
	Keys(prefix string) []string
	// Put writes key, fenced by term: the write is rejected if the key was
	// written in a later term.
	Put(ctx context.Context, key string, value []byte, term uint64) error
	// Delete removes key, fenced by term like Put. Deleting a missing key
	// is not an error.
	Delete(ctx context.Context, key string, term uint64) error
}

// Licenses is the in-process license check: host belongs to a tenant and
// its license is active.
type Licenses interface {
	Active(host string) bool
}

// Leadership tells whether this node leads and in which raft term.
// *raftstore.Store implements it.
type Leadership interface {
	IsLeader() bool
	Term() uint64
}

// Forwarder asks the leader to obtain a certificate for host and returns
// once the leader has stored it (the leader's Manager.Ensure).
type Forwarder interface {
	RequestCertificate(ctx context.Context, host string) error
}

// Errors.
var (
	ErrNotLeader          = errors.New("certs: not the leader")
	ErrNotLicensed        = errors.New("certs: no tenant with an active license for this name")
	ErrNotFound           = errors.New("certs: no certificate stored")
	ErrInvalidCertificate = errors.New("certs: invalid certificate")
	ErrBackoff            = errors.New("certs: backing off after a failed order")
	ErrRateLimited        = errors.New("certs: order budget for this interval is spent")
	ErrImported           = errors.New("certs: imported certificates are not renewed by ACME")
)

// Challenge types.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// LetsEncrypt is the default ACME directory (production).
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// ALPNProto is the protocol a TLS listener must list in NextProtos to
// answer TLS-ALPN-01 challenges.
const ALPNProto = acme.ALPNProto

// Config configures a Manager. Zero values take the documented defaults.
type Config struct {
	Store      Store      // required
	Licenses   Licenses   // required
	Leadership Leadership // required
	// Forwarder lets a follower have the leader order a certificate; nil
	// means followers only serve what is already stored.
	Forwarder Forwarder
	// Mirror keeps a copy of every certificate (e.g. S3); nil disables.
	Mirror Mirror

	DirectoryURL string // ACME directory; default LetsEncrypt
	Email        string // ACME account contact
	// CARoot is PEM trusted, in addition to the system roots, for the ACME
	// server's own TLS (Pebble's certificate in tests).
	CARoot []byte
	// HTTPClient talks to the ACME server; default built from CARoot.
	HTTPClient *http.Client
	Challenge  string // http-01 (default) or tls-alpn-01

	RenewBefore   time.Duration // renew this long before expiry; default 30 days
	Grace         time.Duration // serve a retired tenant's certificate this long; default 72 h
	CheckInterval time.Duration // renewal loop period; default 10 min
	MaxOrders     int           // new orders per OrderInterval; default 100
	OrderInterval time.Duration // default 1 h
	BackoffBase   time.Duration // first retry delay after a failure; default 1 min
	BackoffMax    time.Duration // default 24 h
	OrderTimeout  time.Duration // one order end to end; default 2 min
	// ForwardTimeout bounds how long a handshake waits for an on-demand
	// certificate (on the leader or through the Forwarder); default 30 s.
	ForwardTimeout time.Duration
	NegativeTTL    time.Duration // default 10 s
	NegativeSize   int           // default 10,000 names

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (c *Config) defaults() error {
	if c.Store == nil || c.Licenses == nil || c.Leadership == nil {
		return errors.New("certs: Store, Licenses and Leadership are required")
	}
	switch c.Challenge {
	case "":
		c.Challenge = ChallengeHTTP01
	case ChallengeHTTP01, ChallengeTLSALPN01:
	default:
		return fmt.Errorf("certs: unknown ACME challenge %q (want %s or %s)", c.Challenge, ChallengeHTTP01, ChallengeTLSALPN01)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.DirectoryURL == "" {
		c.DirectoryURL = LetsEncrypt
	}
	def(&c.RenewBefore, 30*24*time.Hour)
	def(&c.Grace, 72*time.Hour)
	def(&c.CheckInterval, 10*time.Minute)
	def(&c.OrderInterval, time.Hour)
	def(&c.BackoffBase, time.Minute)
	def(&c.BackoffMax, 24*time.Hour)
	def(&c.OrderTimeout, 2*time.Minute)
	def(&c.ForwardTimeout, 30*time.Second)
	def(&c.NegativeTTL, 10*time.Second)
	if c.MaxOrders <= 0 {
		c.MaxOrders = 100
	}
	if c.NegativeSize <= 0 {
		c.NegativeSize = 10000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Manager chooses certificates for handshakes and obtains them. It is safe
// for concurrent use.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	neg     *negCache
	limiter *limiter
	acme    *acmeClient

	mu    sync.RWMutex
	cache map[string]*entry // parsed certificates by store key

	handshakes singleflight.Group // per name, on this node
	orders     singleflight.Group // per domain, on the leader

	restoredTerm uint64 // term in which the empty-store restore ran (Run's goroutine only)
}

// entry is a parsed certificate for one stored version.
type entry struct {
	key           string // store key, kept so a lookup allocates nothing
	version       uint64
	cert          *tls.Certificate // nil while no certificate is stored
	notAfter      time.Time
	notBefore     time.Time
	inactiveSince time.Time
}

// New builds a Manager.
func New(cfg Config) (*Manager, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		var err error
		if hc, err = acmeHTTPClient(cfg.CARoot); err != nil {
			return nil, err
		}
	}
	m := &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		neg:     newNegCache(cfg.NegativeSize, cfg.NegativeTTL),
		limiter: newLimiter(cfg.MaxOrders, cfg.OrderInterval),
		cache:   map[string]*entry{},
	}
	m.acme = &acmeClient{m: m, hc: hc}
	var err error
	if m.metrics, err = newMetrics(cfg.Registerer, m); err != nil {
		return nil, err
	}
	return m, nil
}

// TLSConfig returns a server configuration that takes its certificates
// from m, offers nextProtos (plus the TLS-ALPN-01 protocol when that is
// the configured challenge) and keeps TLS session resumption on
// (crypto/tls issues session tickets by default, with keys rotated
// automatically).
func (m *Manager) TLSConfig(nextProtos ...string) *tls.Config {
	protos := append([]string(nil), nextProtos...)
	if m.cfg.Challenge == ChallengeTLSALPN01 {
		protos = append(protos, ALPNProto)
	}
	return &tls.Config{
		GetCertificate: m.GetCertificate,
		NextProtos:     protos,
		MinVersion:     tls.VersionTLS12,
	}
}

// GetCertificate implements tls.Config.GetCertificate. It serves a stored
// certificate for the SNI name (exact, then wildcard), otherwise obtains
// one for a licensed name, otherwise fails at once.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name, err := NormalizeDomain(hello.ServerName, false)
	if err != nil {
		m.metrics.handshake(resultRejected)
		return nil, fmt.Errorf("certs: %w", err)
	}
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
		return m.challengeCert(hello, name)
	}
	now := time.Now()
	if c := m.stored(name, now); c != nil {
		m.metrics.handshake(resultStored)
		return c, nil
	}
	if m.neg.has(name, now) {
		m.metrics.handshake(resultRejected)
		return nil, fmt.Errorf("certs: no certificate for %q", name)
	}
	if !m.cfg.Licenses.Active(name) {
		m.neg.add(name, now)
		m.metrics.handshake(resultRejected)
		return nil, fmt.Errorf("certs: no certificate for %q", name)
	}
	hctx := hello.Context()
	if hctx == nil {
		hctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(hctx, m.cfg.ForwardTimeout)
	defer cancel()
	c, err := m.onDemand(ctx, name)
	if err != nil {
		m.neg.add(name, time.Now())
		m.metrics.handshake(resultFailed)
		m.log.Warn("on-demand certificate failed", "domain", name, "err", err)
		return nil, err
	}
	m.metrics.handshake(resultIssued)
	return c, nil
}

// Certificate returns the certificate a handshake for serverName would be
// served from the store now (exact name, then wildcard), or nil. Unlike
// GetCertificate it never orders one and touches nothing but memory: the
// proxy calls it for resumed TLS sessions, which skip GetCertificate, to
// learn which names the connection's certificate covers (its 421 check).
func (m *Manager) Certificate(serverName string) *tls.Certificate {
	name, err := NormalizeDomain(serverName, false)
	if err != nil {
		return nil
	}
	return m.stored(name, time.Now())
}

// onDemand obtains a certificate for a licensed name: ordered here on the
// leader, through the Forwarder on a follower, then served from the store.
// Concurrent handshakes for the same name share one attempt.
func (m *Manager) onDemand(ctx context.Context, name string) (*tls.Certificate, error) {
	ch := m.handshakes.DoChan(name, func() (any, error) {
		// Detached from the first handshake: its client may go away while
		// others still wait.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.ForwardTimeout)
		defer cancel()
		if m.cfg.Leadership.IsLeader() {
			if err := m.order(ctx, name, modeOnDemand); err != nil {
				return nil, err
			}
		} else if m.cfg.Forwarder != nil {
			if err := m.cfg.Forwarder.RequestCertificate(ctx, name); err != nil {
				return nil, fmt.Errorf("certs: ask the leader for %s: %w", name, err)
			}
		} else {
			return nil, fmt.Errorf("certs: %s: %w and cannot reach the leader", name, ErrNotLeader)
		}
		return m.waitStored(ctx, name)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*tls.Certificate), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("certs: waiting for a certificate for %s: %w", name, ctx.Err())
	}
}

// waitStored polls the local store until name's certificate has been
// applied here (a follower applies a moment after the leader).
func (m *Manager) waitStored(ctx context.Context, name string) (*tls.Certificate, error) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if c := m.stored(name, time.Now()); c != nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("certs: certificate for %s not visible on this node: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// stored returns a servable stored certificate for name (exact, then
// wildcard) or nil.
func (m *Manager) stored(name string, now time.Time) *tls.Certificate {
	if c := m.lookup(name, now); c != nil {
		return c
	}
	if w := wildcardOf(name); w != "" {
		return m.lookup(w, now)
	}
	return nil
}

// lookup returns the stored certificate for domain if it can be served at
// now. The parsed form is cached per stored version.
func (m *Manager) lookup(domain string, now time.Time) *tls.Certificate {
	m.mu.RLock()
	e := m.cache[domain]
	m.mu.RUnlock()
	var key string
	if e != nil {
		key = e.key
	} else {
		key = certPrefix + domain
	}
	val, version, ok := m.cfg.Store.Get(key)
	if !ok {
		if e != nil {
			m.mu.Lock()
			delete(m.cache, domain)
			m.mu.Unlock()
		}
		return nil
	}
	if e == nil || e.version != version {
		e = m.parse(domain, val, version)
		e.key = key
		m.mu.Lock()
		if cur := m.cache[domain]; cur == nil || cur.version < version {
			m.cache[domain] = e
		}
		m.mu.Unlock()
	}
	if e.cert == nil || !now.Before(e.notAfter) || now.Before(e.notBefore) {
		return nil
	}
	if !e.inactiveSince.IsZero() && now.Sub(e.inactiveSince) > m.cfg.Grace {
		return nil
	}
	return e.cert
}

func (m *Manager) parse(domain string, val []byte, version uint64) *entry {
	e := &entry{version: version}
	r, err := decodeRecord(val)
	if err != nil {
		m.log.Error("unreadable certificate record", "domain", domain, "err", err)
		return e
	}
	e.inactiveSince = r.InactiveSince
	if len(r.CertPEM) == 0 {
		return e
	}
	c, err := parseKeyPair(r.CertPEM, r.KeyPEM)
	if err != nil {
		m.log.Error("unusable stored certificate", "domain", domain, "err", err)
		return e
	}
	e.cert, e.notAfter, e.notBefore = c, c.Leaf.NotAfter, c.Leaf.NotBefore
	return e
}

// challengeCert answers a TLS-ALPN-01 validation from the replicated store,
// so it works on whichever node the CA reaches. Only a licensed name with
// tls-alpn-01 configured gets that far: for any other hello the wait for
// the challenge key would be an unauthenticated way to hold a handshake
// open for challengeWait, so it fails at once.
func (m *Manager) challengeCert(hello *tls.ClientHelloInfo, name string) (*tls.Certificate, error) {
	if m.cfg.Challenge != ChallengeTLSALPN01 || !m.cfg.Licenses.Active(name) {
		m.metrics.handshake(resultRejected)
		return nil, fmt.Errorf("certs: no TLS-ALPN-01 challenge for %q", name)
	}
	ctx := hello.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	val, ok := m.waitKey(ctx, acmePrefix+name+"+token")
	if !ok {
		m.metrics.handshake(resultRejected)
		return nil, fmt.Errorf("certs: no TLS-ALPN-01 challenge for %q", name)
	}
	c, err := tls.X509KeyPair(val, val)
	if err != nil {
		m.metrics.handshake(resultFailed)
		return nil, fmt.Errorf("certs: challenge certificate for %q: %w", name, err)
	}
	m.metrics.handshake(resultChallenge)
	return &c, nil
}

// waitKey reads key, waiting up to challengeWait for it to be applied on
// this node: the CA may reach a follower right after the leader stored the
// challenge.
func (m *Manager) waitKey(ctx context.Context, key string) ([]byte, bool) {
	deadline := time.Now().Add(challengeWait)
	for {
		if v, _, ok := m.cfg.Store.Get(key); ok {
			return v, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const challengeWait = 2 * time.Second

// HTTPHandler answers ACME HTTP-01 validations (/.well-known/acme-challenge/)
// for licensed hosts from the replicated store and passes every other
// request to fallback (404 if nil).
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = http.NotFoundHandler()
	}
	const prefix = "/.well-known/acme-challenge/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.URL.Path) <= len(prefix) || r.URL.Path[:len(prefix)] != prefix {
			fallback.ServeHTTP(w, r)
			return
		}
		token := r.URL.Path[len(prefix):]
		host, err := NormalizeDomain(stripPort(r.Host), false)
		if err != nil || !validToken(token) {
			http.Error(w, "invalid challenge request", http.StatusBadRequest)
			return
		}
		if !m.cfg.Licenses.Active(host) {
			http.Error(w, "unknown host", http.StatusForbidden)
			return
		}
		val, ok := m.waitKey(r.Context(), acmePrefix+token+"+http-01")
		if !ok {
			http.Error(w, "no such challenge", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(val)
	})
}

func stripPort(hostport string) string {
	if i := lastColon(hostport); i >= 0 && hostport[len(hostport)-1] != ']' {
		return hostport[:i]
	}
	return hostport
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
		if s[i] == ']' {
			return -1
		}
	}
	return -1
}

// validToken reports whether t is a base64url ACME token.
func validToken(t string) bool {
	if t == "" || len(t) > 256 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// load returns the stored record for domain.
func (m *Manager) load(domain string) (*record, uint64, error) {
	val, version, ok := m.cfg.Store.Get(certPrefix + domain)
	if !ok {
		return nil, 0, ErrNotFound
	}
	r, err := decodeRecord(val)
	if err != nil {
		return nil, 0, err
	}
	return r, version, nil
}

// save writes r fenced by term.
func (m *Manager) save(ctx context.Context, r *record, term uint64) error {
	r.UpdatedAt = time.Now().UTC()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode certificate record %s: %w", r.Domain, err)
	}
	if err := m.cfg.Store.Put(ctx, certPrefix+r.Domain, b, term); err != nil {
		return fmt.Errorf("store certificate record %s: %w", r.Domain, err)
	}
	return nil
}

// leaderTerm returns the current term if this node leads.
func (m *Manager) leaderTerm() (uint64, error) {
	if !m.cfg.Leadership.IsLeader() {
		return 0, ErrNotLeader
	}
	return m.cfg.Leadership.Term(), nil
}

// Get describes the certificate stored for domain.
func (m *Manager) Get(domain string) (Info, error) {
	d, err := NormalizeDomain(domain, true)
	if err != nil {
		return Info{}, err
	}
	r, v, err := m.load(d)
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", d, err)
	}
	return r.info(v), nil
}

// List describes the stored certificates ordered by domain. With
// expiringWithin > 0 only those that expire within it (or have none yet)
// are listed.
func (m *Manager) List(expiringWithin time.Duration) []Info {
	keys := m.cfg.Store.Keys(certPrefix)
	out := make([]Info, 0, len(keys))
	limit := time.Now().Add(expiringWithin)
	for _, k := range keys {
		r, v, err := m.load(k[len(certPrefix):])
		if err != nil {
			continue
		}
		if expiringWithin > 0 && !r.NotAfter.IsZero() && r.NotAfter.After(limit) {
			continue
		}
		out = append(out, r.info(v))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out
}

// Ensure makes sure a certificate for a licensed host is stored, placing
// an order if none is (leader only). It is what a follower's Forwarder
// calls on the leader.
func (m *Manager) Ensure(ctx context.Context, host string) error {
	d, err := NormalizeDomain(host, false)
	if err != nil {
		return err
	}
	if !m.cfg.Licenses.Active(d) {
		return fmt.Errorf("%s: %w", d, ErrNotLicensed)
	}
	if c := m.stored(d, time.Now()); c != nil {
		return nil
	}
	return m.order(ctx, d, modeOnDemand)
}

// Issue orders a certificate for a licensed domain now, ignoring backoff
// and pacing, unless a valid one is stored (leader only).
func (m *Manager) Issue(ctx context.Context, domain string) (Info, error) {
	return m.operatorOrder(ctx, domain, modeIssue)
}

// Renew places a new order for domain even if its certificate is still
// valid (leader only). The current certificate is served until the new
// one is stored.
func (m *Manager) Renew(ctx context.Context, domain string) (Info, error) {
	return m.operatorOrder(ctx, domain, modeRenew)
}

func (m *Manager) operatorOrder(ctx context.Context, domain string, mode orderMode) (Info, error) {
	d, err := NormalizeDomain(domain, false)
	if err != nil {
		return Info{}, err
	}
	if _, err := m.leaderTerm(); err != nil {
		return Info{}, err
	}
	if !m.cfg.Licenses.Active(d) {
		return Info{}, fmt.Errorf("%s: %w", d, ErrNotLicensed)
	}
	if err := m.order(ctx, d, mode); err != nil {
		return Info{}, err
	}
	return m.Get(d)
}

// Import stores a certificate the customer supplies for domain (which may
// be a wildcard "*.example.com") after checking that it parses, the key
// matches, it covers domain and it is valid now (leader only).
func (m *Manager) Import(ctx context.Context, domain string, certPEM, keyPEM []byte) (Info, error) {
	d, err := NormalizeDomain(domain, true)
	if err != nil {
		return Info{}, err
	}
	term, err := m.leaderTerm()
	if err != nil {
		return Info{}, err
	}
	c, err := ValidateKeyPair(d, certPEM, keyPEM, time.Now())
	if err != nil {
		return Info{}, err
	}
	r := &record{Domain: d, Source: SourceImported}
	r.setCert(encodeChain(c.Certificate), keyPEM, c.Leaf)
	if err := m.save(ctx, r, term); err != nil {
		return Info{}, err
	}
	m.mirrorPut(ctx, r)
	m.neg.remove(d)
	return m.Get(d)
}

// Remove deletes the certificate stored for domain (and its mirror copy).
// A licensed domain gets a new certificate on its next handshake.
func (m *Manager) Remove(ctx context.Context, domain string) error {
	d, err := NormalizeDomain(domain, true)
	if err != nil {
		return err
	}
	term, err := m.leaderTerm()
	if err != nil {
		return err
	}
	if _, _, ok := m.cfg.Store.Get(certPrefix + d); !ok {
		return fmt.Errorf("%s: %w", d, ErrNotFound)
	}
	return m.remove(ctx, d, term)
}

func (m *Manager) remove(ctx context.Context, d string, term uint64) error {
	if err := m.cfg.Store.Delete(ctx, certPrefix+d, term); err != nil {
		return fmt.Errorf("remove certificate %s: %w", d, err)
	}
	if m.cfg.Mirror != nil {
		if err := m.cfg.Mirror.Delete(ctx, d); err != nil {
			m.log.Warn("mirror delete failed", "domain", d, "err", err)
		}
	}
	return nil
}

// leafOf parses the leaf of a DER chain.
func leafOf(der [][]byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	return x509.ParseCertificate(der[0])
}
