package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

func newCertCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "cert", Short: "Inspect, order, import and remove TLS certificates"}
	var expiring string
	list := &cobra.Command{
		Use:   "list [--expiring 30d]",
		Short: "List certificates held by the cluster",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &edgev1.ListCertsRequest{}
			if expiring != "" {
				d, err := parseDays(expiring)
				if err != nil {
					return usagef("--expiring %q: %v", expiring, err)
				}
				req.ExpiringWithinSeconds = int64(d / time.Second)
			}
			var resp *edgev1.ListCertsResponse
			err := g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewCertServiceClient(cc).List(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return g.print(resp, func(w io.Writer) {
				if len(resp.GetCerts()) == 0 {
					fmt.Fprintln(w, "no certificates")
					return
				}
				fmt.Fprintln(w, "DOMAIN\tSTATUS\tSOURCE\tNOT AFTER\tISSUER")
				for _, c := range resp.GetCerts() {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.GetDomain(), c.GetStatus(), c.GetSource(), fmtTime(c.GetNotAfter().AsTime(), c.GetNotAfter() != nil), dash(c.GetIssuer()))
				}
			})
		},
	}
	list.Flags().StringVar(&expiring, "expiring", "", "only certificates expiring within this period (e.g. 30d, 72h)")

	// long: issue and renew wait for the CA, so the attempt deadline
	// covers connecting only (client.go, scopeConnect).
	one := func(use, short string, long bool, call func(ctx context.Context, c edgev1.CertServiceClient, domain string) (*edgev1.Cert, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use + " DOMAIN",
			Short: short,
			Args:  exactArgs(1, "DOMAIN"),
			RunE: func(cmd *cobra.Command, args []string) error {
				var resp *edgev1.Cert
				do := g.call
				if long {
					do = g.callLong
				}
				err := do(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
					resp, err = call(ctx, edgev1.NewCertServiceClient(cc), args[0])
					return err
				})
				if err != nil {
					return err
				}
				return g.printCert(resp)
			},
		}
	}
	get := one("get", "Show a certificate: issuer, not-after, SANs, status and source", false, func(ctx context.Context, c edgev1.CertServiceClient, d string) (*edgev1.Cert, error) {
		return c.Get(ctx, &edgev1.CertRef{Domain: d})
	})
	// --watch follows an order through pending, active and renewal.
	var wf watchFlags
	wf.register(get)
	get.Use += " [--watch]"
	getOnce := get.RunE
	get.RunE = func(cmd *cobra.Command, args []string) error {
		return wf.run(cmd.Context(), g, func(ctx context.Context) error {
			cmd.SetContext(ctx)
			return getOnce(cmd, args)
		})
	}
	c.AddCommand(list, get,
		one("issue", "Order a certificate now (licensed domains only)", true, func(ctx context.Context, c edgev1.CertServiceClient, d string) (*edgev1.Cert, error) {
			return c.Issue(ctx, &edgev1.CertRef{Domain: d})
		}),
		one("renew", "Order a replacement now, even if the current one is fresh", true, func(ctx context.Context, c edgev1.CertServiceClient, d string) (*edgev1.Cert, error) {
			return c.Renew(ctx, &edgev1.CertRef{Domain: d})
		}),
		newCertImport(g),
		&cobra.Command{
			Use:   "remove DOMAIN",
			Short: "Stop serving and renewing a certificate",
			Args:  exactArgs(1, "DOMAIN"),
			RunE: func(cmd *cobra.Command, args []string) error {
				// Not sent twice: a removal does not go through the
				// request-ID check, and a repeat would answer "not found".
				err := g.callLong(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) error {
					_, err := edgev1.NewCertServiceClient(cc).Remove(ctx, &edgev1.CertRef{Domain: args[0]})
					return err
				})
				if err != nil {
					return err
				}
				return g.print(map[string]string{"removed": args[0]}, func(w io.Writer) { fmt.Fprintf(w, "removed certificate for %s\n", args[0]) })
			},
		})
	return c
}

func newCertImport(g *globals) *cobra.Command {
	var certFile, keyFile string
	c := &cobra.Command{
		Use:   "import DOMAIN --cert FILE --key FILE",
		Short: "Store a certificate the customer supplies (checked: parses, key matches, covers DOMAIN, not expired)",
		Args:  exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if certFile == "" || keyFile == "" {
				return usagef("--cert and --key are required")
			}
			cb, err := os.ReadFile(certFile)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			kb, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			var resp *edgev1.Cert
			err = g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewCertServiceClient(cc).Import(ctx, &edgev1.ImportCertRequest{Domain: args[0], CertPem: string(cb), KeyPem: string(kb)})
				return err
			})
			if err != nil {
				return err
			}
			return g.printCert(resp)
		},
	}
	c.Flags().StringVar(&certFile, "cert", "", "PEM certificate chain")
	c.Flags().StringVar(&keyFile, "key", "", "PEM private key")
	return c
}

func (g *globals) printCert(c *edgev1.Cert) error {
	return g.print(c, func(w io.Writer) {
		status := c.GetStatus()
		if c.GetLastError() != "" {
			status += " (last error: " + c.GetLastError() + ")"
		}
		for _, r := range [][2]string{
			{"Domain", c.GetDomain()},
			{"Status", status},
			{"Source", c.GetSource()},
			{"Issuer", dash(c.GetIssuer())},
			{"Not After", fmtTime(c.GetNotAfter().AsTime(), c.GetNotAfter() != nil)},
			{"SANs", dash(strings.Join(c.GetSans(), ", "))},
			{"Serial", dash(c.GetSerial())},
		} {
			fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1])
		}
	})
}

func fmtTime(t time.Time, ok bool) string {
	if !ok {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// parseDays accepts Go durations and whole days ("30d").
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("want a number of days like 30d")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want 30d or a duration like 72h")
	}
	return d, nil
}
