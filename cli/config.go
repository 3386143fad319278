package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// configFile is edgectl's config file (docs/cli.md "Contexts"): named
// connection settings, one per cluster, and the one in use. It holds paths
// only, never a token's value: a config file gets copied between machines,
// backed up and shown on screen, and a token in it would travel along.
type configFile struct {
	CurrentContext string          `yaml:"current-context,omitempty"`
	Contexts       []configContext `yaml:"contexts"`
}

// configContext is one cluster's connection settings. Relative paths are
// relative to the config file's directory; "~/" is the home directory.
type configContext struct {
	Name      string   `yaml:"name"`
	Servers   []string `yaml:"servers,omitempty"`
	TokenFile string   `yaml:"token-file,omitempty"`
	TLSCA     string   `yaml:"tls-ca,omitempty"`
	TLSCert   string   `yaml:"tls-cert,omitempty"`
	TLSKey    string   `yaml:"tls-key,omitempty"`
	Timeout   string   `yaml:"timeout,omitempty"`
	// Token is never written; it exists so that a hand-written token
	// value is refused by name instead of as an unknown field.
	Token string `yaml:"token,omitempty"`
}

// configPath is where the config file lives: --config (EDGECTL_CONFIG),
// else $XDG_CONFIG_HOME/edgectl/config.yaml, else
// ~/.config/edgectl/config.yaml.
func (g *globals) configPath() (string, error) {
	if g.configFile != "" {
		return g.configFile, nil
	}
	if x := g.getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "edgectl", "config.yaml"), nil
	}
	home := g.getenv("HOME")
	if home == "" {
		return "", errors.New("config file: neither --config, XDG_CONFIG_HOME nor HOME is set")
	}
	return filepath.Join(home, ".config", "edgectl", "config.yaml"), nil
}

// loadConfig reads the config file; a missing file is an empty config.
func (g *globals) loadConfig() (*configFile, string, error) {
	path, err := g.configPath()
	if err != nil {
		return nil, "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &configFile{}, path, nil
	}
	if err != nil {
		return nil, path, fmt.Errorf("config file: %w", err)
	}
	cf, err := parseConfig(b)
	if err != nil {
		return nil, path, fmt.Errorf("config file %s: %w", path, err)
	}
	return cf, path, nil
}

func parseConfig(b []byte) (*configFile, error) {
	cf := &configFile{}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(cf); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		return nil, err
	}
	seen := map[string]bool{}
	for _, c := range cf.Contexts {
		if c.Name == "" {
			return nil, errors.New("a context without a name")
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("context %q: defined twice", c.Name)
		}
		seen[c.Name] = true
		if c.Token != "" {
			return nil, fmt.Errorf("context %q: token: the config file holds a token-file path, never a token", c.Name)
		}
		if c.Timeout != "" {
			if d, err := time.ParseDuration(c.Timeout); err != nil || d <= 0 {
				return nil, fmt.Errorf("context %q: timeout %q: want a positive duration such as 30s", c.Name, c.Timeout)
			}
		}
		if (c.TLSCert == "") != (c.TLSKey == "") {
			return nil, fmt.Errorf("context %q: tls-cert and tls-key go together", c.Name)
		}
	}
	return cf, nil
}

func (cf *configFile) context(name string) *configContext {
	for i := range cf.Contexts {
		if cf.Contexts[i].Name == name {
			return &cf.Contexts[i]
		}
	}
	return nil
}

// save writes the config file readable by its owner only (0600, in a 0700
// directory when edgectl creates it), through a rename so that a reader
// never sees half a file.
func (cf *configFile) save(path string) error {
	b, err := yaml.Marshal(cf)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("config file: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("config file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return nil
}

// envName is the environment variable of a global flag: EDGECTL_ and the
// flag's name in capitals, dashes as underscores (--tls-ca: EDGECTL_TLS_CA).
func envName(flag string) string {
	return "EDGECTL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv gives every global flag not set on the command line the value
// of its EDGECTL_* variable, and returns the names it set.
func (g *globals) applyEnv(pf *pflag.FlagSet) (map[string]bool, error) {
	fromEnv := map[string]bool{}
	var err error
	pf.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		v := g.getenv(envName(f.Name))
		if v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = usagef("%s=%q: %v", envName(f.Name), v, serr)
			return
		}
		fromEnv[f.Name] = true
	})
	return fromEnv, err
}

