package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

// Version is set at build time with -ldflags "-X github.com/edgeproxy/edge/cli.Version=…".
var Version = "dev"

// usageError marks errors that exit with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// globals are the flags every command shares.
type globals struct {
	servers   string
	token     string
	tokenFile string
	output    string
	timeout   time.Duration
	// attemptLimit is --attempt-timeout; 0 picks the default
	// (globals.attemptTimeout).
	attemptLimit time.Duration
	local        bool
	caFile       string
	certFile     string // --tls-cert: client certificate for admin mTLS
	keyFile      string // --tls-key
	context      string // --context: the config file's context to use
	configFile   string // --config: the config file's path

	stdout, stderr io.Writer
	getenv         func(string) string
}

// Execute runs edgectl with args and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	g := &globals{stdout: stdout, stderr: stderr, getenv: getenv}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "edgectl: "+oneLine(ee.err.Error()))
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "edgectl: "+oneLine(err.Error()))
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "edgectl",
		Short: "Manage an Edge cluster: tenants, certificates, cache and members",
		Long: `Manage an Edge cluster: tenants, certificates, cache and members.

Exit codes: 0 success; 1 failure; 2 usage error (unknown command or flag,
wrong arguments, a confirmation refused); 3 the cluster has no leader
(quorum lost: writes and leader-confirmed reads fail, --local reads work;
cluster status still prints the members). diff: 0 no changes, 1 changes.

Settings: a flag, else its EDGECTL_* variable (every global flag has one:
--tls-ca is EDGECTL_TLS_CA), else the context in use (see edgectl config),
else the default.

-o json: snake_case names; every 64-bit integer (index, applied_index,
term, bytes, …) is a JSON string, in every command, as protobuf's JSON
mapping writes them (a JSON number loses precision above 2^53).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			pf := cmd.Root().PersistentFlags()
			fromEnv, err := g.applyEnv(pf)
			if err != nil {
				return err
			}
			if err := g.applyContext(pf, fromEnv); err != nil {
				return err
			}
			if err := g.checkOutput(); err != nil {
				return err
			}
			if g.timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			if g.attemptLimit < 0 {
				return usagef("--attempt-timeout must not be negative")
			}
			if (g.certFile == "") != (g.keyFile == "") {
				return usagef("--tls-cert and --tls-key go together (EDGECTL_TLS_CERT, EDGECTL_TLS_KEY)")
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.servers, "server", "127.0.0.1:7001", "admin addresses, comma-separated; the next is tried when one is unavailable or does not answer within --attempt-timeout")
	pf.StringVar(&g.token, "token", "", "admin token (prefer --token-file: a flag's value shows in ps)")
	pf.StringVar(&g.tokenFile, "token-file", "", "file holding the admin token")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	pf.DurationVar(&g.timeout, "timeout", 15*time.Second, "overall time limit for the command")
	pf.DurationVar(&g.attemptLimit, "attempt-timeout", 0, "limit for one server to connect and answer before the next is tried; doubles each round through the list; long calls are limited until their first answer only (0: the smaller of 2s and --timeout/3)")
	pf.BoolVar(&g.local, "local", false, "reads: answer from the contacted node's own state instead of a leader-confirmed read")
	pf.StringVar(&g.caFile, "tls-ca", "", "use TLS to the admin API, trusting this CA bundle for the server's certificate")
	pf.StringVar(&g.certFile, "tls-cert", "", "client certificate for admin mutual TLS (edged --admin-client-ca); with --tls-key it replaces the token; implies TLS, trusting the system roots unless --tls-ca is set")
	pf.StringVar(&g.keyFile, "tls-key", "", "private key of --tls-cert")
	pf.StringVar(&g.context, "context", "", "the config file's context to use instead of its current-context (see edgectl config)")
	pf.StringVar(&g.configFile, "config", "", "config file (default $XDG_CONFIG_HOME/edgectl/config.yaml or ~/.config/edgectl/config.yaml)")
	// Every global flag has its variable, named after it, and says so.
	pf.VisitAll(func(f *pflag.Flag) { f.Usage += " (" + envName(f.Name) + ")" })
	root.AddCommand(newTenantCmd(g), newClusterCmd(g), newCacheCmd(g), newCertCmd(g), newTransformCmd(g), newSnapshotCmd(g), newHistoryCmd(g), newVersionCmd(g))
	root.AddCommand(newApplyCmd(g), newDiffCmd(g), newExportCmd(g), newConfigCmd(g))
	// Cobra adds these two when it executes; adding them now lets
	// strictGroups see them.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			for _, sh := range c.Commands() {
				sh.Args = exactArgs(0, "no arguments")
			}
		}
	}
	root.SuggestionsMinimumDistance = 2
	strictGroups(root)
	return root
}

// strictGroups makes every command that only groups others (edgectl,
// edgectl tenant, …) fail with a usage error when it is given no
// subcommand or one it does not have. Cobra's default prints the help and
// exits 0 for an unknown subcommand (`tenant lst`) and exits 1 for an
// unknown top-level command; a script must see 2 for both.
func strictGroups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictGroups(sub)
	}
	if !c.HasSubCommands() || c.Runnable() {
		// Set explicitly: a command inherits its parent's template.
		c.SetUsageTemplate((&cobra.Command{}).UsageTemplate())
		return
	}
	c.Args = cobra.ArbitraryArgs
	// The help keeps saying "edgectl tenant [command]" only, as it did
	// before the group had a RunE.
	c.SetUsageTemplate(strings.Replace(c.UsageTemplate(), "{{if .Runnable}}", "{{if false}}", 1))
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return usagef("missing command (see %s --help)", cmd.CommandPath())
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		cmd.SuggestionsMinimumDistance = 2
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usagef("%s (see %s --help)", msg, cmd.CommandPath())
	}
}

func (g *globals) checkOutput() error {
	switch g.output {
	case "table", "json", "yaml":
		return nil
	}
	return usagef("-o %q: must be table, json or yaml", g.output)
}

func (g *globals) resolveToken() (string, error) {
	if g.token != "" {
		return g.token, nil
	}
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		// The node's token file may list several tokens during a rotation
		// (docs/operations.md): the first line is the one to send.
		tok, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return strings.TrimSpace(tok), nil
	}
	return "", nil
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("expected %s, got %d argument(s)", names, len(args))
		}
		return nil
	}
}

func rangeArgs(min, max int, names string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return usagef("expected %s, got %d argument(s)", names, len(args))
		}
		return nil
	}
}

func newVersionCmd(g *globals) *cobra.Command {
	var clientOnly bool
	c := &cobra.Command{
		Use:   "version [--client]",
		Short: "Print edgectl's version and every cluster member's",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			type memberVersion struct {
				ID      string `json:"id"`
				Version string `json:"version"`
			}
			out := struct {
				Client  string          `json:"client"`
				Members []memberVersion `json:"members,omitempty"`
			}{Client: Version}
			var err error
			if !clientOnly {
				var st *edgev1.StatusResponse
				err = g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
					st, err = edgev1.NewClusterServiceClient(cc).Status(ctx, &edgev1.StatusRequest{})
					return err
				})
				for _, m := range st.GetMembers() {
					out.Members = append(out.Members, memberVersion{m.GetId(), versionOf(m)})
				}
			}
			// The client's version is printed even when no server
			// answers; the error follows on stderr.
			if perr := g.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "edgectl\t%s\n", Version)
				for _, m := range out.Members {
					fmt.Fprintf(w, "%s\t%s\n", m.ID, m.Version)
				}
			}); perr != nil {
				return perr
			}
			return err
		},
	}
	c.Flags().BoolVar(&clientOnly, "client", false, "print edgectl's version only, contacting no server")
	return c
}

// versionOf is a member's build version for people: "unknown" when the
// member did not answer or runs a build that does not report one.
func versionOf(m *edgev1.Member) string {
	if m.GetVersion() == "" {
		return "unknown"
	}
	return m.GetVersion()
}
