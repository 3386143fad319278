package node

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

// leaderHint returns the leader this node knows of, other than itself:
// its server ID and registered admin address (empty when unknown).
func (n *Node) leaderHint() (id, adminAddr string) {
	_, id = n.store.Leader()
	if id == "" || id == n.cfg.ID {
		return "", ""
	}
	if m, ok := n.store.View().Member(id); ok {
		adminAddr = m.AdminAddr
	}
	return id, adminAddr
}

// notLeaderError answers a forwarded Apply or ReadIndex that reached a
// node which no longer leads (it was deposed while the call was on its
// way): FailedPrecondition, with the leader this node knows as a hint so
// that the forwarder goes there at once rather than waiting for its own
// raft to hear of the new leader.
func (n *Node) notLeaderError(msg string) error {
	id, addr := n.leaderHint()
	return edgev1.WithLeaderHint(status.New(codes.FailedPrecondition, msg), id, addr).Err()
}

// hintedError is how apply and readBarrier give up: Unavailable (the
// client may send the call elsewhere, with the same request ID), naming
// the leader this node knew when it gave up, if any.
type hintedError struct {
	err           error
	leader, admin string
}

func (e *hintedError) Error() string { return e.err.Error() }
func (e *hintedError) Unwrap() error { return e.err }
func (e *hintedError) GRPCStatus() *status.Status {
	return edgev1.WithLeaderHint(status.New(codes.Unavailable, e.err.Error()), e.leader, e.admin)
}

func (n *Node) withHint(err error) error {
	id, addr := n.leaderHint()
	return &hintedError{err: err, leader: id, admin: addr}
}

// forwardHint is the admin address a failed forward's answer names as
// the leader, when it is neither the address just tried nor this node.
func (n *Node) forwardHint(err error, tried string) string {
	if _, addr := edgev1.LeaderHint(err); addr != "" && addr != tried && addr != n.cfg.AdminAdvertise {
		return addr
	}
	return ""
}

// retryWait paces apply's and readBarrier's tries. It returns as soon as
// this node's idea of the leader changes (changed, taken before the try):
// a new leader heard of is the earliest moment another try can succeed,
// so a follower waiting out an election sends the write within
// microseconds of it rather than at the next tick of a poll. Otherwise
// (a leader known but not answering, or not registered yet) it waits a
// short backoff, 10 ms doubling to 80 ms, jittered ±50% so that the
// writes queued on one node do not retry in lockstep.
func retryWait(ctx context.Context, changed <-chan struct{}, try int) error {
	d := 10 * time.Millisecond << min(try, 3)
	d = d/2 + rand.N(d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-t.C:
	}
	return nil
}

// answerBy bounds apply's and readBarrier's tries: forwardTimeout, and a
// little before the caller's own deadline (a tenth of the time it has
// left, at most 100 ms), so that the answer, Unavailable with the leader
// hint when this node knows one, reaches the caller while it still
// listens. Without the margin both sides' deadlines end together and the
// caller learns nothing but that it ran out of time.
func (n *Node) answerBy(ctx context.Context) (context.Context, context.CancelFunc) {
	d := n.cfg.forwardTimeout
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		d = min(d, left-min(left/10, 100*time.Millisecond))
	}
	return context.WithTimeout(ctx, d)
}