// applyContext fills the connection settings that neither a flag nor an
// EDGECTL_* variable gave from the context in use: --context
// (EDGECTL_CONTEXT), else the file's current-context, else none.
func (g *globals) applyContext(pf *pflag.FlagSet, fromEnv map[string]bool) error {
	if g.context == "" && g.configFile == "" && g.getenv("XDG_CONFIG_HOME") == "" && g.getenv("HOME") == "" {
		return nil // no config file to look for (a CI job without HOME)
	}
	cf, path, err := g.loadConfig()
	if err != nil {
		return usageError{err}
	}
	name := g.context
	if name == "" {
		name = cf.CurrentContext
	}
	if name == "" {
		return nil
	}
	ctx := cf.context(name)
	if ctx == nil {
		return usagef("context %q: not in %s (see edgectl config get-contexts)", name, path)
	}
	given := func(names ...string) bool {
		for _, n := range names {
			if pf.Lookup(n).Changed || fromEnv[n] {
				return true
			}
		}
		return false
	}
	dir := filepath.Dir(path)
	if !given("server") && len(ctx.Servers) > 0 {
		g.servers = strings.Join(ctx.Servers, ",")
	}
	if !given("token-file") && ctx.TokenFile != "" {
		g.tokenFile = g.expandPath(dir, ctx.TokenFile)
	}
	if !given("tls-ca") && ctx.TLSCA != "" {
		g.caFile = g.expandPath(dir, ctx.TLSCA)
	}
	// The certificate and its key are one setting: a flag for either
	// replaces the context's pair.
	if !given("tls-cert", "tls-key") && ctx.TLSCert != "" {
		g.certFile, g.keyFile = g.expandPath(dir, ctx.TLSCert), g.expandPath(dir, ctx.TLSKey)
	}
	if !given("timeout") && ctx.Timeout != "" {
		g.timeout, _ = time.ParseDuration(ctx.Timeout) // checked by parseConfig
	}
	return nil
}

// expandPath resolves a path from the config file: "~/" is the home
// directory, a relative path is relative to the file's directory.
func (g *globals) expandPath(dir, p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home := g.getenv("HOME"); home != "" {
			return filepath.Join(home, rest)
		}
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func newConfigCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Manage contexts: named connection settings for each cluster",
		Long: `Manage contexts: named connection settings for each cluster.

The config file is --config (EDGECTL_CONFIG), else
$XDG_CONFIG_HOME/edgectl/config.yaml, else ~/.config/edgectl/config.yaml.
edgectl writes it with mode 0600. It holds paths (token file, CA, client
certificate and key), never a token's value.

Each setting comes from, in order: a flag, its EDGECTL_* variable, the
context (--context, EDGECTL_CONTEXT, else current-context), the default.`,
		Example: `  edgectl config set-context prod --server edge-0:7001,edge-1:7001 --token-file ~/.config/edgectl/prod.token --tls-ca prod-ca.pem
  edgectl config use-context prod
  edgectl --context staging tenant list`,
		// No server is contacted and no context applies: the config
		// commands manage the file itself.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := g.applyEnv(cmd.Root().PersistentFlags()); err != nil {
				return err
			}
			return g.checkOutput()
		},
	}
	c.AddCommand(newConfigGetContexts(g), newConfigCurrentContext(g), newConfigUseContext(g), newConfigSetContext(g), newConfigDeleteContext(g))
	return c
}

func newConfigGetContexts(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get-contexts",
		Short: "List the contexts; * marks the current one",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cf, _, err := g.loadConfig()
			if err != nil {
				return err
			}
			type row struct {
				Name      string   `json:"name"`
				Current   bool     `json:"current"`
				Servers   []string `json:"servers"`
				TokenFile string   `json:"token_file"`
				TLSCA     string   `json:"tls_ca"`
				TLSCert   string   `json:"tls_cert"`
				TLSKey    string   `json:"tls_key"`
				Timeout   string   `json:"timeout"`
			}
			out := struct {
				CurrentContext string `json:"current_context"`
				Contexts       []row  `json:"contexts"`
			}{CurrentContext: cf.CurrentContext, Contexts: []row{}}
			for _, c := range cf.Contexts {
				out.Contexts = append(out.Contexts, row{c.Name, c.Name == cf.CurrentContext, nonNil(c.Servers), c.TokenFile, c.TLSCA, c.TLSCert, c.TLSKey, c.Timeout})
			}
			return g.print(out, func(w io.Writer) {
				fmt.Fprintln(w, "CURRENT\tNAME\tSERVERS\tTOKEN FILE\tTLS")
				for _, c := range cf.Contexts {
					cur := ""
					if c.Name == cf.CurrentContext {
						cur = "*"
					}
					tls := "-"
					switch {
					case c.TLSCert != "":
						tls = "mTLS"
					case c.TLSCA != "":
						tls = "TLS"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", cur, c.Name, dash(strings.Join(c.Servers, ",")), dash(c.TokenFile), tls)
				}
			})
		},
	}
}

