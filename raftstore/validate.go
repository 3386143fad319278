package raftstore

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/idna"
)

// FieldError names the field that failed validation and why.
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

func validateCAPEM(field, s string) error {
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

func validateClientCert(certField, keyField, cert, key string) error {
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

// ValidateTenant normalises t in place and checks every field. It does not
// look at other tenants; ownership conflicts are checked when the command is
// applied.
func ValidateTenant(t *Tenant) error {
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
	if len(t.License.Plan) > 64 {
		return fieldErr("license.plan", "at most 64 characters")
	}
	u, err := ValidateOriginURL("origin.url", t.Origin.URL)
	if err != nil {
		return err
	}
	t.Origin.URL = u
	if h := t.Origin.HostHeader; h != "" && strings.ContainsAny(h, " /\r\n\t") {
		return fieldErr("origin.host_header", "%q: not a valid host", h)
	}
	if sn := t.Origin.TLS.ServerName; sn != "" && strings.ContainsAny(sn, " /:\r\n\t") {
		return fieldErr("origin.tls.server_name", "%q: not a valid server name", sn)
	}
	if err := validateCAPEM("origin.tls.ca_pem", t.Origin.TLS.CAPEM); err != nil {
		return err
	}
	if err := validateClientCert("origin.tls.client_cert_pem", "origin.tls.client_key_pem",
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

// ApplyPatch returns a copy of t with p applied. The copy is not validated.
func ApplyPatch(t *Tenant, p *Patch) *Tenant {
	n := *t
	n.Aliases = append([]string(nil), t.Aliases...)
	if p.OriginURL != nil {
		n.Origin.URL = *p.OriginURL
	}
	if p.Aliases != nil {
		n.Aliases = append([]string(nil), (*p.Aliases)...)
	}
	if p.Plan != nil {
		n.License.Plan = *p.Plan
	}
	if p.ExpiresAt != nil {
		n.License.ExpiresAt = p.ExpiresAt.UTC()
	}
	if p.ClearExpires {
		n.License.ExpiresAt = timeZero
	}
	if p.OriginHost != nil {
		n.Origin.HostHeader = *p.OriginHost
	}
	if p.OriginServerName != nil {
		n.Origin.TLS.ServerName = *p.OriginServerName
	}
	if p.OriginCAPEM != nil {
		n.Origin.TLS.CAPEM = *p.OriginCAPEM
	}
	if p.OriginClientCertPEM != nil {
		n.Origin.TLS.ClientCertPEM = *p.OriginClientCertPEM
	}
	if p.OriginClientKeyPEM != nil {
		n.Origin.TLS.ClientKeyPEM = *p.OriginClientKeyPEM
	}
	if p.OriginInsecureSkipVerify != nil {
		n.Origin.TLS.InsecureSkipVerify = *p.OriginInsecureSkipVerify
	}
	if p.Suspended != nil {
		if *p.Suspended {
			n.License.Status = LicenseSuspended
		} else {
			n.License.Status = LicenseActive
		}
	}
	if p.HTTPSRedirect != nil {
		n.HTTPSRedirect = *p.HTTPSRedirect
	}
	if p.Metrics != nil {
		n.Metrics = *p.Metrics
	}
	if p.CacheDefaultTTL != nil {
		n.Cache.DefaultTTL = secondsToDuration(*p.CacheDefaultTTL)
	}
	if p.CacheOverrideTTL != nil {
		n.Cache.OverrideTTL = *p.CacheOverrideTTL
	}
	if p.CacheCookies != nil {
		n.Cache.CacheCookies = *p.CacheCookies
	}
	if p.CacheAuthorized != nil {
		n.Cache.CacheAuthorized = *p.CacheAuthorized
	}
	if p.CacheStaleIfError != nil {
		n.Cache.StaleIfError = secondsToDuration(*p.CacheStaleIfError)
	}
	if p.CacheStaleWhileRevalid != nil {
		n.Cache.StaleWhileRevalidate = secondsToDuration(*p.CacheStaleWhileRevalid)
	}
	if p.CacheKeepCDNCacheControl != nil {
		n.Cache.KeepCDNCacheControl = *p.CacheKeepCDNCacheControl
	}
	if p.CacheClientNoCache != nil {
		n.Cache.ClientNoCache = *p.CacheClientNoCache
	}
	if p.Transform != nil {
		n.Transform = *p.Transform
	}
	return &n
}
