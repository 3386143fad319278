package tenantcfg

import (
	"errors"
	"strings"
	"testing"

	"github.com/edgeproxy/edge/scripts/testkit"
)

func TestNormalizeDomain(t *testing.T) {
	cases := []struct {
		in, want, err string
	}{
		{in: "Shop.Example", want: "shop.example"},
		{in: "shop.example.", want: "shop.example"},
		{in: "  www.shop.example ", want: "www.shop.example"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "XN--BCHER-KVA.example", want: "xn--bcher-kva.example"},
		{in: "", err: "must not be empty"},
		{in: "shop.example:8080", err: "without port"},
		{in: "*.shop.example", err: "wildcard"},
		{in: "https://shop.example", err: "without port, scheme or path"},
		{in: "10.0.0.1", err: "IP address"},
		{in: "localhost", err: "two labels"},
		{in: "bad_label.example", err: "disallowed"},
		{in: strings.Repeat("a", 64) + ".example", err: "label"},
	}
	for _, c := range cases {
		got, err := NormalizeDomain("domain", c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("NormalizeDomain(%q) error = %v, want it to mention %q", c.in, err, c.err)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("NormalizeDomain(%q) error %v is not ErrInvalid", c.in, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestValidateOriginURL(t *testing.T) {
	good := map[string]string{
		"https://Origin.Shop.example/":  "https://origin.shop.example",
		"http://127.0.0.1:8081":         "http://127.0.0.1:8081",
		"https://origin.example/prefix": "https://origin.example/prefix",
	}
	for in, want := range good {
		got, err := ValidateOriginURL("origin.url", in)
		if err != nil || got != want {
			t.Errorf("ValidateOriginURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "ftp://x.example", "https://", "https://u:p@x.example", "http://x.example/?q=1", "http://x.example:99999", "::nonsense"} {
		if _, err := ValidateOriginURL("origin.url", in); err == nil || !strings.HasPrefix(err.Error(), "origin.url:") {
			t.Errorf("ValidateOriginURL(%q) = %v, want an error naming origin.url", in, err)
		}
	}
}

func TestValidateTLS(t *testing.T) {
	cert, key := testkit.SelfSigned(t, "origin.example").PEMStrings()
	_, otherKey := testkit.SelfSigned(t, "other.example").PEMStrings()
	base := func() *Tenant {
		return &Tenant{Domain: "shop.example", Origin: Origin{URL: "https://origin.example"}}
	}
	ok := base()
	ok.Origin.TLS = OriginTLS{CAPEM: cert, ClientCertPEM: cert, ClientKeyPEM: key}
	if err := Validate(ok); err != nil {
		t.Fatalf("valid tenant rejected: %v", err)
	}
	if ok.License.Status != LicenseActive {
		t.Errorf("default license status = %q, want active", ok.License.Status)
	}
	bad := []struct {
		mut   func(*Tenant)
		field string
	}{
		{func(x *Tenant) { x.Origin.TLS.CAPEM = "not pem" }, "origin.tls.ca_pem"},
		{func(x *Tenant) { x.Origin.TLS.CAPEM = strings.Replace(cert, "MII", "MIX", 1) }, "origin.tls.ca_pem"},
		{func(x *Tenant) { x.Origin.TLS.ClientCertPEM = cert }, "origin.tls.client_key_pem"},
		{func(x *Tenant) { x.Origin.TLS.ClientCertPEM, x.Origin.TLS.ClientKeyPEM = cert, otherKey }, "origin.tls.client_cert_pem"},
		{func(x *Tenant) { x.Aliases = []string{"ok.example", "bad alias"} }, "aliases[1]"},
		{func(x *Tenant) { x.License.Status = "paused" }, "license.status"},
		{func(x *Tenant) { x.Origin.URL = "gopher://x.example" }, "origin.url"},
	}
	for i, c := range bad {
		x := base()
		c.mut(x)
		err := Validate(x)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("case %d: err = %v, want a FieldError for %s", i, err, c.field)
		}
	}
}

// TestValidatorsNameTheCallersField: edgectl and the admin API call the
// same validators with their own field names (apply file keys, API
// paths); each refusal names the caller's field, carries a reason that
// reads without it, and matches ErrInvalid.
func TestValidatorsNameTheCallersField(t *testing.T) {
	cert, _ := testkit.SelfSigned(t, "a.example").PEMStrings()
	_, otherKey := testkit.SelfSigned(t, "b.example").PEMStrings()
	for name, err := range map[string]error{
		"NormalizeDomain":    second(NormalizeDomain("my_field", "*.shop.example")),
		"ValidateOriginURL":  second(ValidateOriginURL("my_field", "ftp://x.example")),
		"ValidateHostHeader": ValidateHostHeader("my_field", "a b"),
		"ValidateServerName": ValidateServerName("my_field", "x.example:443"),
		"ValidatePlan":       ValidatePlan("my_field", strings.Repeat("p", 65)),
		"ValidateCertPEM":    ValidateCertPEM("my_field", "not pem"),
		"ValidateClientCert": ValidateClientCert("my_field", "key_field", cert, otherKey),
	} {
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "my_field" || fe.Reason == "" || strings.Contains(fe.Reason, "my_field") || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want a FieldError for my_field matching ErrInvalid", name, err)
		}
	}
	for name, err := range map[string]error{
		"ValidateHostHeader": ValidateHostHeader("f", ""),
		"ValidateServerName": ValidateServerName("f", ""),
		"ValidateCertPEM":    ValidateCertPEM("f", ""),
		"ValidateClientCert": ValidateClientCert("c", "k", "", ""),
	} {
		if err != nil {
			t.Errorf("%s(empty) = %v, want nil (the setting is optional)", name, err)
		}
	}
}

func second(_ string, err error) error { return err }
