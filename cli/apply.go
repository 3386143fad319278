package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

// exitError ends edgectl with a given status. With a nil err nothing is
// printed to stderr: diff uses it to say "there are changes" (status 1).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e exitError) Unwrap() error { return e.err }

// applyOptions are the flags shared by apply and diff.
type applyOptions struct {
	files []string
	prune bool
}

func (o *applyOptions) register(c *cobra.Command) {
	c.Flags().StringArrayVarP(&o.files, "file", "f", nil, "tenants file (YAML, multi-document allowed; - for standard input); repeatable")
	prune := "delete tenants that are in the cluster but not in the files"
	if c.Name() == "diff" {
		prune = "also show as deletions the tenants that are in the cluster but not in the files (what apply --prune would delete); nothing is deleted"
	}
	c.Flags().BoolVar(&o.prune, "prune", false, prune)
}

func newApplyCmd(g *globals) *cobra.Command {
	var o applyOptions
	var dryRun bool
	var expectIndex uint64
	c := &cobra.Command{
		Use:   "apply -f FILE [--dry-run] [--prune] [--expect-index N]",
		Short: "Make the cluster's tenants match a YAML file (idempotent; see docs/gitops.md)",
		Example: `  edgectl apply -f tenants.yaml --dry-run
  edgectl apply -f tenants.yaml --prune --expect-index 1234
  cat tenants.yaml | edgectl apply -f -`,
		Args: exactArgs(0, "no arguments (give files with -f)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := g.planFrom(cmd, o)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("expect-index") && p.Index != expectIndex {
				return fmt.Errorf("--expect-index %d: the cluster is at index %d; nothing written (export again or drop --expect-index)", expectIndex, p.Index)
			}
			if !dryRun && len(p.Changes) > 0 {
				if err := g.applyPlan(cmd.Context(), p); err != nil {
					return err
				}
			}
			return g.print(p, func(w io.Writer) { p.writeTable(w, dryRun) })
		},
	}
	o.register(c)
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and write nothing")
	c.Flags().Uint64Var(&expectIndex, "expect-index", 0, "fail, writing nothing, unless the cluster is at this raft index (from export or diff -o json)")
	return c
}

func newDiffCmd(g *globals) *cobra.Command {
	var o applyOptions
	c := &cobra.Command{
		Use:   "diff -f FILE [--prune]",
		Short: "Show what apply would change; exit 0 when nothing, 1 when something, 2 on error",
		Example: `  edgectl diff -f tenants.yaml
  edgectl export | edgectl diff -f -`,
		Args: exactArgs(0, "no arguments (give files with -f)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := g.planFrom(cmd, o)
			if err != nil {
				return exitError{2, err}
			}
			if err := g.print(p, func(w io.Writer) { p.writeTable(w, false) }); err != nil {
				return exitError{2, err}
			}
			if len(p.Changes) > 0 {
				return exitError{1, nil}
			}
			return nil
		},
	}
	o.register(c)
	return c
}

func newExportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "export",
		Short: "Print every tenant as YAML that apply and diff accept back unchanged",
		Long: `Print every tenant, sorted by domain, in the apply file format.
Client keys never leave the cluster: a tenant with one is exported with
origin_client_key: "<unchanged>", which apply reads as "keep the stored key".
With -o json the same document is printed as JSON (which apply also reads).`,
		Example: `  edgectl export > tenants.yaml
  edgectl export | edgectl diff -f -`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, index, _, err := g.listAll(cmd.Context())
			if err != nil {
				return err
			}
			return g.writeExport(ts, index)
		},
	}
}

