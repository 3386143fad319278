package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

func newCacheCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "cache", Short: "Purge cached content on every node"}
	c.AddCommand(newCachePurge(g))
	return c
}

func newCachePurge(g *globals) *cobra.Command {
	var (
		urls, prefixes, tags          []string
		all, everything, soft, dryRun bool
		wait                          time.Duration
	)
	c := &cobra.Command{
		Use:   "purge DOMAIN [--url U]... [--prefix P] [--tag T]... [--all] [--soft] [--dry-run]",
		Short: "Purge cached objects on every node and wait until each one confirms",
		Long: `Purge goes through raft, so every node applies it to its own cache; the
command returns once every member has confirmed (or --wait runs out, which
exits 1 and names the nodes that did not confirm).

Selectors (any number, an object matching one of them is purged):
  --url     an exact URL: https://host/path?q or /path?q (any host of the tenant)
  --prefix  a URL prefix in the same forms
  --tag     a surrogate key from the origin's Surrogate-Key / Cache-Tag headers
  --all     every object of the tenant
  --everything (no DOMAIN) every object of every tenant`,
		Example: `  edgectl cache purge shop.example --url https://shop.example/index.html
  edgectl cache purge shop.example --prefix /assets/ --soft
  edgectl cache purge shop.example --tag product-42 -o json`,
		Args: rangeArgs(0, 1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &edgev1.PurgeRequest{Urls: urls, Prefixes: prefixes, Tags: tags, All: all, Everything: everything, Soft: soft, DryRun: dryRun, WaitMs: wait.Milliseconds()}
			switch {
			case everything && len(args) == 1:
				return usagef("--everything purges every tenant; do not name a DOMAIN")
			case !everything && len(args) == 0:
				return usagef("expected DOMAIN (or --everything)")
			case len(args) == 1:
				req.Domain = args[0]
			}
			if !all && !everything && len(urls)+len(prefixes)+len(tags) == 0 {
				return usagef("nothing selected: give --url, --prefix, --tag or --all")
			}
			if wait <= 0 {
				return usagef("--wait must be positive")
			}
			if g.timeout < wait+5*time.Second {
				g.timeout = wait + 5*time.Second
			}
			var resp *edgev1.PurgeResponse
			// The call waits up to --wait for every node: the attempt
			// deadline covers connecting only.
			// On a terminal, say what it waits for while it waits.
			prog := g.progress()
			begun := time.Now()
			tick := time.NewTicker(progressEvery)
			stop, stopped := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(stopped)
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						prog.printf(false, "purge: waiting for every node to confirm (%s of --wait %s)", time.Since(begun).Round(100*time.Millisecond), wait)
					}
				}
			}()
			err := g.callLong(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewCacheServiceClient(cc).Purge(ctx, req)
				return err
			})
			tick.Stop()
			close(stop)
			<-stopped
			prog.done()
			if err != nil {
				return err
			}
			if err := g.print(resp, func(w io.Writer) {
				if resp.GetDryRun() {
					fmt.Fprintf(w, "dry run: %d object(s) match in the contacted node's memory cache; nothing purged\n", resp.GetMatched())
					return
				}
				fmt.Fprintf(w, "purge %s (index %d): applied on %d/%d nodes\n", resp.GetId(), resp.GetIndex(), resp.GetAcknowledged(), resp.GetTotal())
				for _, n := range resp.GetNodes() {
					state := "done"
					if !n.GetDone() {
						state = "NOT CONFIRMED: " + n.GetError()
					}
					fmt.Fprintf(w, "  %s\t%s\n", n.GetId(), state)
				}
			}); err != nil {
				return err
			}
			if !resp.GetDryRun() && resp.GetAcknowledged() < resp.GetTotal() {
				return fmt.Errorf("purge %s applied on %d of %d nodes within %v", resp.GetId(), resp.GetAcknowledged(), resp.GetTotal(), wait)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&urls, "url", nil, "exact URL to purge (repeatable)")
	f.StringArrayVar(&prefixes, "prefix", nil, "URL prefix to purge (repeatable)")
	f.StringArrayVar(&tags, "tag", nil, "surrogate key / cache tag to purge (repeatable)")
	f.BoolVar(&all, "all", false, "purge every object of the tenant")
	f.BoolVar(&everything, "everything", false, "purge every object of every tenant (no DOMAIN)")
	f.BoolVar(&soft, "soft", false, "mark stale (served while revalidating) instead of removing")
	f.BoolVar(&dryRun, "dry-run", false, "count matching objects in the contacted node's memory cache; purge nothing")
	f.DurationVar(&wait, "wait", 10*time.Second, "how long to wait for every node to confirm")
	return c
}
