package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

func newTransformCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "transform", Short: "Try HTML transform rules against a tenant's real pages"}
	var path, lang, file string
	var diff bool
	preview := &cobra.Command{
		Use:   "preview DOMAIN --url PATH [--lang fr] [-f rules.yaml] [--diff]",
		Short: "Fetch a page from the tenant's origin and print it transformed (or a diff)",
		Example: `  edgectl transform preview shop.example --url / --lang fr --diff
  edgectl transform preview shop.example --url /products/1 -f new-rules.yaml`,
		Args: exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				return usagef("--url PATH is required")
			}
			req := &edgev1.PreviewRequest{Domain: args[0], Path: path, Lang: lang}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return fmt.Errorf("-f: %w", err)
				}
				req.Rules = string(b)
			}
			var resp *edgev1.PreviewResponse
			// The node fetches from the origin (up to 30s): the attempt
			// deadline covers connecting only.
			err := g.callLong(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewTransformServiceClient(cc).Preview(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			if g.output != "table" {
				return g.print(map[string]any{
					"status": resp.GetStatus(), "content_type": resp.GetContentType(), "origin_path": resp.GetOriginPath(),
					"rules_version": resp.GetRulesVersion(), "original": string(resp.GetOriginal()), "transformed": string(resp.GetTransformed()),
				}, nil)
			}
			if !diff {
				_, err := g.stdout.Write(resp.GetTransformed())
				return err
			}
			fmt.Fprintf(g.stdout, "--- origin %s (status %d)\n+++ transformed (rules %s)\n", resp.GetOriginPath(), resp.GetStatus(), resp.GetRulesVersion())
			lineDiff(g.stdout, strings.Split(string(resp.GetOriginal()), "\n"), strings.Split(string(resp.GetTransformed()), "\n"))
			return nil
		},
	}
	f := preview.Flags()
	f.StringVar(&path, "url", "", "public path of the page, e.g. /products/1")
	f.StringVar(&lang, "lang", "", "language variant to preview (a code from the rules)")
	f.StringVarP(&file, "file", "f", "", "rules to try instead of the stored ones (YAML)")
	f.BoolVar(&diff, "diff", false, "print the changed lines instead of the whole page")
	c.AddCommand(preview)
	return c
}

// lineDiff prints the lines removed (-) and added (+) between a and b: the
// common head and tail are skipped, the middle is aligned with a longest
// common subsequence when it is small enough.
func lineDiff(w io.Writer, a, b []string) {
	for len(a) > 0 && len(b) > 0 && a[0] == b[0] {
		a, b = a[1:], b[1:]
	}
	for len(a) > 0 && len(b) > 0 && a[len(a)-1] == b[len(b)-1] {
		a, b = a[:len(a)-1], b[:len(b)-1]
	}
	if len(a)*len(b) > 4_000_000 {
		for _, l := range a {
			fmt.Fprintln(w, "-"+l)
		}
		for _, l := range b {
			fmt.Fprintln(w, "+"+l)
		}
		return
	}
	n, m := len(a), len(b)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			// A removed line before the line that replaces it, as diff -u.
			fmt.Fprintln(w, "-"+a[i])
			i++
		default:
			fmt.Fprintln(w, "+"+b[j])
			j++
		}
	}
}