// writeExport prints tenants as an apply file: YAML with a header
// comment, or JSON with -o json.
func (g *globals) writeExport(ts []*edgev1.Tenant, index uint64) error {
	doc := applyFile{Tenants: make([]tenantSpec, 0, len(ts))}
	for _, t := range ts {
		s, err := specFromProto(t)
		if err != nil {
			return err
		}
		doc.Tenants = append(doc.Tenants, s)
	}
	slices.SortFunc(doc.Tenants, func(a, b tenantSpec) int { return strings.Compare(a.Domain, b.Domain) })
	if g.output == "json" {
		e := json.NewEncoder(g.stdout)
		e.SetIndent("", "  ")
		e.SetEscapeHTML(false)
		return e.Encode(doc)
	}
	fmt.Fprintf(g.stdout, "# edgectl export: %d tenant(s) at raft index %d.\n# Check with `edgectl diff -f FILE`; apply with `edgectl apply -f FILE --expect-index %d`.\n",
		len(doc.Tenants), index, index)
	e := yaml.NewEncoder(g.stdout)
	e.SetIndent(2)
	if err := e.Encode(doc); err != nil {
		return fmt.Errorf("encode export: %w", err)
	}
	return e.Close()
}

// specFromProto writes a cluster tenant in the apply file format.
func specFromProto(t *edgev1.Tenant) (tenantSpec, error) {
	st := stateFromProto(t)
	s := tenantSpec{
		Domain:                   st.Domain,
		Aliases:                  st.Aliases,
		Origin:                   st.Origin,
		OriginHost:               st.OriginHost,
		OriginServerName:         st.ServerName,
		OriginCAPEM:              st.CAPEM,
		OriginClientCert:         st.ClientCertPEM,
		OriginInsecureSkipVerify: st.Insecure,
		Plan:                     st.Plan,
		Suspended:                st.Suspended,
		HTTPSRedirect:            st.HTTPSRedirect,
		Metrics:                  st.Metrics,
		EarlyHints:               st.EarlyHints,
	}
	if st.KeySet {
		s.OriginClientKey = keepKey
	}
	if !st.Expires.IsZero() {
		s.Expires = expiresShown(st.Expires)
	}
	if st.CacheTTL != 0 || st.CacheOverride || st.CacheCookies || st.CacheAuthorized ||
		st.CacheSIE != 0 || st.CacheSWR != 0 || st.CacheKeepCDN || st.CacheClientNC {
		s.Cache = &cacheSpec{OverrideTTL: st.CacheOverride, CacheCookies: st.CacheCookies, CacheAuthorized: st.CacheAuthorized,
			KeepCDNCacheControl: st.CacheKeepCDN, ClientNoCache: st.CacheClientNC}
		if st.CacheTTL != 0 {
			s.Cache.DefaultTTL = formatTTL(st.CacheTTL)
		}
		if st.CacheSIE != 0 {
			s.Cache.StaleIfError = formatTTL(st.CacheSIE)
		}
		if st.CacheSWR != 0 {
			s.Cache.StaleWhileRevalidate = formatTTL(st.CacheSWR)
		}
	}
	if r := t.GetTransform(); r != "" && st.Transform != nil {
		var v any
		if err := json.Unmarshal([]byte(r), &v); err != nil {
			return s, fmt.Errorf("export %s: stored transform rules are not JSON: %w", t.GetDomain(), err)
		}
		n := &rulesNode{}
		if err := n.Encode(v); err != nil {
			return s, fmt.Errorf("export %s: transform rules: %w", t.GetDomain(), err)
		}
		s.Transform, s.TransformJSON = n, v
	}
	return s, nil
}

// planFrom reads the files, lists the cluster and computes the plan. Input
// errors are found before the cluster is asked anything.
func (g *globals) planFrom(cmd *cobra.Command, o applyOptions) (*plan, error) {
	srcs, err := readSources(o.files, cmd.InOrStdin())
	if err != nil {
		return nil, err
	}
	desired, err := parseDesired(srcs)
	if err != nil {
		return nil, err
	}
	ts, index, consistent, err := g.listAll(cmd.Context())
	if err != nil {
		return nil, err
	}
	if !consistent {
		return nil, fmt.Errorf("the cluster changed while its tenants were listed; run again")
	}
	current := make([]*tenantState, len(ts))
	for i, t := range ts {
		current[i] = stateFromProto(t)
	}
	p, err := computePlan(desired, current, o.prune)
	if err != nil {
		return nil, err
	}
	p.Index = index
	return p, nil
}

