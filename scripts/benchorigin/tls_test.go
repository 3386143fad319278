package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestServeTLS runs serve as scripts/bench does, with -tls-addr: a client
// that trusts only the written CA and asks for origin.bench gets /nostore
// over HTTP/1.1 even when it offers h2; one without the CA, or verifying
// the IP address instead of the name, is refused; both listeners count
// into the same /stats.
func TestServeTLS(t *testing.T) {
	addr, tlsAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	caFile := filepath.Join(t.TempDir(), "origin-ca.pem")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, serveConfig{Addr: addr, TLSAddr: tlsAddr, TLSCA: caFile}, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	// The CA file is written before the TLS port listens.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", tlsAddr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve does not listen on %s: %v", tlsAddr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no PEM certificate: %q", caFile, caPEM)
	}
	client := func(tc *tls.Config) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
	}

	resp, err := client(&tls.Config{RootCAs: roots, ServerName: originTLSName}).Get("https://" + tlsAddr + "/nostore")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(body) != 1024 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("/nostore over https: %d, %d bytes, Cache-Control %q", resp.StatusCode, len(body), resp.Header.Get("Cache-Control"))
	}
	if resp.ProtoMajor != 1 || resp.ProtoMinor != 1 || resp.TLS.NegotiatedProtocol != "http/1.1" {
		t.Fatalf("protocol %s, ALPN %q; want HTTP/1.1 (the client offered h2 too)", resp.Proto, resp.TLS.NegotiatedProtocol)
	}

	for name, tc := range map[string]*tls.Config{
		"without the CA":      {ServerName: originTLSName},
		"verifying the IP":    {RootCAs: roots},
		"verifying some name": {RootCAs: roots, ServerName: "other.bench"},
	} {
		_, err := client(tc).Get("https://" + tlsAddr + "/nostore")
		var verr *tls.CertificateVerificationError
		if !errors.As(err, &verr) {
			t.Errorf("%s: err %v, want a certificate verification error", name, err)
		}
	}

	// The https request counts into the plain listener's /stats, and in
	// "tls"; a plain one does not. scripts/bench greps these maps.
	resp, err = http.Get("http://" + addr + "/nostore")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, raw := getStats(t, "http://"+addr)
	for _, want := range []string{`"paths":{"/nostore":2,`, `"tls":{"/nostore":1,`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("/stats %s lacks %s", raw, want)
		}
	}
}

func TestServeTLSNeedsCAFile(t *testing.T) {
	err := serve(t.Context(), serveConfig{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-tls-ca") {
		t.Fatalf("err %v, want one asking for -tls-ca", err)
	}
}
