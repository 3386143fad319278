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
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

func newTenantCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "tenant", Short: "Add, inspect, change and remove tenants (customer domains)"}
	c.AddCommand(newTenantAdd(g), newTenantGet(g), newTenantList(g), newTenantUpdate(g), newTenantTransformCmd(g),
		newTenantState(g, "suspend"), newTenantState(g, "resume"), newTenantRemove(g))
	return c
}

// tenantFlags are shared by add and update.
type tenantFlags struct {
	origin, originHost, serverName, caFile, certFile, keyFile string
	aliases                                                   []string
	plan, expires                                             string
	insecure, suspended, httpsRedirect, metrics               bool
	cacheTTL                                                  time.Duration
	cacheOverride, cacheCookies, cacheAuth                    bool
	cacheSIE, cacheSWR                                        time.Duration
	cacheKeepCDN, cacheClientNoCache                          bool
	earlyHints                                                bool
}

func (f *tenantFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.origin, "origin", "", "origin base URL, http:// or https://")
	fl.StringArrayVar(&f.aliases, "alias", nil, "additional domain served by this tenant (repeatable)")
	fl.StringVar(&f.plan, "plan", "", "license plan name")
	fl.StringVar(&f.expires, "expires", "", "license expiry, RFC 3339 (e.g. 2027-01-31T00:00:00Z); \"never\" clears it on update")
	fl.StringVar(&f.originHost, "origin-host", "", "Host header sent to the origin (default: the origin URL's host)")
	fl.StringVar(&f.serverName, "origin-server-name", "", "TLS server name (SNI) for the origin")
	fl.StringVar(&f.caFile, "origin-ca-file", "", "PEM CA bundle that verifies the origin's certificate")
	fl.StringVar(&f.certFile, "origin-client-cert", "", "PEM client certificate for origin mTLS")
	fl.StringVar(&f.keyFile, "origin-client-key", "", "PEM client key for origin mTLS")
	fl.BoolVar(&f.insecure, "origin-insecure-skip-verify", false, "do not verify the origin's TLS certificate (unsafe)")
	fl.BoolVar(&f.suspended, "suspended", false, "license suspended: the domain gets 403")
	fl.BoolVar(&f.httpsRedirect, "https-redirect", false, "redirect plain HTTP requests to HTTPS")
	fl.BoolVar(&f.metrics, "metrics", false, "export per-tenant metric series (edge_tenant_requests_total)")
	fl.DurationVar(&f.cacheTTL, "cache-ttl", 0, "default cache TTL for responses without explicit freshness")
	fl.BoolVar(&f.cacheOverride, "cache-override-ttl", false, "use --cache-ttl even when the origin sends its own")
	fl.BoolVar(&f.cacheCookies, "cache-cookies", false, "allow caching responses with Set-Cookie")
	fl.BoolVar(&f.cacheAuth, "cache-authorized", false, "let requests with Authorization use the cache; their responses are stored and shared only if marked public, s-maxage or must-revalidate (RFC 9111 §3.5)")
	fl.DurationVar(&f.cacheSIE, "cache-stale-if-error", 0, "serve stale content this long past expiry when the origin fails, if the origin sends no stale-if-error (e.g. 1h)")
	fl.DurationVar(&f.cacheSWR, "cache-stale-while-revalidate", 0, "serve stale content this long past expiry while refreshing it in the background, if the origin sends no stale-while-revalidate")
	fl.BoolVar(&f.cacheKeepCDN, "cache-keep-cdn-cache-control", false, "relay CDN-Cache-Control to clients (another CDN sits in front of Edge); stripped by default")
	fl.BoolVar(&f.cacheClientNoCache, "cache-client-no-cache", false, "let a client's Cache-Control: no-cache or max-age=0 revalidate with the origin; ignored by default")
	fl.BoolVar(&f.earlyHints, "early-hints", false, "send a 103 Early Hints with the preload/preconnect Link headers of a cached HTML page before it (the origin's own 103s are always forwarded); needs every node on a build of protocol level 2")
}

