// Package peertls is the raft port's credential: every connection between
// two cluster members is TLS 1.3 with a certificate on both sides, and a
// peer that cannot present one the cluster trusts has no RPC processed.
//
// Two kinds of credential give the same guarantee:
//
//   - A cluster key (FromClusterKeys): a shared secret of at least 32 bytes,
//     one Kubernetes Secret like the admin token. Every node derives the same
//     Ed25519 certificate authority from it (HKDF-SHA256, then a byte-for-byte
//     identical self-signed CA certificate) and signs a fresh certificate for
//     its own in-memory key at start. Peers verify each other's chains to
//     that CA, so the secret itself never crosses the network. Several keys
//     may be given: the first signs, all are trusted — a rotation never
//     refuses a peer (docs/security.md).
//   - Files from an operator's PKI (FromFiles): a node certificate and key
//     plus a CA bundle, as etcd's --peer-* flags take. Peers are verified
//     against the bundle and by the host name they were dialled at. The
//     files are read again when they change, so cert-manager's renewals
//     need no restart.
//
// Why TLS and not a MAC on raft's own frames: hashicorp/raft's
// NetworkTransport has no hook between its framing and its RPC handling,
// while its StreamLayer is a plain net.Listener/Dial pair; wrapping that in
// TLS authenticates and encrypts every byte (snapshots carry TLS private
// keys) without touching the library.
package peertls

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// MinKeyLen is the shortest cluster key accepted, in bytes.
const MinKeyLen = 32

// PlaceholderKey is the value shipped in deploy/k8s/secret.yaml; a node
// refuses it so that the base manifests cannot run with a known key.
const PlaceholderKey = "REPLACE-ME-with-head-c-32-dev-urandom-base64-cluster-key"

// peerName is the name every cluster-key certificate carries and every
// cluster-key client expects: the CA only ever signs cluster members, so
// the name says nothing more than "a member" and peers can be dialled by
// IP, DNS name or anything else.
const peerName = "raft.edge.internal"

// Credentials build the raft listener's and dialer's TLS configurations.
// They are safe for concurrent use.
type Credentials struct {
	server *tls.Config
	client func(host string) *tls.Config
}

// ServerConfig is the configuration for accepted raft connections: TLS 1.3
// only, a client certificate required and verified.
func (c *Credentials) ServerConfig() *tls.Config { return c.server }

// ClientConfig is the configuration for dialling the raft peer at addr
// (host:port).
func (c *Credentials) ClientConfig(addr string) *tls.Config {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return c.client(host)
}

// ParseKeys reads cluster keys, one per line (or comma separated, as the
// EDGE_CLUSTER_KEY variable takes them). Blank lines are skipped; a key
// shorter than MinKeyLen or equal to PlaceholderKey is an error that says
// how to make a good one.
func ParseKeys(s string) ([][]byte, error) {
	var keys [][]byte
	for _, k := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == ',' }) {
		k = strings.TrimSpace(k)
		switch {
		case k == "":
			continue
		case k == PlaceholderKey:
			return nil, errors.New("cluster key is the manifests' placeholder; make one with: head -c 32 /dev/urandom | base64")
		case len(k) < MinKeyLen:
			return nil, fmt.Errorf("cluster key is %d bytes, want at least %d; make one with: head -c 32 /dev/urandom | base64", len(k), MinKeyLen)
		}
		keys = append(keys, []byte(k))
	}
	if len(keys) == 0 {
		return nil, errors.New("no cluster key given")
	}
	return keys, nil
}

// NewKey returns a random cluster key in the form ParseKeys reads.
func NewKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return fmt.Sprintf("%x", b)
}

