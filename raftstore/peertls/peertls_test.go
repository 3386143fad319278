package peertls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseKeys(t *testing.T) {
	good := strings.Repeat("k", MinKeyLen)
	for _, tc := range []struct {
		in      string
		want    int
		wantErr string
	}{
		{in: good + "\n", want: 1},
		{in: good + "\n\n" + good + "2\n", want: 2},
		{in: good + "," + good + "2", want: 2},
		{in: "", wantErr: "no cluster key"},
		{in: "short\n", wantErr: "at least 32"},
		{in: PlaceholderKey + "\n", wantErr: "placeholder"},
		{in: good + "\nshort", wantErr: "at least 32"},
	} {
		keys, err := ParseKeys(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "urandom") && tc.wantErr != "no cluster key" {
				t.Errorf("ParseKeys(%q) = %v, want an error about %q that says how to make a key", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(keys) != tc.want {
			t.Errorf("ParseKeys(%q) = %d keys, %v; want %d", tc.in, len(keys), err, tc.want)
		}
	}
}

// handshake runs one TLS 1.3 handshake over loopback between a server with
// srv and a client with cli, dialled at addrName, and returns both sides'
// errors.
func handshake(t *testing.T, srv *Credentials, cli *Credentials, addrName string) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, srv.ServerConfig())
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the
			// client thinks it is done; read to see the verdict.
			_, err = tc.Write([]byte("ok"))
		}
		done <- err
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cli.ClientConfig(net.JoinHostPort(addrName, port))}
	c, err := d.Dial("tcp", "127.0.0.1:"+port)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 2)
		_, err = io.ReadFull(c, b)
		c.Close()
	}
	return <-done, err
}

func TestClusterKeysAuthenticateBothWays(t *testing.T) {
	k1, k2, k3 := []byte(NewKey()), []byte(NewKey()), []byte(NewKey())
	mk := func(keys ...[]byte) *Credentials {
		c, err := FromClusterKeys(keys)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if s, c := handshake(t, mk(k1), mk(k1), "127.0.0.1"); s != nil || c != nil {
		t.Fatalf("same key: server %v, client %v", s, c)
	}
	// Mid-rotation: each trusts both, they sign with different keys.
	if s, c := handshake(t, mk(k2, k1), mk(k1, k2), "edge-0.peers"); s != nil || c != nil {
		t.Fatalf("rotation: server %v, client %v", s, c)
	}
	if s, c := handshake(t, mk(k1), mk(k3), "127.0.0.1"); s == nil && c == nil {
		t.Fatal("a client with another key was accepted")
	}
	if s, c := handshake(t, mk(k1), mk(k2, k1), "127.0.0.1"); s == nil && c == nil {
		t.Fatal("a client signing with a key the server does not trust was accepted")
	}
	if _, err := FromClusterKeys([][]byte{[]byte("short")}); err == nil {
		t.Fatal("a short key was accepted")
	}
}

// pki is a throwaway CA that issues member certificates into files.
type pki struct {
	t    *testing.T
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	caPE []byte
}

func newPKI(t *testing.T, dir, name string) *pki {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &pki{t: t, dir: dir, ca: ca, key: key, caPE: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes name's certificate and key to dir/name.{crt,key} and the
// CA bundle (this CA plus extra) to dir/name.ca.
func (p *pki) issue(name string, extra ...[]byte) (crt, key, ca string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(k)
	crt, key, ca = filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key"), filepath.Join(p.dir, name+".ca")
	write := func(path string, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			p.t.Fatal(err)
		}
	}
	write(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
	bundle := append([]byte{}, p.caPE...)
	for _, e := range extra {
		bundle = append(bundle, e...)
	}
	write(ca, bundle)
	return crt, key, ca
}

func TestOperatorPKI(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir, "cluster CA")
	other := newPKI(t, t.TempDir(), "new CA")
	a, err := FromFiles(p.issue("edge-0.peers"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromFiles(p.issue("edge-1.peers"))
	if err != nil {
		t.Fatal(err)
	}
	if s, c := handshake(t, a, b, "edge-0.peers"); s != nil || c != nil {
		t.Fatalf("members: server %v, client %v", s, c)
	}
	// The name is checked: a member's certificate does not pass for
	// another address.
	if _, c := handshake(t, a, b, "edge-7.peers"); c == nil {
		t.Fatal("the client accepted a certificate for another name")
	}
	stranger, err := FromFiles(other.issue("edge-0.peers"))
	if err != nil {
		t.Fatal(err)
	}
	if s, c := handshake(t, a, stranger, "edge-0.peers"); s == nil && c == nil {
		t.Fatal("a certificate from another CA was accepted")
	}

	// A CA rotation by rewriting the files (as cert-manager does): once
	// each bundle also holds the other CA, both are members, without a
	// restart.
	p.issue("edge-0.peers", other.caPE)
	other.issue("edge-0.peers", p.caPE)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, c := handshake(t, a, stranger, "edge-0.peers")
		if s == nil && c == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rewritten CA bundle was not picked up: server %v, client %v", s, c)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
