package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

// Backups: with --s3-bucket and --backup-interval, the leader uploads a
// snapshot (the same checksummed format as `edgectl snapshot save`) under
// backupPrefix whenever the state changed since the last upload. A node
// that bootstraps a new, empty cluster restores the newest backup instead
// of starting from nothing.

const backupPrefix = "edge-backups/"

func (n *Node) s3Client(ctx context.Context) (*s3.Client, error) {
	po := n.cfg.ProxyOptions
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(envOr("AWS_REGION", "us-east-1")))
	if err != nil {
		return nil, fmt.Errorf("s3 config: %w", err)
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if po.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(po.S3Endpoint)
		}
		o.UsePathStyle = po.S3PathStyle
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// encodeBackup renders the current state with its checksum trailer.
func (n *Node) encodeBackup() ([]byte, uint64, error) {
	var buf bytes.Buffer
	h := sha256.New()
	idx, err := n.store.WriteSnapshot(io.MultiWriter(&buf, h))
	if err != nil {
		return nil, 0, err
	}
	size := buf.Len()
	buf.WriteString(edgev1.SnapshotTrailer(h.Sum(nil), int64(size)))
	return buf.Bytes(), idx, nil
}

func (n *Node) backupLoop(ctx context.Context) {
	if n.cfg.BackupInterval <= 0 || n.cfg.ProxyOptions.S3Bucket == "" {
		return
	}
	client, err := n.s3Client(ctx)
	if err != nil {
		n.logger.Error("backups disabled", "err", err)
		return
	}
	var last uint64
	t := time.NewTicker(n.cfg.BackupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !n.store.IsLeader() || n.store.AppliedIndex() == last {
			continue
		}
		body, idx, err := n.encodeBackup()
		if err != nil {
			n.logger.Warn("backup snapshot failed", "err", err)
			continue
		}
		key := fmt.Sprintf("%s%s-%020d.snap", backupPrefix, time.Now().UTC().Format("20060102T150405Z"), idx)
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err = client.PutObject(pctx, &s3.PutObjectInput{Bucket: aws.String(n.cfg.ProxyOptions.S3Bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
		cancel()
		if err != nil {
			n.logger.Warn("backup upload failed; will retry", "key", key, "err", err)
			continue
		}
		last = idx
		n.logger.Info("backup uploaded", "key", key, "index", idx, "bytes", len(body))
	}
}

// restoreNewestBackup is called by a node that just bootstrapped a new
// cluster: if the bucket holds backups, the newest one becomes the state.
func (n *Node) restoreNewestBackup(ctx context.Context) {
	if n.cfg.ProxyOptions.S3Bucket == "" {
		return
	}
	client, err := n.s3Client(ctx)
	if err != nil {
		n.logger.Error("restore from S3 skipped", "err", err)
		return
	}
	bucket := aws.String(n.cfg.ProxyOptions.S3Bucket)
	var keys []string
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: bucket, Prefix: aws.String(backupPrefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			n.logger.Warn("listing backups failed; starting empty", "err", err)
			return
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	if len(keys) == 0 {
		return
	}
	sort.Strings(keys)
	key := keys[len(keys)-1]
	tmp, err := os.CreateTemp(n.cfg.DataDir, "s3-restore-*.snap")
	if err != nil {
		n.logger.Error("restore from S3 failed", "err", err)
		return
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: bucket, Key: aws.String(key)})
	if err != nil {
		n.logger.Error("restore from S3 failed", "key", key, "err", err)
		return
	}
	_, err = io.Copy(tmp, out.Body)
	out.Body.Close()
	if err != nil {
		n.logger.Error("restore from S3 failed", "key", key, "err", err)
		return
	}
	size, err := verifySnapshotFile(tmp.Name())
	if err != nil {
		n.logger.Error("newest S3 backup is damaged; starting empty", "key", key, "err", err)
		return
	}
	// Right after bootstrap the node may not lead yet, and raft refuses a
	// restore until its first configuration entry is committed: retry.
	var idx uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n.store.IsLeader() {
			idx, err = n.store.Restore(func() (io.ReadCloser, error) {
				return io.NopCloser(io.NewSectionReader(tmp, 0, size)), nil
			}, size)
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			n.logger.Error("restore from S3 failed", "key", key, "err", err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = n.putMember(ctx, n.selfMember())
	n.logger.Warn("empty cluster restored from the newest S3 backup", "key", key, "index", idx, "tenants", n.store.View().Len())
}
