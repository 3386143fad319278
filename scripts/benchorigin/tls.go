package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// originTLSName is the only name in the https listener's certificate.
// There is no IP SAN, so a proxy reaching 127.0.0.1 must send this name
// (SNI) and verify the certificate against it, as it would for a tenant's
// real https origin.
const originTLSName = "origin.bench"

// listenTLS listens on addr for the origin's https listener. It makes a
// certificate for originTLSName, signed by a CA made on the spot, and
// writes that CA's PEM to caFile before it listens, so that once addr
// accepts connections the file is complete: scripts/bench waits for the
// port, then hands the file to edgectl and nginx.
//
// Only HTTP/1.1 is offered by ALPN. nginx speaks nothing else to an
// upstream, and edged takes h2 when the origin picks it; with h2 off both
// proxies use the same protocol, and the comparison is of the proxies,
// not of HTTP/1.1 against h2.
func listenTLS(addr, caFile string) (net.Listener, error) {
	cert, caPEM, err := originCert(originTLSName)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write the CA: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return tls.NewListener(ln, &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}), nil
}

// originCert returns an ECDSA P-256 certificate for the DNS name, signed
// by a new self-signed CA, and the PEM of that CA: what a tenant puts in
// its origin CA bundle.
func originCert(name string) (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	// An hour back for clock skew; a week covers any run.
	from, until := time.Now().Add(-time.Hour), time.Now().Add(7*24*time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "benchorigin CA"},
		NotBefore:             from,
		NotAfter:              until,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    from,
		NotAfter:     until,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
