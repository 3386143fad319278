package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

func newClusterCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "cluster", Short: "Inspect and change cluster membership"}
	c.AddCommand(newClusterStatus(g), newClusterJoin(g), newClusterRemove(g), newClusterTransfer(g))
	return c
}

func newClusterStatus(g *globals) *cobra.Command {
	var wf watchFlags
	c := &cobra.Command{
		Use:   "status [--watch]",
		Short: "Show members, their roles and applied indexes, and the leader",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return wf.run(cmd.Context(), g, func(ctx context.Context) error { return g.clusterStatus(ctx) })
		},
	}
	wf.register(c)
	return c
}

// clusterStatus prints the members, and fails with exit 3 when there is
// no leader.
func (g *globals) clusterStatus(ctx context.Context) error {
	var resp *edgev1.StatusResponse
	err := g.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = edgev1.NewClusterServiceClient(cc).Status(ctx, &edgev1.StatusRequest{})
		return err
	})
	if err != nil {
		return err
	}
	if err := g.print(resp, func(w io.Writer) {
		fmt.Fprintln(w, "ID\tRAFT ADDRESS\tADMIN ADDRESS\tSUFFRAGE\tSTATE\tAPPLIED\tTERM\tVERSION")
		for _, m := range resp.GetMembers() {
			id := m.GetId()
			if id == resp.GetLeader() {
				id += " *"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", id, m.GetAddress(), dash(m.GetAdminAddress()), m.GetSuffrage(), m.GetState(), m.GetAppliedIndex(), m.GetTerm(), versionOf(m))
		}
	}); err != nil {
		return err
	}
	// The members are printed either way: which ones are
	// unreachable is what an incident needs to see.
	if resp.GetLeader() == "" {
		return exitError{exitNoLeader, noLeaderError(resp)}
	}
	return nil
}

func newClusterJoin(g *globals) *cobra.Command {
	var nonvoter bool
	var admin string
	c := &cobra.Command{
		Use:   "join ID RAFT_ADDR",
		Short: "Add a node to the raft configuration",
		Args:  exactArgs(2, "ID RAFT_ADDR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *edgev1.JoinResponse
			err := g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewClusterServiceClient(cc).Join(ctx, &edgev1.JoinRequest{Id: args[0], RaftAddress: args[1], AdminAddress: admin, Nonvoter: nonvoter})
				return err
			})
			if err != nil {
				return err
			}
			return g.print(resp, func(w io.Writer) { fmt.Fprintf(w, "%s joined as %s\n", args[0], resp.GetSuffrage()) })
		},
	}
	c.Flags().BoolVar(&nonvoter, "nonvoter", false, "join as a non-voting member (read replica)")
	c.Flags().StringVar(&admin, "admin-addr", "", "the node's admin address, so others can forward to it")
	return c
}

func newClusterRemove(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a node from the raft configuration",
		Args:  exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Not sent twice on a deadline: a raft configuration change
			// has no request ID, and a repeat would answer "not found".
			err := g.callLong(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) error {
				_, err := edgev1.NewClusterServiceClient(cc).Remove(ctx, &edgev1.RemoveMemberRequest{Id: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			return g.print(map[string]string{"removed": args[0]}, func(w io.Writer) { fmt.Fprintf(w, "removed %s\n", args[0]) })
		},
	}
}

func newClusterTransfer(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leader [ID]",
		Short: "Hand leadership to another voter (the most up to date one if no ID is given)",
		Args:  rangeArgs(0, 1, "at most one ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &edgev1.TransferLeadershipRequest{}
			if len(args) == 1 {
				req.Id = args[0]
			}
			var resp *edgev1.TransferLeadershipResponse
			// Not sent twice on a deadline (a repeat would move leadership
			// again), and a transfer waits for the target to win.
			err := g.callLong(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewClusterServiceClient(cc).TransferLeadership(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return g.print(resp, func(w io.Writer) { fmt.Fprintf(w, "leader is now %s\n", resp.GetLeader()) })
		},
	}
}
