package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

func newSnapshotCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "snapshot", Short: "Save the cluster state to a file, or replace it from one"}
	c.AddCommand(&cobra.Command{
		Use:   "save FILE",
		Short: "Stream a consistent, checksummed snapshot of the state into FILE",
		Args:  exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			tmp, err := os.CreateTemp(filepath.Dir(path), ".edge-snapshot-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			// The attempt deadline covers connecting and the first chunk;
			// the rest of the stream runs under --timeout.
			prog := g.progress()
			var received int64
			err = g.callStream(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn, started func()) error {
				if _, err := tmp.Seek(0, io.SeekStart); err != nil {
					return err
				}
				if err := tmp.Truncate(0); err != nil {
					return err
				}
				s, err := edgev1.NewSnapshotServiceClient(cc).Save(ctx, &edgev1.SaveSnapshotRequest{})
				if err != nil {
					return err
				}
				for {
					c, err := s.Recv()
					if errors.Is(err, io.EOF) {
						return nil
					}
					if err != nil {
						return err
					}
					started()
					if _, err := tmp.Write(c.GetData()); err != nil {
						return err
					}
					received += int64(len(c.GetData()))
					prog.printf(false, "saving snapshot: %s received", byteCount(received))
				}
			})
			prog.done()
			if err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Sync(); err != nil {
				return err
			}
			size, sum, err := verifySnapshotFile(tmp)
			tmp.Close()
			if err != nil {
				return fmt.Errorf("received snapshot is damaged: %w", err)
			}
			if err := os.Rename(tmp.Name(), path); err != nil {
				return err
			}
			return g.print(map[string]any{"file": path, "bytes": strconv.FormatInt(size, 10), "sha256": sum}, func(w io.Writer) {
				fmt.Fprintf(w, "saved %s (%d bytes, sha256 %s)\n", path, size, sum)
			})
		},
	})
	var yes bool
	restore := &cobra.Command{
		Use:   "restore FILE [--yes]",
		Short: "Replace the whole cluster's state with the snapshot in FILE (checked before anything changes; asks first unless --yes)",
		Args:  exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			_, sum, err := verifySnapshotFile(f)
			if err != nil {
				return fmt.Errorf("%s: %w; nothing was changed", args[0], err)
			}
			if !yes {
				if err := confirm(cmd, fmt.Sprintf("Replace every tenant, certificate and member record of the cluster with %s (sha256 %.12s…)?", args[0], sum)); err != nil {
					return err
				}
			}
			leader, err := g.leaderAdmin(cmd.Context())
			if err != nil {
				return err
			}
			var resp *edgev1.RestoreSnapshotResponse
			saved := g.servers
			g.servers = leader
			defer func() { g.servers = saved }()
			// The upload and the leader's restore run under --timeout;
			// the attempt deadline covers connecting only.
			prog := g.progress()
			var total int64
			if st, err := f.Stat(); err == nil {
				total = st.Size()
			}
			err = g.callLong(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) error {
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return err
				}
				s, err := edgev1.NewSnapshotServiceClient(cc).Restore(ctx)
				if err != nil {
					return err
				}
				buf := make([]byte, 256<<10)
				var sent int64
				for {
					n, rerr := f.Read(buf)
					if n > 0 {
						if err := s.Send(&edgev1.SnapshotChunk{Data: buf[:n]}); err != nil {
							return err
						}
						sent += int64(n)
						prog.printf(false, "restoring snapshot: %s of %s sent", byteCount(sent), byteCount(total))
					}
					if errors.Is(rerr, io.EOF) {
						break
					}
					if rerr != nil {
						return rerr
					}
				}
				prog.printf(true, "restoring snapshot: %s sent; the leader is restoring it", byteCount(sent))
				resp, err = s.CloseAndRecv()
				return err
			})
			prog.done()
			if err != nil {
				return err
			}
			return g.print(resp, func(w io.Writer) {
				fmt.Fprintf(w, "restored %d tenants from %s at index %d\n", resp.GetTenants(), args[0], resp.GetIndex())
			})
		},
	}
	restore.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (required when standard input is not a terminal)")
	c.AddCommand(restore)
	return c
}

// confirm asks question on a terminal and wants "yes" or "y". Without a
// terminal it refuses with a usage error: a script must say --yes.
func confirm(cmd *cobra.Command, question string) error {
	in, ok := cmd.InOrStdin().(*os.File)
	if !ok || !isTerminal(in) {
		return usagef("refusing to replace the cluster's state without confirmation: standard input is not a terminal; add --yes")
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s [y/N] ", question)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return usagef("not confirmed; nothing was changed")
}

// leaderAdmin asks the cluster for the leader's admin address.
func (g *globals) leaderAdmin(ctx context.Context) (string, error) {
	var st *edgev1.StatusResponse
	err := g.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		st, err = edgev1.NewClusterServiceClient(cc).Status(ctx, &edgev1.StatusRequest{})
		return err
	})
	if err != nil {
		return "", err
	}
	for _, m := range st.GetMembers() {
		if m.GetId() == st.GetLeader() && m.GetAdminAddress() != "" {
			return m.GetAdminAddress(), nil
		}
	}
	return "", errors.New("no leader with a known admin address")
}

// verifySnapshotFile checks the checksum trailer of a snapshot file.
func verifySnapshotFile(f *os.File) (int64, string, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	// The size reported is the file's, trailer included: what ls shows.
	_, sum, err := edgev1.VerifySnapshot(f, st.Size())
	return st.Size(), sum, err
}

func newHistoryCmd(g *globals) *cobra.Command {
	var limit int
	c := &cobra.Command{
		Use:   "history [DOMAIN]",
		Short: "Show who changed what, and when (newest first)",
		Args:  rangeArgs(0, 1, "at most one DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &edgev1.HistoryRequest{Limit: int32(limit)}
			if len(args) == 1 {
				req.Domain = args[0]
			}
			var resp *edgev1.HistoryResponse
			err := g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewHistoryServiceClient(cc).List(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return g.print(resp, func(w io.Writer) {
				fmt.Fprintln(w, "TIME\tINDEX\tOPERATION\tDOMAIN\tACTOR\tRESULT\tDETAIL")
				for _, e := range resp.GetEntries() {
					result := "ok"
					if e.GetError() != "" {
						result = "rejected: " + e.GetError()
					}
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", e.GetTime().AsTime().UTC().Format(time.RFC3339), e.GetIndex(), e.GetOperation(), dash(e.GetDomain()), dash(e.GetActor()), result, dash(e.GetDetail()))
				}
			})
		},
	}
	c.Flags().IntVar(&limit, "limit", 50, "show at most this many entries (0: all kept)")
	return c
}
