package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// KeyPair is a certificate and its key in the forms tests hand to TLS
// configs and to Edge (PEM).
type KeyPair struct {
	TLS     tls.Certificate // Leaf is set
	CertPEM []byte
	KeyPEM  []byte // SEC 1 ("EC PRIVATE KEY")
}

// WriteFiles writes the pair as name.pem and name-key.pem in dir and
// returns the two paths, for flags that take files.
func (k *KeyPair) WriteFiles(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	for file, b := range map[string][]byte{certFile: k.CertPEM, keyFile: k.KeyPEM} {
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// SelfSigned returns a server certificate for names that is its own root,
// valid from an hour ago for a day. Names that parse as IPs become IP
// SANs, the rest DNS SANs; the first is the subject's common name.
func SelfSigned(t testing.TB, names ...string) *KeyPair {
	t.Helper()
	now := time.Now()
	return SelfSignedValid(t, now.Add(-time.Hour), now.Add(24*time.Hour), names...)
}

// SelfSignedValid is SelfSigned with the validity period given, for tests
// of expired or not-yet-valid certificates.
func SelfSignedValid(t testing.TB, notBefore, notAfter time.Time, names ...string) *KeyPair {
	t.Helper()
	key := newKey(t)
	tmpl := leafTemplate(names, notBefore, notAfter, x509.ExtKeyUsageServerAuth)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	return sign(t, tmpl, tmpl, key, key)
}

// CA is a certificate authority made for one test.
type CA struct {
	Cert *x509.Certificate
	PEM  []byte // the CA certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA named name, valid from an hour ago for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
}

// Pool returns a pool that trusts only ca.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteFile writes the CA certificate as name-ca.pem in dir and returns
// its path.
func (ca *CA) WriteFile(t testing.TB, dir, name string) string {
	t.Helper()
	file := filepath.Join(dir, name+"-ca.pem")
	if err := os.WriteFile(file, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// Issue returns a certificate for names signed by ca, valid from an hour
// ago for a day, for the given uses (server authentication when none).
func (ca *CA) Issue(t testing.TB, names []string, usage ...x509.ExtKeyUsage) *KeyPair {
	t.Helper()
	if len(usage) == 0 {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	tmpl := leafTemplate(names, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), usage...)
	return sign(t, tmpl, ca.Cert, newKey(t), ca.key)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func leafTemplate(names []string, notBefore, notAfter time.Time, usage ...x509.ExtKeyUsage) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return tmpl
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) *KeyPair {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &KeyPair{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}
}

// randSerial is a random positive serial; crypto/rand does not fail on
// the platforms Go supports.
func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	return n
}

// PEM returns the certificate and key in PEM.
func (k *KeyPair) PEM() (certPEM, keyPEM []byte) { return k.CertPEM, k.KeyPEM }

// PEMStrings returns the certificate and key in PEM, as strings (the form
// Edge's tenant model and API carry them in).
func (k *KeyPair) PEMStrings() (certPEM, keyPEM string) {
	return string(k.CertPEM), string(k.KeyPEM)
}