// cachePolicy is the add command's cache policy from the flags.
func (f *tenantFlags) cachePolicy() *edgev1.CachePolicy {
	return &edgev1.CachePolicy{
		DefaultTtlSeconds: int64(f.cacheTTL / time.Second), OverrideTtl: f.cacheOverride,
		CacheCookies: f.cacheCookies, CacheAuthorized: f.cacheAuth,
		StaleIfErrorSeconds: int64(f.cacheSIE / time.Second), StaleWhileRevalidateSeconds: int64(f.cacheSWR / time.Second),
		KeepCdnCacheControl: f.cacheKeepCDN, ClientNoCache: f.cacheClientNoCache,
	}
}

func readPEMFlag(flag, file string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	return string(b), nil
}

func parseExpires(s string) (*timestamppb.Timestamp, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, usagef("--expires %q: want RFC 3339, e.g. 2027-01-31T00:00:00Z", s)
	}
	return timestamppb.New(t), nil
}

func newTenantAdd(g *globals) *cobra.Command {
	var f tenantFlags
	c := &cobra.Command{
		Use:     "add DOMAIN --origin URL",
		Short:   "Add a tenant",
		Example: "  edgectl tenant add shop.example --origin https://origin.shop.example --alias www.shop.example",
		Args:    exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.origin == "" {
				return usagef("--origin is required")
			}
			t := &edgev1.Tenant{
				Domain:        args[0],
				Aliases:       f.aliases,
				License:       &edgev1.License{Status: "active", Plan: f.plan},
				Origin:        &edgev1.Origin{Url: f.origin, HostHeader: f.originHost, Tls: &edgev1.OriginTLS{ServerName: f.serverName, InsecureSkipVerify: f.insecure}},
				HttpsRedirect: f.httpsRedirect,
				Metrics:       f.metrics,
				EarlyHints:    f.earlyHints,
				Cache:         f.cachePolicy(),
			}
			if f.suspended {
				t.License.Status = "suspended"
			}
			if f.expires != "" {
				ts, err := parseExpires(f.expires)
				if err != nil {
					return err
				}
				t.License.ExpiresAt = ts
			}
			var err error
			if t.Origin.Tls.CaPem, err = readPEMFlag("origin-ca-file", f.caFile); err != nil {
				return err
			}
			if t.Origin.Tls.ClientCertPem, err = readPEMFlag("origin-client-cert", f.certFile); err != nil {
				return err
			}
			if t.Origin.Tls.ClientKeyPem, err = readPEMFlag("origin-client-key", f.keyFile); err != nil {
				return err
			}
			var resp *edgev1.TenantResponse
			err = g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewTenantServiceClient(cc).Add(ctx, &edgev1.AddTenantRequest{Tenant: t})
				return err
			})
			if err != nil {
				return err
			}
			return g.printTenant(resp.GetTenant())
		},
	}
	f.register(c)
	return c
}

func (g *globals) consistency() edgev1.Consistency {
	if g.local {
		return edgev1.Consistency_CONSISTENCY_LOCAL
	}
	return edgev1.Consistency_CONSISTENCY_LEADER
}

func newTenantGet(g *globals) *cobra.Command {
	var wf watchFlags
	c := &cobra.Command{
		Use:   "get DOMAIN [--watch]",
		Short: "Show one tenant (by its domain or an alias)",
		Args:  exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return wf.run(cmd.Context(), g, func(ctx context.Context) error {
				var resp *edgev1.TenantResponse
				err := g.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
					resp, err = edgev1.NewTenantServiceClient(cc).Get(ctx, &edgev1.GetTenantRequest{Domain: args[0], Consistency: g.consistency()})
					return err
				})
				if err != nil {
					return err
				}
				return g.printTenant(resp.GetTenant())
			})
		},
	}
	wf.register(c)
	return c
}

// listPage is how many tenants one ListTenants call asks for, and
// tenant list's default --limit: all of a small cluster's tenants print as
// they always did, and a page stays well under gRPC's 4 MiB message limit
// even when every tenant carries origin CA and client PEM (~8 KB).
const listPage = 500