// FromClusterKeys derives the cluster CA from each key, trusts all of them
// and issues this process's certificate from the first.
func FromClusterKeys(keys [][]byte) (*Credentials, error) {
	if len(keys) == 0 {
		return nil, errors.New("peertls: no cluster key")
	}
	pool := x509.NewCertPool()
	var signer *x509.Certificate
	var signerKey ed25519.PrivateKey
	for i, k := range keys {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("peertls: cluster key %d is shorter than %d bytes", i+1, MinKeyLen)
		}
		ca, key, err := deriveCA(k)
		if err != nil {
			return nil, err
		}
		pool.AddCert(ca)
		if i == 0 {
			signer, signerKey = ca, key
		}
	}
	leaf, err := issue(signer, signerKey)
	if err != nil {
		return nil, err
	}
	return &Credentials{
		server: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{leaf},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		},
		client: func(string) *tls.Config {
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{leaf},
				RootCAs:      pool,
				ServerName:   peerName,
			}
		},
	}, nil
}

// deriveCA turns a cluster key into a CA whose certificate is the same
// bytes on every node: the key pair comes from HKDF, every field of the
// certificate is fixed, and Ed25519 signatures are deterministic.
func deriveCA(secret []byte) (*x509.Certificate, ed25519.PrivateKey, error) {
	seed, err := hkdf.Key(sha256.New, secret, nil, "edge raft cluster CA v1", ed25519.SeedSize)
	if err != nil {
		return nil, nil, fmt.Errorf("peertls: derive CA: %w", err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	pub := key.Public().(ed25519.PublicKey)
	id := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(id[:16]),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("edge raft cluster CA %x", id[:6])},
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
		SubjectKeyId:          id[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, nil, fmt.Errorf("peertls: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("peertls: CA certificate: %w", err)
	}
	return ca, key, nil
}

// issue makes this process's member certificate: a fresh key that never
// leaves memory, valid for both ends of a connection.
func issue(ca *x509.Certificate, caKey ed25519.PrivateKey) (tls.Certificate, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: peerName},
		DNSNames:     []string{peerName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("peertls: member certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// FromFiles uses an operator's PKI: certFile and keyFile are this node's
// certificate (valid for client and server auth) and key, caFile the
// bundle that signed every member's certificate (several CAs during a
// rotation). A peer's certificate must name the host it was dialled at.
// The files are read again, at most once a second, when their contents
// change; a broken rewrite keeps the last good credential and is logged by
// the handshake that fails on it.
func FromFiles(certFile, keyFile, caFile string) (*Credentials, error) {
	r := &fileSource{cert: certFile, key: keyFile, ca: caFile}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return &Credentials{
		server: &tls.Config{
			MinVersion: tls.VersionTLS13,
			ClientAuth: tls.RequireAndVerifyClientCert,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				cur := r.current()
				return &tls.Config{
					MinVersion:   tls.VersionTLS13,
					Certificates: []tls.Certificate{cur.cert},
					ClientAuth:   tls.RequireAndVerifyClientCert,
					ClientCAs:    cur.pool,
				}, nil
			},
		},
		client: func(host string) *tls.Config {
			cur := r.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS13,
				Certificates: []tls.Certificate{cur.cert},
				RootCAs:      cur.pool,
				ServerName:   host,
			}
		},
	}, nil
}

type fileCreds struct {
	cert tls.Certificate
	pool *x509.CertPool
	raw  [3][]byte // the files' contents, to notice a change
}

type fileSource struct {
	cert, key, ca string

	mu      sync.Mutex
	creds   *fileCreds
	checked time.Time
}

func (r *fileSource) current() *fileCreds {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= time.Second {
		_ = r.reloadLocked() // keep the last good credential on error
	}
	return r.creds
}

func (r *fileSource) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked()
}

func (r *fileSource) reloadLocked() error {
	r.checked = time.Now()
	var raw [3][]byte
	for i, p := range []string{r.cert, r.key, r.ca} {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("peertls: %w", err)
		}
		raw[i] = b
	}
	if r.creds != nil && bytes.Equal(raw[0], r.creds.raw[0]) && bytes.Equal(raw[1], r.creds.raw[1]) && bytes.Equal(raw[2], r.creds.raw[2]) {
		return nil
	}
	cert, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return fmt.Errorf("peertls: %s, %s: %w", r.cert, r.key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw[2]) {
		return fmt.Errorf("peertls: %s holds no PEM certificate", r.ca)
	}
	r.creds = &fileCreds{cert: cert, pool: pool, raw: raw}
	return nil
}
