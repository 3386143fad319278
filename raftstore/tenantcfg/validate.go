package tenantcfg

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/idna"
)

// ErrInvalid is what every validation error matches with errors.Is.
// raftstore.ErrInvalid is the same value.
var ErrInvalid = errors.New("invalid")

// FieldError names the field that failed validation and why. Field is
// the caller's name for it: the admin API's ("origin.tls.ca_pem") or an
// apply file's ("origin_ca_file").
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.StrictDomainName(true),
	idna.ValidateLabels(true),
	idna.VerifyDNSLength(true),
)

// NormalizeDomain turns a user-supplied domain into the form stored and
// looked up: IDNA to punycode, lowercase, no trailing dot. Ports, wildcards,
// IP addresses and single-label names are rejected.
func NormalizeDomain(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fieldErr(field, "must not be empty")
	}
	if strings.Contains(s, "*") {
		return "", fieldErr(field, "%q: wildcard domains are not supported", s)
	}
	if strings.ContainsAny(s, ":/ ") {
		return "", fieldErr(field, "%q: must be a bare domain name without port, scheme or path", s)
	}
	s = strings.TrimSuffix(s, ".")
	if _, err := netip.ParseAddr(s); err == nil {
		return "", fieldErr(field, "%q: an IP address is not a domain", s)
	}
	a, err := idnaProfile.ToASCII(s)
	if err != nil {
		return "", fieldErr(field, "%q: %v", s, err)
	}
	a = strings.ToLower(a)
	if !strings.Contains(a, ".") {
		return "", fieldErr(field, "%q: needs at least two labels (e.g. shop.example)", s)
	}
	return a, nil
}

// ValidateOriginURL checks an origin URL: http or https, a host, no
// credentials, query or fragment.
func ValidateOriginURL(field, s string) (string, error) {
	if s == "" {
		return "", fieldErr(field, "must not be empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fieldErr(field, "%q: %v", s, err)
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return "", fieldErr(field, "%q: scheme must be http or https", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fieldErr(field, "%q: missing host", s)
	}
	if u.User != nil {
		return "", fieldErr(field, "%q: credentials in the URL are not allowed", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fieldErr(field, "%q: query and fragment are not allowed", s)
	}
	if p := u.Port(); p != "" {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 {
			return "", fieldErr(field, "%q: invalid port", s)
		}
	}
	u.Host = strings.ToLower(u.Host)
	return strings.TrimSuffix(u.String(), "/"), nil
}

// ValidateCertPEM checks a bundle of PEM certificates: only CERTIFICATE
// blocks that parse, at least one, nothing after the last. Empty is
// allowed (no bundle).
func ValidateCertPEM(field, s string) error {
	if s == "" {
		return nil
	}
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fieldErr(field, "unexpected PEM block %q, want CERTIFICATE", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fieldErr(field, "certificate %d: %v", n+1, err)
		}
		n++
	}
	if n == 0 {
		return fieldErr(field, "no PEM certificate found")
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return fieldErr(field, "trailing data after the last PEM block")
	}
	return nil
}

// ValidateClientCert checks an origin client certificate and its key:
// both or neither, and the key must match the certificate.
func ValidateClientCert(certField, keyField, cert, key string) error {
	switch {
	case cert == "" && key == "":
		return nil
	case cert == "":
		return fieldErr(certField, "required when %s is set", keyField)
	case key == "":
		return fieldErr(keyField, "required when %s is set", certField)
	}
	if _, err := tls.X509KeyPair([]byte(cert), []byte(key)); err != nil {
		return fieldErr(certField, "certificate and key do not form a pair: %v", err)
	}
	return nil
}

// ValidateHostHeader checks the Host header sent to an origin (empty: the
// origin URL's host).
func ValidateHostHeader(field, h string) error {
	if strings.ContainsAny(h, " /\r\n\t") {
		return fieldErr(field, "%q: not a valid host", h)
	}
	return nil
}

// ValidateServerName checks the TLS server name sent to an origin (empty:
// the origin URL's host).
func ValidateServerName(field, sn string) error {
	if strings.ContainsAny(sn, " /:\r\n\t") {
		return fieldErr(field, "%q: not a valid server name", sn)
	}
	return nil
}

// ValidatePlan checks a license plan name.
func ValidatePlan(field, plan string) error {
	if len(plan) > 64 {
		return fieldErr(field, "at most 64 characters")
	}
	return nil
}

// Validate normalises t in place and checks every field. It does not look
// at other tenants; ownership conflicts are checked when the command is
// applied.
func Validate(t *Tenant) error {
	d, err := NormalizeDomain("domain", t.Domain)
	if err != nil {
		return err
	}
	t.Domain = d
	seen := map[string]bool{d: true}
	aliases := make([]string, 0, len(t.Aliases))
	for i, a := range t.Aliases {
		n, err := NormalizeDomain(fmt.Sprintf("aliases[%d]", i), a)
		if err != nil {
			return err
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		aliases = append(aliases, n)
	}
	if len(aliases) > 100 {
		return fieldErr("aliases", "at most 100 aliases per tenant")
	}
	t.Aliases = aliases
	switch t.License.Status {
	case "":
		t.License.Status = LicenseActive
	case LicenseActive, LicenseSuspended:
	default:
		return fieldErr("license.status", "%q: must be active or suspended", t.License.Status)
	}
	if err := ValidatePlan("license.plan", t.License.Plan); err != nil {
		return err
	}
	u, err := ValidateOriginURL("origin.url", t.Origin.URL)
	if err != nil {
		return err
	}
	t.Origin.URL = u
	if err := ValidateHostHeader("origin.host_header", t.Origin.HostHeader); err != nil {
		return err
	}
	if err := ValidateServerName("origin.tls.server_name", t.Origin.TLS.ServerName); err != nil {
		return err
	}
	if err := ValidateCertPEM("origin.tls.ca_pem", t.Origin.TLS.CAPEM); err != nil {
		return err
	}
	if err := ValidateClientCert("origin.tls.client_cert_pem", "origin.tls.client_key_pem",
		t.Origin.TLS.ClientCertPEM, t.Origin.TLS.ClientKeyPEM); err != nil {
		return err
	}
	if t.Cache.DefaultTTL < 0 {
		return fieldErr("cache.default_ttl", "must not be negative")
	}
	if t.Cache.StaleIfError < 0 {
		return fieldErr("cache.stale_if_error", "must not be negative")
	}
	if t.Cache.StaleWhileRevalidate < 0 {
		return fieldErr("cache.stale_while_revalidate", "must not be negative")
	}
	if len(t.Transform) > 8<<20 {
		return fieldErr("transform", "rules larger than 8 MiB")
	}
	return nil
}
