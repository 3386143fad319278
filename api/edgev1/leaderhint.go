package edgev1

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// A node that cannot serve a write or a leader-confirmed read (it knows
// no leader, cannot reach the one it knows, or was deposed while the call
// was in flight) says who leads as far as it knows, so that a client or
// a forwarding node goes there at once instead of waiting out a deadline
// or for its own raft to catch up. The hint travels as a standard
// google.rpc.ErrorInfo status detail: no message of Edge's own in the
// wire format, and clients that do not know it ignore it.
const (
	leaderHintReason = "LEADER_HINT"
	leaderHintDomain = "edgeproxy.dev"
)

// WithLeaderHint returns st carrying the leader's server ID and admin
// (gRPC) address. st is returned unchanged when id is empty.
func WithLeaderHint(st *status.Status, id, adminAddr string) *status.Status {
	if id == "" {
		return st
	}
	h, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   leaderHintReason,
		Domain:   leaderHintDomain,
		Metadata: map[string]string{"leader_id": id, "leader_admin_addr": adminAddr},
	})
	if err != nil {
		return st
	}
	return h
}

// LeaderHint returns the leader named by err's status details, or empty
// strings when it names none. The address may be empty when the node
// knew the leader's ID but not yet its admin address.
func LeaderHint(err error) (id, adminAddr string) {
	s, ok := status.FromError(err)
	if !ok {
		return "", ""
	}
	for _, d := range s.Details() {
		if e, ok := d.(*errdetails.ErrorInfo); ok && e.GetReason() == leaderHintReason && e.GetDomain() == leaderHintDomain {
			return e.GetMetadata()["leader_id"], e.GetMetadata()["leader_admin_addr"]
		}
	}
	return "", ""
}
