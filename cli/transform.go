package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

func newTenantTransformCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "transform", Short: "Set, show or clear a tenant's HTML transform rules"}
	var file string
	set := &cobra.Command{
		Use:     "set DOMAIN -f rules.yaml",
		Short:   "Replace the tenant's transform rules (validated by the cluster before they are stored)",
		Example: "  edgectl tenant transform set shop.example -f rules.yaml",
		Args:    exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usagef("-f FILE is required (use - for standard input)")
			}
			var b []byte
			var err error
			if file == "-" {
				b, err = io.ReadAll(cmd.InOrStdin())
			} else {
				b, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("-f: %w", err)
			}
			if len(b) == 0 {
				return usagef("-f %s is empty; use `tenant transform clear` to remove rules", file)
			}
			return g.patchTransform(cmd, args[0], string(b))
		},
	}
	set.Flags().StringVarP(&file, "file", "f", "", "rules file (YAML)")
	clear := &cobra.Command{
		Use:   "clear DOMAIN",
		Short: "Remove the tenant's transform rules: pages pass through unchanged",
		Args:  exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.patchTransform(cmd, args[0], "")
		},
	}
	get := &cobra.Command{
		Use:   "get DOMAIN",
		Short: "Show the tenant's transform rules (YAML by default)",
		Args:  exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *edgev1.TenantResponse
			err := g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewTenantServiceClient(cc).Get(ctx, &edgev1.GetTenantRequest{Domain: args[0], Consistency: g.consistency()})
				return err
			})
			if err != nil {
				return err
			}
			rules := resp.GetTenant().GetTransform()
			var doc any
			if rules != "" {
				if err := json.Unmarshal([]byte(rules), &doc); err != nil {
					return fmt.Errorf("stored rules are not JSON: %w", err)
				}
			}
			if g.output == "json" {
				return g.print(map[string]any{"domain": resp.GetTenant().GetDomain(), "rules": doc}, nil)
			}
			if doc == nil {
				fmt.Fprintf(g.stdout, "# %s has no transform rules\n", resp.GetTenant().GetDomain())
				return nil
			}
			e := yaml.NewEncoder(g.stdout)
			e.SetIndent(2)
			if err := e.Encode(doc); err != nil {
				return err
			}
			return e.Close()
		},
	}
	c.AddCommand(set, get, clear)
	return c
}

func (g *globals) patchTransform(cmd *cobra.Command, domain, rules string) error {
	var resp *edgev1.TenantResponse
	err := g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = edgev1.NewTenantServiceClient(cc).Update(ctx, &edgev1.UpdateTenantRequest{Domain: domain, Patch: &edgev1.TenantPatch{Transform: &rules}})
		return err
	})
	if err != nil {
		return err
	}
	state := "cleared"
	if rules != "" {
		state = "set"
	}
	return g.print(map[string]any{"domain": resp.GetTenant().GetDomain(), "transform": state, "index": strconv.FormatUint(resp.GetTenant().GetIndex(), 10)}, func(w io.Writer) {
		fmt.Fprintf(w, "transform rules %s for %s (index %d)\n", state, resp.GetTenant().GetDomain(), resp.GetTenant().GetIndex())
	})
}
