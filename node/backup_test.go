package node

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestBackupToS3AndRestoreOnEmptyBoot: a leader uploads backups to a real
// S3-compatible server; a brand-new cluster on the same bucket starts with
// that state instead of empty.
func TestBackupToS3AndRestoreOnEmptyBoot(t *testing.T) {
	endpoint, bucket, ak, sk := testkit.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", ak)
	t.Setenv("AWS_SECRET_ACCESS_KEY", sk)
	t.Setenv("AWS_REGION", testkit.S3Region)
	s3opts := ProxyOptions{S3Bucket: bucket, S3Endpoint: endpoint, S3PathStyle: true}

	a := testConfig(t, "a")
	a.BootstrapExpect, a.ProxyOptions, a.BackupInterval = 1, s3opts, 100*time.Millisecond
	na := startNode(t, a)
	testkit.Eventually(t, 5*time.Second, "leader", func() bool { return na.store.IsLeader() })
	tc := edgev1.NewTenantServiceClient(dial(t, na.AdminAddr(), testToken))
	for _, d := range []string{"one.example", "two.example"} {
		if _, err := tc.Add(authCtx(testToken), &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: d, Origin: &edgev1.Origin{Url: "http://o.example"}}}); err != nil {
			t.Fatal(err)
		}
	}
	want := na.store.AppliedIndex()
	client, err := na.s3Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "a backup covering both tenants", func() bool {
		out, err := client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(backupPrefix)})
		if err != nil || len(out.Contents) == 0 {
			return false
		}
		var idx uint64
		for _, o := range out.Contents {
			// Keys are edge-backups/<UTC stamp>-<index, 20 digits>.snap.
			name := strings.TrimSuffix(aws.ToString(o.Key), ".snap")
			if i, err := strconv.ParseUint(name[strings.LastIndexByte(name, '-')+1:], 10, 64); err == nil && i > idx {
				idx = i
			}
		}
		return idx >= want
	})
	na.stop()

	// A new cluster, empty data dir, same bucket.
	b := testConfig(t, "b")
	b.BootstrapExpect, b.ProxyOptions = 1, s3opts
	nb := startNode(t, b)
	testkit.Eventually(t, 30*time.Second, "state restored from S3", func() bool {
		v := nb.store.View()
		return v.Tenant("one.example") != nil && v.Tenant("two.example") != nil
	})
	// And it accepts writes afterwards.
	tb := edgev1.NewTenantServiceClient(dial(t, nb.AdminAddr(), testToken))
	if _, err := tb.Add(authCtx(testToken), &edgev1.AddTenantRequest{Tenant: &edgev1.Tenant{Domain: "three.example", Origin: &edgev1.Origin{Url: "http://o.example"}}}); err != nil {
		t.Fatal(err)
	}
}
