package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

type orderMode int

const (
	modeOnDemand  orderMode = iota // a handshake for a licensed name without a certificate
	modeScheduled                  // the renewal loop
	modeIssue                      // operator: order now unless a valid certificate exists
	modeRenew                      // operator: order now, replacing a valid certificate
)

func (o orderMode) operator() bool { return o == modeIssue || o == modeRenew }

// acmeClient holds the ACME client shared by every order on this node. The
// account key lives in the replicated store, so every leader uses the same
// account and can resume the orders of the previous one.
type acmeClient struct {
	m  *Manager
	hc *http.Client

	mu     sync.Mutex
	client *acme.Client
	keyPEM string // account key the client was built with
}

// acmeHTTPClient trusts the system roots plus caRoot for the ACME server.
func acmeHTTPClient(caRoot []byte) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if len(caRoot) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(caRoot) {
			return nil, errors.New("certs: --acme-ca-root holds no PEM certificate")
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t, Timeout: time.Minute}, nil
}

const accountKeyName = acmePrefix + "acme_account+key"

// get returns a registered client, creating and storing the account key
// on first use.
func (a *acmeClient) get(ctx context.Context, term uint64) (*acme.Client, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	val, _, ok := a.m.cfg.Store.Get(accountKeyName)
	if ok && a.client != nil && string(val) == a.keyPEM {
		return a.client, nil
	}
	var key crypto.Signer
	if ok {
		b, _ := pem.Decode(val)
		if b == nil {
			return nil, errors.New("certs: unreadable ACME account key in the store")
		}
		k, err := parseKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certs: ACME account key: %w", err)
		}
		key = k
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		if val, err = encodeKey(k); err != nil {
			return nil, err
		}
		if err := a.m.cfg.Store.Put(ctx, accountKeyName, val, term); err != nil {
			return nil, fmt.Errorf("certs: store ACME account key: %w", err)
		}
		key = k
	}
	c := &acme.Client{Key: key, DirectoryURL: a.m.cfg.DirectoryURL, HTTPClient: a.hc, UserAgent: "edge-certs"}
	var contact []string
	if a.m.cfg.Email != "" {
		contact = []string{"mailto:" + a.m.cfg.Email}
	}
	if _, err := c.Register(ctx, &acme.Account{Contact: contact}, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("certs: ACME account registration at %s: %w", a.m.cfg.DirectoryURL, err)
	}
	a.client, a.keyPEM = c, string(val)
	return c, nil
}

// order obtains a certificate for domain on the leader. Concurrent calls
// for one domain share a single order; the order itself runs detached
// from the callers' contexts, bounded by OrderTimeout, so a handshake that
// gives up never wastes an order half-way.
func (m *Manager) order(ctx context.Context, domain string, mode orderMode) error {
	ch := m.orders.DoChan(domain, func() (any, error) {
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.OrderTimeout)
		defer cancel()
		return nil, m.doOrder(octx, domain, mode)
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return fmt.Errorf("certs: waiting for the order for %s: %w", domain, ctx.Err())
	}
}

func (m *Manager) doOrder(ctx context.Context, domain string, mode orderMode) error {
	term, err := m.leaderTerm()
	if err != nil {
		return err
	}
	now := time.Now()
	r, _, err := m.load(domain)
	switch {
	case errors.Is(err, ErrNotFound):
		r = &record{Domain: domain, Source: SourceACME, Status: StatusPending}
	case err != nil:
		return err
	}
	valid := len(r.CertPEM) > 0 && now.Before(r.NotAfter)
	if r.Source == SourceImported {
		if mode == modeRenew || !valid {
			return fmt.Errorf("%s: %w", domain, ErrImported)
		}
		return nil
	}
	if r.Order == nil {
		switch {
		case mode == modeRenew:
		case mode == modeScheduled && valid && !m.due(r, now):
			return nil
		case mode != modeScheduled && valid:
			return nil
		}
		if !mode.operator() && now.Before(r.RetryAt) {
			return fmt.Errorf("%s: %w until %s: %s", domain, ErrBackoff, r.RetryAt.UTC().Format(time.RFC3339), r.LastError)
		}
		if mode != modeRenew && m.restoreOne(ctx, domain, term) {
			return nil
		}
		if !mode.operator() && !m.limiter.take(now) {
			return fmt.Errorf("%s: %w", domain, ErrRateLimited)
		}
	}
	err = m.runOrder(ctx, r, term)
	if err == nil {
		m.metrics.order(orderSuccess)
		m.log.Info("certificate obtained", "domain", domain, "not_after", r.NotAfter)
		m.mirrorPut(ctx, r)
		m.neg.remove(domain)
		return nil
	}
	m.metrics.order(orderFailure)
	if errors.Is(err, errFencedOut) {
		return err
	}
	// Record the failure (keeping any certificate still being served) so
	// the renewal loop and other nodes back off.
	r.Failures++
	r.LastError = err.Error()
	r.RetryAt = time.Now().Add(m.backoff(r.Failures))
	r.Order = nil
	r.Status = StatusFailed
	if serr := m.save(context.WithoutCancel(ctx), r, term); serr != nil {
		m.log.Warn("recording a failed order", "domain", domain, "err", serr)
	}
	m.log.Warn("certificate order failed", "domain", domain, "failures", r.Failures, "retry_at", r.RetryAt, "err", err)
	return fmt.Errorf("certs: order for %s: %w", domain, err)
}

