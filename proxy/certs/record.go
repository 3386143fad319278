package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/idna"
)

// Key prefixes in the replicated KV space.
const (
	certPrefix = "cert/" // cert/<domain> → record (JSON)
	acmePrefix = "acme/" // autocert's layout: acme_account+key, <token>+http-01, <domain>+token
)

// Status of a certificate record.
const (
	StatusPending = "pending" // an order is in flight and no certificate is served yet
	StatusActive  = "active"  // a valid certificate is stored
	StatusFailed  = "failed"  // the last order failed (LastError); an older certificate may still be served
)

// Source of a certificate.
const (
	SourceACME     = "acme"
	SourceImported = "imported"
)

// record is what the store holds under cert/<domain>. The certificate and
// its key travel together so that no node ever sees one without the other.
type record struct {
	Domain    string `json:"domain"`
	Source    string `json:"source"`
	Status    string `json:"status"`
	LastError string `json:"last_error,omitempty"`
	// CertPEM is the chain, leaf first; KeyPEM its private key. Both are
	// empty until the first order completes.
	CertPEM []byte `json:"cert_pem,omitempty"`
	KeyPEM  []byte `json:"key_pem,omitempty"`
	// Metadata copied from the leaf so listing needs no parsing.
	Issuer    string    `json:"issuer,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	SANs      []string  `json:"sans,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	// Failures counts consecutive failed orders; RetryAt is when the
	// leader may try again on its own (operators can always force).
	Failures int       `json:"failures,omitempty"`
	RetryAt  time.Time `json:"retry_at,omitzero"`
	// Order is the ACME order in flight, kept so that a new leader resumes
	// it instead of placing another one.
	Order *pendingOrder `json:"order,omitempty"`
	// InactiveSince is set by the leader when the domain's license stops
	// being active; the certificate is no longer served after the grace
	// period and the record is then deleted.
	InactiveSince time.Time `json:"inactive_since,omitzero"`
	UpdatedAt     time.Time `json:"updated_at"`
}

type pendingOrder struct {
	URL     string    `json:"url"`
	KeyPEM  []byte    `json:"key_pem"`
	Started time.Time `json:"started"`
}

func decodeRecord(b []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode certificate record: %w", err)
	}
	return &r, nil
}

// setCert stores a validated chain and key in r and copies the leaf's
// metadata.
func (r *record) setCert(certPEM, keyPEM []byte, leaf *x509.Certificate) {
	r.CertPEM, r.KeyPEM = certPEM, keyPEM
	r.Issuer = leaf.Issuer.String()
	r.NotBefore, r.NotAfter = leaf.NotBefore, leaf.NotAfter
	r.SANs = append([]string(nil), leaf.DNSNames...)
	r.Serial = leaf.SerialNumber.Text(16)
	r.Status = StatusActive
	r.LastError = ""
	r.Failures = 0
	r.RetryAt = time.Time{}
}

// Info describes one stored certificate for the CLI (`edgectl cert get`).
type Info struct {
	Domain        string    `json:"domain"`
	Source        string    `json:"source"`
	Status        string    `json:"status"`
	LastError     string    `json:"last_error,omitempty"`
	Issuer        string    `json:"issuer,omitempty"`
	NotBefore     time.Time `json:"not_before,omitzero"`
	NotAfter      time.Time `json:"not_after,omitzero"`
	SANs          []string  `json:"sans,omitempty"`
	Serial        string    `json:"serial,omitempty"`
	Failures      int       `json:"failures,omitempty"`
	RetryAt       time.Time `json:"retry_at,omitzero"`
	OrderPending  bool      `json:"order_pending,omitempty"`
	InactiveSince time.Time `json:"inactive_since,omitzero"`
	UpdatedAt     time.Time `json:"updated_at"`
	// Version is the raft index of the record's last change.
	Version uint64 `json:"version"`
}

func (r *record) info(version uint64) Info {
	return Info{
		Domain: r.Domain, Source: r.Source, Status: r.Status, LastError: r.LastError,
		Issuer: r.Issuer, NotBefore: r.NotBefore, NotAfter: r.NotAfter,
		SANs: append([]string(nil), r.SANs...), Serial: r.Serial,
		Failures: r.Failures, RetryAt: r.RetryAt, OrderPending: r.Order != nil,
		InactiveSince: r.InactiveSince, UpdatedAt: r.UpdatedAt, Version: version,
	}
}

// parseKeyPair parses a PEM chain and key, checks that they match, and
// returns the certificate with its parsed leaf.
func parseKeyPair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// ValidateKeyPair checks a certificate a customer supplies for domain: it
// parses, the key matches, it covers domain and it is valid now.
func ValidateKeyPair(domain string, certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	c, err := parseKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCertificate, err)
	}
	leaf := c.Leaf
	if strings.HasPrefix(domain, "*.") {
		found := false
		for _, n := range leaf.DNSNames {
			if strings.EqualFold(n, domain) {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: certificate does not cover %s (SANs %v)", ErrInvalidCertificate, domain, leaf.DNSNames)
		}
	} else if err := leaf.VerifyHostname(domain); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCertificate, err)
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: expired at %s", ErrInvalidCertificate, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%w: not valid before %s", ErrInvalidCertificate, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// encodeChain PEM-encodes DER certificates.
func encodeChain(der [][]byte) []byte {
	var out []byte
	for _, b := range der {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})...)
	}
	return out
}

// NormalizeDomain lowercases a host name, converts IDNs to punycode and
// drops a trailing dot. It rejects names that are not plausible DNS names
// (so they can never reach the store's key space); a leading "*." is
// allowed only when wildcard is true.
func NormalizeDomain(name string, wildcard bool) (string, error) {
	n := strings.TrimSuffix(name, ".")
	if n == "" {
		return "", errors.New("empty server name")
	}
	star := ""
	if wildcard && strings.HasPrefix(n, "*.") {
		star, n = "*.", n[2:]
	}
	if !isLowerASCII(n) {
		var err error
		if n, err = idna.Lookup.ToASCII(n); err != nil {
			return "", fmt.Errorf("invalid server name %q: %w", name, err)
		}
	}
	body := n
	n = star + n
	if len(n) > 253 || !strings.Contains(body, ".") {
		return "", fmt.Errorf("invalid server name %q", name)
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", fmt.Errorf("invalid server name %q", name)
		}
	}
	if strings.HasPrefix(body, ".") || strings.Contains(body, "..") {
		return "", fmt.Errorf("invalid server name %q", name)
	}
	return n, nil
}

// isLowerASCII reports whether s needs no case or IDN conversion.
func isLowerASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}

// wildcardOf returns "*.parent" for "label.parent", or "" if name has no
// parent with a dot.
func wildcardOf(name string) string {
	i := strings.IndexByte(name, '.')
	if i < 0 || !strings.Contains(name[i+1:], ".") {
		return ""
	}
	return "*" + name[i:]
}
