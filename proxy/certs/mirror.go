package certs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Mirror keeps a durable copy of every certificate outside the cluster
// (S3), so a cluster rebuilt from nothing restores its certificates instead
// of ordering thousands again. data is the certificate record (chain, key
// and metadata) as stored.
type Mirror interface {
	Put(ctx context.Context, domain string, data []byte) error
	// Get returns ErrNotFound (wrapped) for an unknown domain.
	Get(ctx context.Context, domain string) ([]byte, error)
	List(ctx context.Context) ([]string, error)
	Delete(ctx context.Context, domain string) error
}

const mirrorTimeout = 10 * time.Second

// mirrorPut copies r to the mirror. A failure is logged, never fatal: the
// replicated store remains the source of truth.
func (m *Manager) mirrorPut(ctx context.Context, r *record) {
	if m.cfg.Mirror == nil {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mirrorTimeout)
	defer cancel()
	if err := m.cfg.Mirror.Put(ctx, r.Domain, b); err != nil {
		m.log.Warn("mirror put failed", "domain", r.Domain, "err", err)
	}
}

// restoreOne stores the mirror's copy of domain if it holds a certificate
// that is valid and not yet due for renewal. It reports whether it did.
func (m *Manager) restoreOne(ctx context.Context, domain string, term uint64) bool {
	if m.cfg.Mirror == nil {
		return false
	}
	mctx, cancel := context.WithTimeout(ctx, mirrorTimeout)
	defer cancel()
	b, err := m.cfg.Mirror.Get(mctx, domain)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			m.log.Warn("mirror get failed", "domain", domain, "err", err)
		}
		return false
	}
	return m.restoreRecord(ctx, domain, b, term)
}

func (m *Manager) restoreRecord(ctx context.Context, domain string, b []byte, term uint64) bool {
	r, err := decodeRecord(b)
	if err != nil || r.Domain != domain || len(r.CertPEM) == 0 {
		return false
	}
	now := time.Now()
	if _, err := ValidateKeyPair(domain, r.CertPEM, r.KeyPEM, now); err != nil {
		return false
	}
	if r.Source != SourceImported && m.due(r, now) {
		return false
	}
	r.Order, r.InactiveSince, r.Status, r.LastError, r.Failures, r.RetryAt = nil, time.Time{}, StatusActive, "", 0, time.Time{}
	if err := m.save(ctx, r, term); err != nil {
		m.log.Warn("restoring certificate from the mirror", "domain", domain, "err", err)
		return false
	}
	m.metrics.restored.Inc()
	m.log.Info("certificate restored from the mirror", "domain", domain, "not_after", r.NotAfter)
	return true
}

// restoreAll fills an empty store from the mirror (a fresh cluster).
func (m *Manager) restoreAll(ctx context.Context, term uint64) {
	if m.cfg.Mirror == nil || len(m.cfg.Store.Keys(certPrefix)) > 0 {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, mirrorTimeout)
	domains, err := m.cfg.Mirror.List(lctx)
	cancel()
	if err != nil {
		m.log.Warn("mirror list failed", "err", err)
		return
	}
	n := 0
	for _, d := range domains {
		if ctx.Err() != nil {
			return
		}
		if _, _, ok := m.cfg.Store.Get(certPrefix + d); ok {
			continue
		}
		if m.restoreOne(ctx, d, term) {
			n++
		}
	}
	m.log.Info("restored certificates from the mirror", "count", n, "listed", len(domains))
}

// S3Mirror is a Mirror in an S3 bucket: one object per domain under Prefix.
type S3Mirror struct {
	client *s3.Client
	bucket string
	prefix string
}

// NewS3Mirror mirrors into bucket under prefix (default "edge-certs/"),
// using a configured S3 client. Objects hold private keys: the bucket must
// be private and encrypted at rest.
func NewS3Mirror(client *s3.Client, bucket, prefix string) (*S3Mirror, error) {
	if client == nil || bucket == "" {
		return nil, errors.New("certs: S3 mirror needs a client and a bucket")
	}
	if prefix == "" {
		prefix = "edge-certs/"
	}
	return &S3Mirror{client: client, bucket: bucket, prefix: prefix}, nil
}

// Put implements Mirror.
func (s *S3Mirror) Put(ctx context.Context, domain string, data []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: aws.String(s.prefix + domain),
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("s3 put %s: %w", domain, err)
	}
	return nil
}

// Get implements Mirror.
func (s *S3Mirror) Get(ctx context.Context, domain string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + domain)})
	if err != nil {
		var nsk *types.NoSuchKey
		var apiErr smithy.APIError
		if errors.As(err, &nsk) || errors.As(err, &apiErr) && apiErr.ErrorCode() == "NotFound" {
			return nil, fmt.Errorf("s3 mirror %s: %w", domain, ErrNotFound)
		}
		return nil, fmt.Errorf("s3 get %s: %w", domain, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("s3 get %s: %w", domain, err)
	}
	return b, nil
}

// List implements Mirror.
func (s *S3Mirror) List(ctx context.Context) ([]string, error) {
	var out []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3 list: %w", err)
		}
		for _, o := range page.Contents {
			out = append(out, aws.ToString(o.Key)[len(s.prefix):])
		}
	}
	return out, nil
}

// Delete implements Mirror.
func (s *S3Mirror) Delete(ctx context.Context, domain string) error {
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + domain)}); err != nil {
		return fmt.Errorf("s3 delete %s: %w", domain, err)
	}
	return nil
}