// errFencedOut means this node lost leadership while ordering; the new
// leader resumes the order.
var errFencedOut = errors.New("certs: leadership lost during the order")

// runOrder places (or resumes) the ACME order for r.Domain, answers its
// challenges through the replicated store and stores the certificate.
func (m *Manager) runOrder(ctx context.Context, r *record, term uint64) error {
	client, err := m.acme.get(ctx, term)
	if err != nil {
		return err
	}
	var (
		key *ecdsa.PrivateKey
		o   *acme.Order
	)
	if r.Order != nil {
		// Resume the order a previous leader placed.
		if b, _ := pem.Decode(r.Order.KeyPEM); b != nil {
			key, _ = x509.ParseECPrivateKey(b.Bytes)
		}
		if key != nil {
			if o, err = client.GetOrder(ctx, r.Order.URL); err != nil || o.Status == acme.StatusInvalid {
				m.log.Info("previous order unusable, placing a new one", "domain", r.Domain, "url", r.Order.URL, "err", err)
				o = nil
			}
		}
	}
	if o == nil {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return err
		}
		keyPEM, err := encodeKey(key)
		if err != nil {
			return err
		}
		if o, err = client.AuthorizeOrder(ctx, acme.DomainIDs(r.Domain)); err != nil {
			return fmt.Errorf("new order: %w", err)
		}
		m.metrics.order(orderPlaced)
		r.Order = &pendingOrder{URL: o.URI, KeyPEM: keyPEM, Started: time.Now().UTC()}
		if err := m.save(ctx, r, term); err != nil {
			return fmt.Errorf("%w: %v", errFencedOut, err)
		}
	}
	if o.Status == acme.StatusPending {
		if err := m.authorize(ctx, client, o, r.Domain, term); err != nil {
			return err
		}
		if o, err = client.WaitOrder(ctx, o.URI); err != nil {
			return fmt.Errorf("wait for order: %w", err)
		}
	}
	if o.Status == acme.StatusProcessing {
		if o, err = client.WaitOrder(ctx, o.URI); err != nil {
			return fmt.Errorf("wait for order: %w", err)
		}
	}
	var der [][]byte
	switch o.Status {
	case acme.StatusReady:
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: r.Domain}, DNSNames: []string{r.Domain},
		}, key)
		if err != nil {
			return err
		}
		if der, _, err = client.CreateCertFromOrder(ctx, o, csr, true); err != nil {
			return fmt.Errorf("finalize order: %w", err)
		}
	case acme.StatusValid:
		if der, err = client.FetchCert(ctx, o.CertURL, true); err != nil {
			return fmt.Errorf("fetch certificate: %w", err)
		}
	default:
		return fmt.Errorf("order %s is %s", o.URI, o.Status)
	}
	leaf, err := leafOf(der)
	if err != nil {
		return err
	}
	if err := leaf.VerifyHostname(r.Domain); err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return errors.New("issued certificate does not match the order's key")
	}
	r.setCert(encodeChain(der), keyPEM, leaf)
	r.Source = SourceACME
	r.Order = nil
	if err := m.save(ctx, r, term); err != nil {
		return fmt.Errorf("%w: %v", errFencedOut, err)
	}
	return nil
}

