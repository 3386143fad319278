package node

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"context"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore"
)

// Snapshot files use the format of edgev1.VerifySnapshot: the state
// stream, then a checksum trailer.

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
	trailer := edgev1.SnapshotTrailer(h.Sum(nil), cnt.n)
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

// verifySnapshotFile checks a snapshot file's trailer and returns the size
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
	size, _, err := edgev1.VerifySnapshot(f, st.Size())
	return size, err
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
	size, sum, err := edgev1.VerifySnapshot(tmp, total)
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
	// The restored state carries the backup's old index and history. One
	// command records the restore (who, which snapshot) in the history and
	// moves every view past the restore point (read barriers rely on it).
	ctx, cancel := context.WithTimeout(stream.Context(), 10*time.Second)
	defer cancel()
	detail := fmt.Sprintf("snapshot index %d, sha256 %s, %d tenants", n.store.View().Index(), sum, tenants)
	if err := n.recordRestore(ctx, detail); err != nil {
		n.logger.Warn("restore not recorded in the history", "err", err)
		_ = n.putMember(ctx, n.selfMember())
	}
	n.logger.Warn("state replaced from an uploaded snapshot", "index", idx, "tenants", tenants, "actor", actor(stream.Context()))
	return stream.SendAndClose(&edgev1.RestoreSnapshotResponse{Index: idx, Tenants: int64(tenants)})
}

// recordRestore writes raftstore.RestoreKey, which the state machine
// records in the history under the caller's name.
func (n *Node) recordRestore(ctx context.Context, detail string) error {
	term := n.store.Term()
	if cur, ok := n.store.View().Get(raftstore.RestoreKey); ok && cur.Term > term {
		// A snapshot of another cluster may carry a later term.
		term = cur.Term
	}
	cmd, err := raftstore.NewCommand(raftstore.CmdKVPut, requestID(ctx), time.Now(), raftstore.KVPut{Key: raftstore.RestoreKey, Value: []byte(detail), Term: term})
	if err != nil {
		return err
	}
	cmd.Actor = actor(ctx)
	_, err = n.apply(ctx, cmd)
	return err
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
		resp.Entries = append(resp.Entries, &edgev1.HistoryEntry{Index: e.Index, Time: ts(e.Time), Operation: e.Op, Domain: e.Domain, Actor: e.Actor, Error: e.Error, Detail: e.Detail})
	}
	return resp, nil
}
