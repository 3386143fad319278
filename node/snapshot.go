package node

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"context"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore"
)

// Snapshot files are the state stream followed by one trailer line:
//
//	edge-snapshot-sha256 <hex sha256 of the stream> <stream size>\n
//
// so a truncated or altered file is detected before anything changes.
const trailerPrefix = "edge-snapshot-sha256 "

type snapshotService struct {
	edgev1.UnimplementedSnapshotServiceServer
	n *Node
}

type chunkWriter struct {
	stream edgev1.SnapshotService_SaveServer
	buf    []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for len(w.buf) >= 256<<10 {
		if err := w.stream.Send(&edgev1.SnapshotChunk{Data: w.buf[:256<<10]}); err != nil {
			return 0, err
		}
		w.buf = append([]byte(nil), w.buf[256<<10:]...)
	}
	return len(p), nil
}

func (s *snapshotService) Save(_ *edgev1.SaveSnapshotRequest, stream edgev1.SnapshotService_SaveServer) error {
	if err := s.n.readBarrier(stream.Context(), edgev1.Consistency_CONSISTENCY_LEADER); err != nil {
		return grpcError(err)
	}
	cw := &chunkWriter{stream: stream}
	h := sha256.New()
	cnt := &countWriter{}
	if _, err := s.n.store.WriteSnapshot(io.MultiWriter(cw, h, cnt)); err != nil {
		return status.Errorf(codes.Internal, "snapshot: %v", err)
	}
	trailer := fmt.Sprintf("%s%s %d\n", trailerPrefix, hex.EncodeToString(h.Sum(nil)), cnt.n)
	if _, err := cw.Write([]byte(trailer)); err != nil {
		return err
	}
	if len(cw.buf) > 0 {
		return stream.Send(&edgev1.SnapshotChunk{Data: cw.buf})
	}
	return nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// VerifySnapshotFile checks a snapshot file's trailer and returns the size
// of its state stream.
func verifySnapshotFile(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return verifySnapshot(f, st.Size())
}

// verifySnapshot reads the trailer from the end of r (total bytes) and
// checks the hash and size of everything before it.
func verifySnapshot(r io.ReaderAt, total int64) (int64, error) {
	const maxTrailer = 128
	off := total - maxTrailer
	if off < 0 {
		off = 0
	}
	tail := make([]byte, total-off)
	if _, err := r.ReadAt(tail, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	if len(tail) == 0 || tail[len(tail)-1] != '\n' {
		return 0, errors.New("truncated snapshot: the checksum trailer is missing")
	}
	i := strings.LastIndex(string(tail[:len(tail)-1]), "\n")
	line := string(tail[i+1 : len(tail)-1])
	if !strings.HasPrefix(line, trailerPrefix) {
		return 0, errors.New("truncated or foreign snapshot: the checksum trailer is missing")
	}
	parts := strings.Fields(strings.TrimPrefix(line, trailerPrefix))
	if len(parts) != 2 {
		return 0, errors.New("malformed snapshot trailer")
	}
	size, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || size != off+int64(i+1) {
		return 0, fmt.Errorf("truncated snapshot: trailer says %s bytes, file has %d before it", parts[1], off+int64(i+1))
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return 0, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != parts[0] {
		return 0, fmt.Errorf("corrupt snapshot: sha256 %s, trailer says %s", got, parts[0])
	}
	return size, nil
}

func (s *snapshotService) Restore(stream edgev1.SnapshotService_RestoreServer) error {
	n := s.n
	if !n.store.IsLeader() {
		return status.Error(codes.FailedPrecondition, "restore must be sent to the leader; edgectl finds it from cluster status")
	}
	tmp, err := os.CreateTemp(n.cfg.DataDir, "restore-*.snap")
	if err != nil {
		return status.Errorf(codes.Internal, "restore: %v", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	var total int64
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if total += int64(len(c.GetData())); total > 4<<30 {
			return status.Error(codes.InvalidArgument, "snapshot larger than 4 GiB")
		}
		if _, err := bw.Write(c.GetData()); err != nil {
			return status.Errorf(codes.Internal, "restore: %v", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return status.Errorf(codes.Internal, "restore: %v", err)
	}
	size, err := verifySnapshot(tmp, total)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	open := func() (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(tmp, 0, size)), nil
	}
	f, err := os.Open(tmp.Name())
	if err != nil {
		return status.Errorf(codes.Internal, "restore: %v", err)
	}
	tenants, err := raftstore.CheckSnapshot(io.NewSectionReader(f, 0, size))
	f.Close()
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "snapshot: %v", err)
	}
	idx, err := n.store.Restore(open, size)
	if err != nil {
		return grpcError(err)
	}
	// The restored state carries the backup's old index; one command moves
	// every view past the restore point (read barriers rely on it).
	ctx, cancel := context.WithTimeout(stream.Context(), 10*time.Second)
	defer cancel()
	_ = n.putMember(ctx, raftstore.Member{ID: n.cfg.ID, RaftAddr: n.store.Addr(), AdminAddr: n.cfg.AdminAdvertise})
	n.logger.Warn("state replaced from an uploaded snapshot", "index", idx, "tenants", tenants, "actor", actor(stream.Context()))
	return stream.SendAndClose(&edgev1.RestoreSnapshotResponse{Index: idx, Tenants: int64(tenants)})
}

// actor names who sent a request: edgectl's user@host and the peer address.
func actor(ctx context.Context) string {
	var who string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-edge-actor"); len(v) > 0 && len(v[0]) <= 128 {
			who = v[0]
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if who == "" {
			return p.Addr.String()
		}
		return who + " from " + p.Addr.String()
	}
	return who
}

type historyService struct {
	edgev1.UnimplementedHistoryServiceServer
	n *Node
}

func (s *historyService) List(ctx context.Context, req *edgev1.HistoryRequest) (*edgev1.HistoryResponse, error) {
	domain := ""
	if req.GetDomain() != "" {
		d, err := domainArg(req.GetDomain())
		if err != nil {
			return nil, err
		}
		domain = d
	}
	if err := s.n.readBarrier(ctx, edgev1.Consistency_CONSISTENCY_LEADER); err != nil {
		return nil, grpcError(err)
	}
	resp := &edgev1.HistoryResponse{}
	for _, e := range s.n.store.View().History(domain, int(req.GetLimit())) {
		resp.Entries = append(resp.Entries, &edgev1.HistoryEntry{Index: e.Index, Time: ts(e.Time), Operation: e.Op, Domain: e.Domain, Actor: e.Actor, Error: e.Error})
	}
	return resp, nil
}