// authorize satisfies the order's pending authorizations with the
// configured challenge type.
func (m *Manager) authorize(ctx context.Context, client *acme.Client, o *acme.Order, domain string, term uint64) error {
	for _, zurl := range o.AuthzURLs {
		z, err := client.GetAuthorization(ctx, zurl)
		if err != nil {
			return fmt.Errorf("get authorization: %w", err)
		}
		if z.Status == acme.StatusValid {
			continue
		}
		if z.Status != acme.StatusPending {
			return fmt.Errorf("authorization for %s is %s", domain, z.Status)
		}
		var chal *acme.Challenge
		for _, c := range z.Challenges {
			if c.Type == m.cfg.Challenge {
				chal = c
			}
		}
		if chal == nil {
			return fmt.Errorf("the CA offers no %s challenge for %s", m.cfg.Challenge, domain)
		}
		cleanup, err := m.fulfill(ctx, client, chal, domain, term)
		if err != nil {
			return err
		}
		defer cleanup()
		if chal.Status == acme.StatusPending {
			if _, err := client.Accept(ctx, chal); err != nil {
				return fmt.Errorf("accept %s challenge: %w", chal.Type, err)
			}
		}
		if _, err := client.WaitAuthorization(ctx, z.URI); err != nil {
			return fmt.Errorf("%s validation of %s: %w", chal.Type, domain, err)
		}
	}
	return nil
}

// fulfill stores the challenge response in the replicated store (keys in
// autocert's layout) so every node can answer the CA; cleanup deletes it.
func (m *Manager) fulfill(ctx context.Context, client *acme.Client, chal *acme.Challenge, domain string, term uint64) (func(), error) {
	var key string
	var val []byte
	switch chal.Type {
	case ChallengeHTTP01:
		resp, err := client.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return nil, err
		}
		key, val = acmePrefix+chal.Token+"+http-01", []byte(resp)
	case ChallengeTLSALPN01:
		cert, err := client.TLSALPN01ChallengeCert(chal.Token, domain)
		if err != nil {
			return nil, err
		}
		signer, ok := cert.PrivateKey.(crypto.Signer)
		if !ok {
			return nil, errors.New("challenge certificate key cannot sign")
		}
		if val, err = encodeKey(signer); err != nil {
			return nil, err
		}
		val = append(val, encodeChain(cert.Certificate)...)
		key = acmePrefix + domain + "+token"
	default:
		return nil, fmt.Errorf("unsupported challenge %s", chal.Type)
	}
	if err := m.cfg.Store.Put(ctx, key, val, term); err != nil {
		return nil, fmt.Errorf("%w: store challenge: %v", errFencedOut, err)
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := m.cfg.Store.Delete(dctx, key, term); err != nil {
			m.log.Debug("challenge cleanup", "key", key, "err", err)
		}
	}, nil
}

// encodeKey PEM-encodes a private key (PKCS#8, or SEC 1 for ECDSA, which
// is what autocert writes).
func encodeKey(k crypto.Signer) ([]byte, error) {
	if ec, ok := k.(*ecdsa.PrivateKey); ok {
		b, err := x509.MarshalECPrivateKey(ec)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b}), nil
	}
	b, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b}), nil
}

func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("unsupported private key")
}

// due reports whether r's certificate should be renewed at now: RenewBefore
// ahead of expiry (a third of the lifetime for certificates shorter than
// twice RenewBefore), minus a per-domain jitter of up to a tenth of that
// window (at most a day) so certificates issued together do not all renew
// in the same tick.
func (m *Manager) due(r *record, now time.Time) bool {
	if len(r.CertPEM) == 0 {
		return true
	}
	window := m.cfg.RenewBefore
	if life := r.NotAfter.Sub(r.NotBefore); life > 0 && window*2 > life {
		window = life / 3
	}
	jitter := min(window/10, 24*time.Hour)
	if jitter > 0 {
		jitter = time.Duration(fnv(r.Domain+r.Serial) % uint64(jitter))
	}
	return !now.Before(r.NotAfter.Add(-window - jitter))
}

func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// backoff is the delay before the n-th retry: BackoffBase doubled per
// failure, capped at BackoffMax.
func (m *Manager) backoff(n int) time.Duration {
	d := m.cfg.BackoffBase
	for i := 1; i < n && d < m.cfg.BackoffMax; i++ {
		d *= 2
	}
	return min(d, m.cfg.BackoffMax)
}

// limiter allows max orders per interval (a fixed window), the pacing a
// well-behaved ACME client keeps under the CA's new-order limits.
type limiter struct {
	mu       sync.Mutex
	max      int
	interval time.Duration
	start    time.Time
	used     int
}

func newLimiter(max int, interval time.Duration) *limiter {
	return &limiter{max: max, interval: interval}
}

func (l *limiter) take(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.interval {
		l.start, l.used = now, 0
	}
	if l.used >= l.max {
		return false
	}
	l.used++
	return true
}
