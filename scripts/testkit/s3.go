package testkit

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3 region used by the test gateway.
const S3Region = "us-east-1"

// S3 starts a versitygw S3 gateway with its posix backend in a temporary
// directory on a free loopback port, creates a bucket, and returns the
// endpoint URL, the bucket and the root credentials. The gateway is
// stopped in t.Cleanup.
func S3(t testing.TB) (endpoint, bucket, accessKey, secretKey string) {
	t.Helper()
	s := StartS3(t)
	return s.Endpoint, s.Bucket, s.AccessKey, s.SecretKey
}

// S3Server is a running versitygw gateway.
type S3Server struct {
	Endpoint, Bucket, AccessKey, SecretKey string

	proc *proc
}

// Stop kills the gateway early (it is stopped in t.Cleanup in any case).
func (s *S3Server) Stop() { s.proc.kill() }

// StartS3 is S3 with a handle that can stop the gateway early.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = string(trimNL(out))
		}
	}
	home, _ := os.UserHomeDir()
	bin, ok := lookPath("versitygw", filepath.Join(gopath, "bin"), filepath.Join(home, "go", "bin"))
	if !ok {
		missing(t, "versitygw", "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
	}
	dir := t.TempDir()
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &S3Server{
		Endpoint:  "http://" + addr,
		Bucket:    "edge-test",
		AccessKey: "edgetestaccess",
		SecretKey: "edgetestsecret0123456789",
	}
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	p, err := startProc(cmd)
	if err != nil {
		t.Fatalf("testkit: start versitygw: %v", err)
	}
	s.proc = p
	t.Cleanup(p.kill)

	client := s3.New(s3.Options{
		Region:       S3Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		HTTPClient:   &http.Client{Timeout: 2 * time.Second},
	})
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)})
		cancel()
		if err == nil {
			return s
		}
		if p.exited() {
			t.Fatalf("testkit: versitygw on %s exited: %s", addr, p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("testkit: versitygw on %s: create bucket: %v (output: %s)", addr, err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