// listAll lists every tenant. index is the raft index of the first page;
// consistent is false when a later page reflects another index (a write
// landed in between).
func (g *globals) listAll(ctx context.Context) (ts []*edgev1.Tenant, index uint64, consistent bool, err error) {
	consistent = true
	token := ""
	for first := true; ; first = false {
		var resp *edgev1.ListTenantsResponse
		err := g.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
			resp, err = edgev1.NewTenantServiceClient(cc).List(ctx, &edgev1.ListTenantsRequest{Limit: 1000, PageToken: token, Consistency: g.consistency()})
			return err
		})
		if err != nil {
			return nil, 0, false, fmt.Errorf("list tenants: %w", err)
		}
		if first {
			index = resp.GetIndex()
		} else if resp.GetIndex() != index {
			consistent = false
		}
		ts = append(ts, resp.GetTenants()...)
		if token = resp.GetNextPageToken(); token == "" {
			return ts, index, consistent, nil
		}
	}
}

// applyPlan writes the plan: deletions first (they free names), then
// updates, then the second writes of updates that take a name another
// update released, then creations. Each write is its own call with its own
// request ID; updates carry expect_index, so a tenant changed by someone
// else since the plan was made is not overwritten. On error the changes
// already written stay; running apply again finishes the job.
func (g *globals) applyPlan(ctx context.Context, p *plan) error {
	total := 0
	for _, c := range p.Changes {
		total++
		if c.later != nil && c.patch != nil {
			total++
		}
	}
	done := 0
	prog := g.progress()
	defer prog.done()
	wrote := func() {
		done++
		prog.printf(done == total, "applying: %d of %d writes", done, total)
	}
	fail := func(c change, err error) error {
		return fmt.Errorf("%s %s: %w (%d of %d writes done before this one; fix the cause and run apply again)", c.Action, c.Domain, err, done, total)
	}
	update := func(c change, patch *edgev1.TenantPatch, expect uint64) (uint64, error) {
		var resp *edgev1.TenantResponse
		err := g.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
			resp, err = edgev1.NewTenantServiceClient(cc).Update(ctx, &edgev1.UpdateTenantRequest{Domain: c.Domain, Patch: patch, ExpectIndex: expect})
			return err
		})
		if err != nil {
			return 0, fail(c, err)
		}
		wrote()
		return resp.GetTenant().GetIndex(), nil
	}
	for _, c := range p.Changes {
		if c.Action != actionDelete {
			continue
		}
		var resp *edgev1.RemoveTenantResponse
		err := g.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
			resp, err = edgev1.NewTenantServiceClient(cc).Remove(ctx, &edgev1.TenantRef{Domain: c.Domain})
			return err
		})
		if err != nil {
			return fail(c, err)
		}
		wrote()
		p.Index = max(p.Index, resp.GetIndex())
	}
	after := map[string]uint64{} // domain → index after its first write
	for _, c := range p.Changes {
		if c.Action != actionUpdate {
			continue
		}
		after[c.Domain] = c.Index
		if c.patch == nil {
			continue
		}
		idx, err := update(c, c.patch, c.Index)
		if err != nil {
			return err
		}
		after[c.Domain] = idx
		p.Index = max(p.Index, idx)
	}
	for _, c := range p.Changes {
		if c.Action != actionUpdate || c.later == nil {
			continue
		}
		idx, err := update(c, c.later, after[c.Domain])
		if err != nil {
			return err
		}
		p.Index = max(p.Index, idx)
	}
	for _, c := range p.Changes {
		if c.Action != actionCreate {
			continue
		}
		var resp *edgev1.TenantResponse
		err := g.call(ctx, func(ctx context.Context, cc *grpc.ClientConn) (err error) {
			resp, err = edgev1.NewTenantServiceClient(cc).Add(ctx, &edgev1.AddTenantRequest{Tenant: c.add})
			return err
		})
		if err != nil {
			return fail(c, err)
		}
		wrote()
		p.Index = max(p.Index, resp.GetTenant().GetIndex())
	}
	p.Applied = true
	return nil
}
