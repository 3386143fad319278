package testkit

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestRedisStopRestart(t *testing.T) {
	s := StartRedis(t)
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	s.Stop()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("ping succeeded after Stop")
	}
	s.Start()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

func TestS3PutGet(t *testing.T) {
	endpoint, bucket, ak, sk := S3(t)
	c := s3.New(s3.Options{
		Region: S3Region, BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(ak, sk, ""),
		HTTPClient:  &http.Client{Timeout: 5 * time.Second},
	})
	ctx := context.Background()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k"), Body: strings.NewReader("v")}); err != nil {
		t.Fatalf("put: %v", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer out.Body.Close()
	if aws.ToInt64(out.ContentLength) != 1 {
		t.Fatalf("content length = %d", aws.ToInt64(out.ContentLength))
	}
}