func newConfigCurrentContext(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "current-context",
		Short: "Print the current context's name",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cf, path, err := g.loadConfig()
			if err != nil {
				return err
			}
			if cf.CurrentContext == "" {
				return fmt.Errorf("no current context in %s (see edgectl config use-context)", path)
			}
			return g.print(map[string]string{"current_context": cf.CurrentContext}, func(w io.Writer) { fmt.Fprintln(w, cf.CurrentContext) })
		},
	}
}

func newConfigUseContext(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "use-context NAME",
		Short: "Make NAME the current context",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cf, path, err := g.loadConfig()
			if err != nil {
				return err
			}
			if cf.context(args[0]) == nil {
				return fmt.Errorf("context %q: not in %s (see edgectl config get-contexts)", args[0], path)
			}
			cf.CurrentContext = args[0]
			if err := cf.save(path); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "switched to context %q\n", args[0])
			return nil
		},
	}
}

func newConfigSetContext(g *globals) *cobra.Command {
	var s configContext
	var servers string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "set-context NAME [--server ADDRS] [--token-file PATH] [--tls-ca PATH] [--tls-cert PATH --tls-key PATH] [--timeout D]",
		Short: "Create or change a context; only the flags given change",
		Long: `Create or change a context; only the flags given change, and a flag given
as "" clears its setting. Paths are stored absolute. There is no --token:
the file holds the path of a token file, never a token.`,
		Example: "  edgectl config set-context prod --server edge-0:7001,edge-1:7001,edge-2:7001 --token-file ~/.config/edgectl/prod.token",
		Args:    exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			cf, path, err := g.loadConfig()
			if err != nil {
				return err
			}
			ctx := cf.context(args[0])
			if ctx == nil {
				cf.Contexts = append(cf.Contexts, configContext{Name: args[0]})
				ctx = &cf.Contexts[len(cf.Contexts)-1]
			}
			if fl.Changed("server") {
				ctx.Servers = splitList(servers)
			}
			for _, p := range []struct {
				flag string
				val  string
				dst  *string
			}{{"token-file", s.TokenFile, &ctx.TokenFile}, {"tls-ca", s.TLSCA, &ctx.TLSCA}, {"tls-cert", s.TLSCert, &ctx.TLSCert}, {"tls-key", s.TLSKey, &ctx.TLSKey}} {
				if !fl.Changed(p.flag) {
					continue
				}
				*p.dst = p.val
				if p.val != "" && !strings.HasPrefix(p.val, "~/") {
					abs, err := filepath.Abs(p.val)
					if err != nil {
						return err
					}
					*p.dst = abs
				}
			}
			if fl.Changed("timeout") {
				if timeout < 0 {
					return usagef("--timeout must not be negative")
				}
				ctx.Timeout = ""
				if timeout > 0 {
					ctx.Timeout = timeout.String()
				}
			}
			if (ctx.TLSCert == "") != (ctx.TLSKey == "") {
				return usagef("context %q: --tls-cert and --tls-key go together", ctx.Name)
			}
			if err := cf.save(path); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "context %q saved in %s\n", ctx.Name, path)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&servers, "server", "", "admin addresses, comma-separated")
	fl.StringVar(&s.TokenFile, "token-file", "", "file holding the admin token (the path is stored, not the token)")
	fl.StringVar(&s.TLSCA, "tls-ca", "", "CA bundle for the admin API's certificate")
	fl.StringVar(&s.TLSCert, "tls-cert", "", "client certificate for admin mutual TLS")
	fl.StringVar(&s.TLSKey, "tls-key", "", "private key of --tls-cert")
	fl.DurationVar(&timeout, "timeout", 0, "overall time limit for commands in this context (0 clears it)")
	return c
}

func newConfigDeleteContext(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete-context NAME",
		Short: "Remove a context (and unset it if it is the current one)",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cf, path, err := g.loadConfig()
			if err != nil {
				return err
			}
			if cf.context(args[0]) == nil {
				return fmt.Errorf("context %q: not in %s", args[0], path)
			}
			kept := cf.Contexts[:0]
			for _, c := range cf.Contexts {
				if c.Name != args[0] {
					kept = append(kept, c)
				}
			}
			cf.Contexts = kept
			if cf.CurrentContext == args[0] {
				cf.CurrentContext = ""
			}
			return cf.save(path)
		},
	}
}
