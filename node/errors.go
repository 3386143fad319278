package node

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgeproxy/edge/raftstore"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// errNoLeader means no leader could be reached before the deadline.
var errNoLeader = errors.New("no raft leader reachable")

// grpcError maps errors to gRPC status codes in one place.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *tenantcfg.FieldError
	switch {
	case errors.As(err, &fe), errors.Is(err, raftstore.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, raftstore.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, raftstore.ErrAlreadyExists), errors.Is(err, raftstore.ErrConflict):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, raftstore.ErrStaleIndex), errors.Is(err, raftstore.ErrUnsupportedByCluster):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, raftstore.ErrNotLeader), errors.Is(err, errNoLeader):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