func newTenantList(g *globals) *cobra.Command {
	var (
		limit                   int
		pageToken, state, oHost string
		all                     bool
	)
	c := &cobra.Command{
		Use:   "list [--limit N] [--page-token T | --all] [--status S] [--origin-host H]",
		Short: "List tenants ordered by domain, a page at a time",
		Long: `List tenants ordered by domain, at most --limit (500) of them. When there
are more, the last line on stderr (in JSON and YAML, next_page_token) gives
the --page-token of the next page; --all fetches every page. A page token
is only good with the same --status and --origin-host.`,
		Example: `  edgectl tenant list --status suspended
  edgectl tenant list --origin-host origin.shop.example -o json
  edgectl tenant list --limit 100 --page-token "$(edgectl tenant list --limit 100 -o json | jq -r .next_page_token)"
  edgectl tenant list --all -o json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit must not be negative")
			}
			if all && (cmd.Flags().Changed("limit") || pageToken != "") {
				return usagef("--all fetches every page: give it without --limit and --page-token")
			}
			switch state {
			case "", "active", "suspended", "expired":
			default:
				return usagef("--status %q: must be active, suspended or expired", state)
			}
			if limit == 0 {
				all = true
			}
			out := &edgev1.ListTenantsResponse{}
			token := pageToken
			// opaque: token came from a server that makes opaque tokens,
			// which an older server would misread as a domain.
			opaque := token != ""
			for {
				page := int32(listPage)
				if !all {
					page = int32(min(limit-len(out.Tenants), listPage))
				}
				req := &edgev1.ListTenantsRequest{Limit: page, PageToken: token, Consistency: g.consistency(), Status: state, OriginHost: oHost}
				var resp *edgev1.ListTenantsResponse
				err := g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
					resp, err = edgev1.NewTenantServiceClient(cc).List(ctx, req)
					return err
				})
				if err != nil {
					return err
				}
				if resp.GetPaging() < 2 && (state != "" || oHost != "" || opaque) {
					// An older server ignores the filters and reads an
					// opaque token as a domain: its answer is not what
					// was asked for (during a rolling upgrade, say).
					return errors.New("the server is older than --status, --origin-host and page tokens: upgrade it, or list with no filters")
				}
				opaque = resp.GetPaging() >= 2
				out.Tenants = append(out.Tenants, resp.GetTenants()...)
				out.Index = resp.GetIndex()
				token = resp.GetNextPageToken()
				if token == "" || (!all && len(out.Tenants) >= limit) {
					out.NextPageToken = token
					break
				}
			}
			// paging is between server and client; scripts see the
			// tenants, the index and next_page_token as before.
			plain, err := toPlain(out)
			if err != nil {
				return fmt.Errorf("encode output: %w", err)
			}
			delete(plain.(map[string]any), "paging")
			err = g.print(plain, func(w io.Writer) {
				fmt.Fprintln(w, "DOMAIN\tALIASES\tLICENSE\tPLAN\tEXPIRES\tORIGIN\tINDEX")
				for _, t := range out.GetTenants() {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", t.GetDomain(), dash(strings.Join(t.GetAliases(), ",")),
						licenseState(t), dash(t.GetLicense().GetPlan()), expires(t), t.GetOrigin().GetUrl(), t.GetIndex())
				}
			})
			if err == nil && out.NextPageToken != "" && g.output == "table" {
				fmt.Fprintf(g.stderr, "more tenants: --page-token %s for the next page, or --all\n", out.NextPageToken)
			}
			return err
		},
	}
	fl := c.Flags()
	fl.IntVar(&limit, "limit", listPage, "show at most this many tenants (0: all, as --all)")
	fl.StringVar(&pageToken, "page-token", "", "start after the page that printed this token")
	fl.BoolVar(&all, "all", false, "fetch every page")
	fl.StringVar(&state, "status", "", "only tenants whose license is active, suspended or expired")
	fl.StringVar(&oHost, "origin-host", "", "only tenants whose origin URL's host or Host header override is this name")
	return c
}

func newTenantUpdate(g *globals) *cobra.Command {
	var f tenantFlags
	var expectIndex uint64
	var keepHost bool
	c := &cobra.Command{
		Use:     "update DOMAIN [flags]",
		Short:   "Change a tenant; only the flags given change",
		Example: "  edgectl tenant update shop.example --origin https://new-origin.shop.example",
		Args:    exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := &edgev1.TenantPatch{}
			fl := cmd.Flags()
			changed := 0
			set := func(name string) bool {
				if fl.Changed(name) {
					changed++
					return true
				}
				return false
			}
			if set("origin") {
				p.OriginUrl = &f.origin
			}
			if set("alias") {
				p.SetAliases, p.Aliases = true, f.aliases
			}
			if set("plan") {
				p.Plan = &f.plan
			}
			if set("expires") {
				if f.expires == "never" || f.expires == "" {
					p.ClearExpires = true
				} else {
					ts, err := parseExpires(f.expires)
					if err != nil {
						return err
					}
					p.ExpiresAt = ts
				}
			}
			if set("origin-host") {
				p.OriginHost = &f.originHost
			}
			if set("origin-server-name") {
				p.OriginServerName = &f.serverName
			}
			for _, pf := range []struct {
				flag, file string
				dst        **string
			}{{"origin-ca-file", f.caFile, &p.OriginCaPem}, {"origin-client-cert", f.certFile, &p.OriginClientCertPem}, {"origin-client-key", f.keyFile, &p.OriginClientKeyPem}} {
				if set(pf.flag) {
					s, err := readPEMFlag(pf.flag, pf.file)
					if err != nil {
						return err
					}
					*pf.dst = &s
				}
			}
			if set("origin-insecure-skip-verify") {
				p.OriginInsecureSkipVerify = &f.insecure
			}
			if set("suspended") {
				p.Suspended = &f.suspended
			}
			if set("https-redirect") {
				p.HttpsRedirect = &f.httpsRedirect
			}
			if set("metrics") {
				p.Metrics = &f.metrics
			}
			if set("early-hints") {
				p.EarlyHints = &f.earlyHints
			}
			if set("cache-ttl") {
				s := int64(f.cacheTTL / time.Second)
				p.CacheDefaultTtlSeconds = &s
			}
			if set("cache-override-ttl") {
				p.CacheOverrideTtl = &f.cacheOverride
			}
			if set("cache-cookies") {
				p.CacheCookies = &f.cacheCookies
			}
			if set("cache-authorized") {
				p.CacheAuthorized = &f.cacheAuth
			}
			if set("cache-stale-if-error") {
				s := int64(f.cacheSIE / time.Second)
				p.CacheStaleIfErrorSeconds = &s
			}
			if set("cache-stale-while-revalidate") {
				s := int64(f.cacheSWR / time.Second)
				p.CacheStaleWhileRevalidateSeconds = &s
			}
			if set("cache-keep-cdn-cache-control") {
				p.CacheKeepCdnCacheControl = &f.cacheKeepCDN
			}
			if set("cache-client-no-cache") {
				p.CacheClientNoCache = &f.cacheClientNoCache
			}
			if changed == 0 {
				return usagef("nothing to update: give at least one flag (see edgectl tenant update --help)")
			}
			if err := g.checkOriginHost(cmd, args[0], keepHost); err != nil {
				return err
			}
			var resp *edgev1.TenantResponse
			err := g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewTenantServiceClient(cc).Update(ctx, &edgev1.UpdateTenantRequest{Domain: args[0], Patch: p, ExpectIndex: expectIndex})
				return err
			})
			if err != nil {
				return err
			}
			return g.printTenant(resp.GetTenant())
		},
	}
	f.register(c)
	c.Flags().Uint64Var(&expectIndex, "expect-index", 0, "fail unless the tenant is still at this index (optimistic concurrency)")
	c.Flags().BoolVar(&keepHost, "keep-origin-host", false, "with --origin: keep sending the tenant's current --origin-host to the new origin")
	return c
}

// checkOriginHost refuses `update --origin` for a tenant that sends its
// origin a Host header of its own unless the user says which Host the new
// origin gets: the old one was chosen for the old origin, and keeping it
// silently sends the new origin a name it may not serve (issue 18 item
// 13). A tenant without one needs no choice: its Host follows the URL.
func (g *globals) checkOriginHost(cmd *cobra.Command, domain string, keep bool) error {
	fl := cmd.Flags()
	if keep && fl.Changed("origin-host") {
		return usagef("--keep-origin-host and --origin-host: give one")
	}
	if !fl.Changed("origin") || fl.Changed("origin-host") || keep {
		return nil
	}
	var resp *edgev1.TenantResponse
	err := g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = edgev1.NewTenantServiceClient(cc).Get(ctx, &edgev1.GetTenantRequest{Domain: domain, Consistency: g.consistency()})
		return err
	})
	if err != nil {
		return err
	}
	if h := resp.GetTenant().GetOrigin().GetHostHeader(); h != "" {
		return usagef("%s sends Host %q to its origin: with a new --origin, give --origin-host NAME, --origin-host \"\" (the new URL's host) or --keep-origin-host", domain, h)
	}
	return nil
}

func newTenantState(g *globals, verb string) *cobra.Command {
	short := map[string]string{"suspend": "Suspend a tenant's license: its domains get 403", "resume": "Resume a suspended tenant"}[verb]
	return &cobra.Command{
		Use:   verb + " DOMAIN",
		Short: short,
		Args:  exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *edgev1.TenantResponse
			err := g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				c := edgev1.NewTenantServiceClient(cc)
				if verb == "suspend" {
					resp, err = c.Suspend(ctx, &edgev1.TenantRef{Domain: args[0]})
				} else {
					resp, err = c.Resume(ctx, &edgev1.TenantRef{Domain: args[0]})
				}
				return err
			})
			if err != nil {
				return err
			}
			return g.printTenant(resp.GetTenant())
		},
	}
}

func newTenantRemove(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove DOMAIN",
		Short: "Remove a tenant and all its domains",
		Args:  exactArgs(1, "DOMAIN"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp *edgev1.RemoveTenantResponse
			err := g.call(cmd.Context(), func(ctx context.Context, cc *grpc.ClientConn) (err error) {
				resp, err = edgev1.NewTenantServiceClient(cc).Remove(ctx, &edgev1.TenantRef{Domain: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			return g.print(resp, func(w io.Writer) { fmt.Fprintf(w, "removed %s (index %d)\n", resp.GetDomain(), resp.GetIndex()) })
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func licenseState(t *edgev1.Tenant) string {
	if t.GetExpired() {
		return "expired"
	}
	return t.GetLicense().GetStatus()
}

func expires(t *edgev1.Tenant) string {
	if e := t.GetLicense().GetExpiresAt(); e != nil {
		return e.AsTime().UTC().Format(time.RFC3339)
	}
	return "never"
}

func (g *globals) printTenant(t *edgev1.Tenant) error {
	return g.print(t, func(w io.Writer) {
		tls := t.GetOrigin().GetTls()
		rows := [][2]string{
			{"Domain", t.GetDomain()},
			{"Aliases", dash(strings.Join(t.GetAliases(), ", "))},
			{"License", licenseState(t)},
			{"Plan", dash(t.GetLicense().GetPlan())},
			{"Expires", expires(t)},
			{"Origin", t.GetOrigin().GetUrl()},
			{"Origin Host", dash(t.GetOrigin().GetHostHeader())},
			{"Origin SNI", dash(tls.GetServerName())},
			{"Origin CA", yesNo(tls.GetCaPem() != "", "tenant bundle", "system roots")},
			{"Origin mTLS", yesNo(tls.GetClientCertPem() != "", "client certificate", "-")},
			{"Verify TLS", yesNo(!tls.GetInsecureSkipVerify(), "yes", "NO (insecure-skip-verify)")},
			{"HTTPS Redirect", yesNo(t.GetHttpsRedirect(), "yes", "no")},
			{"Updated", t.GetUpdatedAt().AsTime().UTC().Format(time.RFC3339)},
			{"Index", fmt.Sprint(t.GetIndex())},
		}
		for _, r := range rows {
			fmt.Fprintf(w, "%s:\t%s\n", r[0], r[1])
		}
	})
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}
