package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Config configures the optional persistent L3, used for requests that
// ask for it (Request.Persist): expensive, transformed variants.
type S3Config struct {
	Bucket    string // --s3-bucket
	Endpoint  string // --s3-endpoint; empty means AWS
	Region    string // default "us-east-1"
	PathStyle bool   // path-style addressing (most S3-compatible servers)
	Prefix    string // key prefix (default "edge-cache/")

	// AccessKey and SecretKey set static credentials (tests); otherwise the
	// standard AWS chain (environment, shared files, instance role) is used.
	AccessKey, SecretKey string

	Timeout      time.Duration // lookup on the request path (default 100 ms)
	WriteTimeout time.Duration // asynchronous write (default 5 s)
	QueueSize    int           // pending writes; more are dropped (default 256)
	Workers      int           // default 2
}

func (c *S3Config) withDefaults() S3Config {
	d := *c
	if d.Region == "" {
		d.Region = "us-east-1"
	}
	if d.Prefix == "" {
		d.Prefix = "edge-cache/"
	}
	if d.Timeout <= 0 {
		d.Timeout = 100 * time.Millisecond
	}
	if d.WriteTimeout <= 0 {
		d.WriteTimeout = 5 * time.Second
	}
	if d.QueueSize <= 0 {
		d.QueueSize = 256
	}
	if d.Workers <= 0 {
		d.Workers = 2
	}
	return d
}

// s3Store is the L3 store. S3 has no per-object TTL: objects carry their
// own expiry (checked on read) and a bucket lifecycle rule removes old ones.
type s3Store struct {
	client *s3.Client
	bucket string
	prefix string
}

func newS3Store(ctx context.Context, cfg S3Config) (*s3Store, error) {
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(cfg.Region),
		awsconfig.WithRetryMaxAttempts(1),
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = 64
		})),
	}
	if cfg.AccessKey != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 config: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	return &s3Store{client: client, bucket: cfg.Bucket, prefix: cfg.Prefix}, nil
}

func (s *s3Store) get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	if err != nil {
		var nsk *types.NoSuchKey
		var apiErr smithy.APIError
		if errors.As(err, &nsk) || errors.As(err, &apiErr) && apiErr.ErrorCode() == "NotFound" {
			return nil, errNotFound
		}
		return nil, fmt.Errorf("s3 get: %w", err)
	}
	defer out.Body.Close()
	buf := bytes.NewBuffer(make([]byte, 0, max(aws.ToInt64(out.ContentLength), 0)))
	if _, err := io.Copy(buf, out.Body); err != nil {
		return nil, fmt.Errorf("s3 get body: %w", err)
	}
	return buf.Bytes(), nil
}

func (s *s3Store) put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           aws.String(s.prefix + key),
		Body:          bytes.NewReader(val),
		ContentLength: aws.Int64(int64(len(val))),
		ContentType:   aws.String("application/octet-stream"),
		Expires:       aws.Time(time.Now().Add(ttl)),
	})
	if err != nil {
		return fmt.Errorf("s3 put: %w", err)
	}
	return nil
}

func (s *s3Store) del(ctx context.Context, keys []string) error {
	for _, k := range keys {
		if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + k)}); err != nil {
			return fmt.Errorf("s3 delete: %w", err)
		}
	}
	return nil
}

func (s *s3Store) close() error { return nil }
