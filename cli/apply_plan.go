package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

// Plan actions.
const (
	actionCreate = "create"
	actionUpdate = "update"
	actionDelete = "delete"
)

// plan is what apply would write to make the cluster match the files.
// It is also the -o json output of apply and diff.
type plan struct {
	Changes []change `json:"changes"`
	// Unmanaged lists cluster tenants that are not in the files and stay
	// because --prune was not given.
	Unmanaged []string `json:"unmanaged,omitempty"`
	// Index is the raft index the plan was computed against, or after a
	// successful apply the index of its last write.
	Index uint64 `json:"index,string"`
	// Applied is true when apply wrote the changes.
	Applied bool `json:"applied"`
}

// change is one tenant's entry in a plan.
type change struct {
	Action string `json:"action"` // create, update or delete
	Domain string `json:"domain"`
	// Index is the tenant's index the change is based on (update, delete);
	// an update is sent with it as expect_index.
	Index  uint64        `json:"index,omitempty,string"`
	Fields []fieldChange `json:"fields,omitempty"`

	add   *edgev1.Tenant      // create
	patch *edgev1.TenantPatch // update; nil when only `later` has work
	// later, when set, is a second write with the tenant's final aliases:
	// the tenant takes a name that another tenant of the files releases
	// in the same apply, so it waits until every first write is done.
	later *edgev1.TenantPatch
}

// fieldChange is one field of a change. Secrets and certificates are shown
// as a summary, never in full.
type fieldChange struct {
	Field string `json:"field"`
	Old   any    `json:"old"`
	New   any    `json:"new"`
}

// computePlan compares the desired tenants with the cluster's. Both lists
// are normalised (see tenantState). It writes nothing and calls nothing.
func computePlan(desired, current []*tenantState, prune bool) (*plan, error) {
	p := &plan{Changes: []change{}}
	want := make(map[string]*tenantState, len(desired))
	claimed := map[string]*tenantState{} // every name in the files → its tenant
	for _, d := range desired {
		want[d.Domain] = d
		claimed[d.Domain] = d
		for _, a := range d.Aliases {
			claimed[a] = d
		}
	}
	have := make(map[string]*tenantState, len(current))
	owner := map[string]string{} // every name in the cluster → its tenant's domain
	for _, c := range current {
		have[c.Domain] = c
		owner[c.Domain] = c.Domain
		for _, a := range c.Aliases {
			owner[a] = c.Domain
		}
	}

	var errs errList
	for _, c := range current {
		if want[c.Domain] != nil {
			continue
		}
		if !prune {
			p.Unmanaged = append(p.Unmanaged, c.Domain)
			for _, n := range append([]string{c.Domain}, c.Aliases...) {
				if d := claimed[n]; d != nil {
					what := "alias"
					if n == d.Domain {
						what = "domain"
					}
					errs.add("%s: %s %s of %s belongs to tenant %s, which is not in the file (remove it from %s there first, or use --prune to delete %s)",
						d.Where, what, n, d.Domain, c.Domain, c.Domain, c.Domain)
				}
			}
			continue
		}
		p.Changes = append(p.Changes, change{Action: actionDelete, Domain: c.Domain, Index: c.Index})
	}

	for _, d := range desired {
		c := have[d.Domain]
		if c == nil {
			fields, _, err := diffTenant(&tenantState{Domain: d.Domain}, d)
			if err != nil {
				errs.add("%s: %v", d.Where, err)
				continue
			}
			p.Changes = append(p.Changes, change{Action: actionCreate, Domain: d.Domain, Fields: fields, add: protoFromState(d)})
			continue
		}
		fields, patch, err := diffTenant(c, d)
		if err != nil {
			errs.add("%s: %v", d.Where, err)
			continue
		}
		if len(fields) == 0 {
			continue
		}
		ch := change{Action: actionUpdate, Domain: d.Domain, Index: c.Index, Fields: fields, patch: patch}
		if takesFromKept(c, d, owner, want) {
			ch.later = &edgev1.TenantPatch{SetAliases: true, Aliases: d.Aliases}
			var keep []string
			for _, a := range c.Aliases {
				if slices.Contains(d.Aliases, a) {
					keep = append(keep, a)
				}
			}
			patch.SetAliases, patch.Aliases = !slices.Equal(keep, c.Aliases), keep
			if !patch.SetAliases {
				patch.Aliases = nil
			}
			if isEmptyPatch(patch) {
				ch.patch = nil
			}
		}
		p.Changes = append(p.Changes, ch)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	slices.SortFunc(p.Changes, func(a, b change) int { return strings.Compare(a.Domain, b.Domain) })
	return p, nil
}

// takesFromKept reports whether the desired tenant d gains a name that
// another tenant in the files holds today (and releases in this apply).
func takesFromKept(c, d *tenantState, owner map[string]string, want map[string]*tenantState) bool {
	for _, a := range d.Aliases {
		if o, ok := owner[a]; ok && o != d.Domain && want[o] != nil && !slices.Contains(c.Aliases, a) {
			return true
		}
	}
	return false
}

func isEmptyPatch(p *edgev1.TenantPatch) bool {
	return proto.Equal(p, &edgev1.TenantPatch{})
}

// diffTenant lists the fields that differ between cur and want and the
// patch that turns one into the other.
func diffTenant(cur, want *tenantState) ([]fieldChange, *edgev1.TenantPatch, error) {
	var fields []fieldChange
	p := &edgev1.TenantPatch{}
	add := func(field string, old, new any) {
		fields = append(fields, fieldChange{Field: field, Old: old, New: new})
	}
	str := func(field string, old, new string, dst **string) {
		if old != new {
			add(field, old, new)
			v := new
			*dst = &v
		}
	}
	flag := func(field string, old, new bool, dst **bool) {
		if old != new {
			add(field, old, new)
			v := new
			*dst = &v
		}
	}
	str("origin", cur.Origin, want.Origin, &p.OriginUrl)
	if !slices.Equal(cur.Aliases, want.Aliases) {
		add("aliases", nonNil(cur.Aliases), nonNil(want.Aliases))
		p.SetAliases, p.Aliases = true, nonNil(want.Aliases)
	}
	str("origin_host", cur.OriginHost, want.OriginHost, &p.OriginHost)
	str("origin_server_name", cur.ServerName, want.ServerName, &p.OriginServerName)
	if cur.CAPEM != want.CAPEM {
		add("origin_ca", pemSummary(cur.CAPEM), pemSummary(want.CAPEM))
		v := want.CAPEM
		p.OriginCaPem = &v
	}
	certChanged := cur.ClientCertPEM != want.ClientCertPEM
	if certChanged {
		add("origin_client_cert", pemSummary(cur.ClientCertPEM), pemSummary(want.ClientCertPEM))
		v := want.ClientCertPEM
		p.OriginClientCertPem = &v
	}
	// A key is only sent when the certificate changes or no key is stored:
	// a stored key pairs with the stored certificate, so for an unchanged
	// certificate it is the key in the file.
	oldKey := secretShown(cur.KeySet)
	switch {
	case want.KeepKey:
		if certChanged || !cur.KeySet {
			return nil, nil, fmt.Errorf("%s: origin_client_key: %q keeps the key the cluster holds, but %s; give the key (origin_client_key_file)",
				want.Domain, keepKey, keepKeyProblem(cur, certChanged))
		}
	case want.ClientKeyPEM == "":
		if cur.KeySet {
			add("origin_client_key", oldKey, "")
			p.OriginClientKeyPem = new(string)
		}
	default:
		if certChanged || !cur.KeySet {
			add("origin_client_key", oldKey, secretShown(true))
			v := want.ClientKeyPEM
			p.OriginClientKeyPem = &v
		}
	}
	flag("origin_insecure_skip_verify", cur.Insecure, want.Insecure, &p.OriginInsecureSkipVerify)
	str("plan", cur.Plan, want.Plan, &p.Plan)
	if !cur.Expires.Equal(want.Expires) {
		add("expires", expiresShown(cur.Expires), expiresShown(want.Expires))
		if want.Expires.IsZero() {
			p.ClearExpires = true
		} else {
			p.ExpiresAt = timestamppb.New(want.Expires)
		}
	}
	flag("suspended", cur.Suspended, want.Suspended, &p.Suspended)
	flag("https_redirect", cur.HTTPSRedirect, want.HTTPSRedirect, &p.HttpsRedirect)
	flag("metrics", cur.Metrics, want.Metrics, &p.Metrics)
	flag("early_hints", cur.EarlyHints, want.EarlyHints, &p.EarlyHints)
	if cur.CacheTTL != want.CacheTTL {
		add("cache.default_ttl", formatTTL(cur.CacheTTL), formatTTL(want.CacheTTL))
		s := int64(want.CacheTTL / time.Second)
		p.CacheDefaultTtlSeconds = &s
	}
	flag("cache.override_ttl", cur.CacheOverride, want.CacheOverride, &p.CacheOverrideTtl)
	flag("cache.cache_cookies", cur.CacheCookies, want.CacheCookies, &p.CacheCookies)
	flag("cache.cache_authorized", cur.CacheAuthorized, want.CacheAuthorized, &p.CacheAuthorized)
	if cur.CacheSIE != want.CacheSIE {
		add("cache.stale_if_error", formatTTL(cur.CacheSIE), formatTTL(want.CacheSIE))
		s := int64(want.CacheSIE / time.Second)
		p.CacheStaleIfErrorSeconds = &s
	}
	if cur.CacheSWR != want.CacheSWR {
		add("cache.stale_while_revalidate", formatTTL(cur.CacheSWR), formatTTL(want.CacheSWR))
		s := int64(want.CacheSWR / time.Second)
		p.CacheStaleWhileRevalidateSeconds = &s
	}
	flag("cache.keep_cdn_cache_control", cur.CacheKeepCDN, want.CacheKeepCDN, &p.CacheKeepCdnCacheControl)
	flag("cache.client_no_cache", cur.CacheClientNC, want.CacheClientNC, &p.CacheClientNoCache)
	if !reflect.DeepEqual(cur.Transform, want.Transform) {
		add("transform", rulesShown(cur.Transform), rulesShown(want.Transform))
		v := ""
		if want.Transform != nil {
			v = want.TransformText
		}
		p.Transform = &v
	}
	return fields, p, nil
}

func keepKeyProblem(cur *tenantState, certChanged bool) string {
	switch {
	case cur.Index == 0:
		return "the tenant does not exist yet"
	case certChanged:
		return "the certificate changes"
	}
	return "the cluster holds no key for it"
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func secretShown(set bool) string {
	if set {
		return "(secret)"
	}
	return ""
}

func expiresShown(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// rulesShown is a one-line preview of transform rules.
func rulesShown(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "(rules)"
	}
	s := string(b)
	if len(s) > 72 {
		s = s[:69] + "..."
	}
	return s
}

// protoFromState builds the tenant a create sends.
func protoFromState(s *tenantState) *edgev1.Tenant {
	t := &edgev1.Tenant{
		Domain:  s.Domain,
		Aliases: s.Aliases,
		License: &edgev1.License{Status: "active", Plan: s.Plan},
		Origin: &edgev1.Origin{Url: s.Origin, HostHeader: s.OriginHost, Tls: &edgev1.OriginTLS{
			ServerName: s.ServerName, CaPem: s.CAPEM, ClientCertPem: s.ClientCertPEM, ClientKeyPem: s.ClientKeyPEM,
			InsecureSkipVerify: s.Insecure,
		}},
		HttpsRedirect: s.HTTPSRedirect,
		Metrics:       s.Metrics,
		EarlyHints:    s.EarlyHints,
		Cache: &edgev1.CachePolicy{DefaultTtlSeconds: int64(s.CacheTTL / time.Second), OverrideTtl: s.CacheOverride,
			CacheCookies: s.CacheCookies, CacheAuthorized: s.CacheAuthorized,
			StaleIfErrorSeconds: int64(s.CacheSIE / time.Second), StaleWhileRevalidateSeconds: int64(s.CacheSWR / time.Second),
			KeepCdnCacheControl: s.CacheKeepCDN, ClientNoCache: s.CacheClientNC},
	}
	if s.Suspended {
		t.License.Status = "suspended"
	}
	if !s.Expires.IsZero() {
		t.License.ExpiresAt = timestamppb.New(s.Expires)
	}
	if s.Transform != nil {
		t.Transform = s.TransformText
	}
	return t
}

func (p *plan) count(action string) int {
	n := 0
	for _, c := range p.Changes {
		if c.Action == action {
			n++
		}
	}
	return n
}

// writeTable renders the plan for people: one line per tenant (+ create,
// ~ update, - delete) and one per changed field.
func (p *plan) writeTable(w io.Writer, dryRun bool) {
	for _, c := range p.Changes {
		switch c.Action {
		case actionCreate:
			fmt.Fprintf(w, "+ %s\n", c.Domain)
			for _, f := range c.Fields {
				fmt.Fprintf(w, "    + %s\t%s\n", f.Field, shown(f.New))
			}
		case actionUpdate:
			fmt.Fprintf(w, "~ %s (index %d)\n", c.Domain, c.Index)
			for _, f := range c.Fields {
				fmt.Fprintf(w, "    ~ %s\t%s -> %s\n", f.Field, shown(f.Old), shown(f.New))
			}
		case actionDelete:
			fmt.Fprintf(w, "- %s (index %d)\n", c.Domain, c.Index)
		}
	}
	if len(p.Unmanaged) > 0 {
		fmt.Fprintf(w, "%d tenant(s) in the cluster are not in the file and stay (--prune would delete them): %s\n",
			len(p.Unmanaged), strings.Join(p.Unmanaged, ", "))
	}
	counts := fmt.Sprintf("%d to create, %d to update, %d to delete", p.count(actionCreate), p.count(actionUpdate), p.count(actionDelete))
	switch {
	case len(p.Changes) == 0:
		fmt.Fprintf(w, "no changes: the cluster matches the file (index %d)\n", p.Index)
	case p.Applied:
		fmt.Fprintf(w, "applied: %d created, %d updated, %d deleted (index %d)\n", p.count(actionCreate), p.count(actionUpdate), p.count(actionDelete), p.Index)
	case dryRun:
		fmt.Fprintf(w, "dry run: %s; nothing written (index %d)\n", counts, p.Index)
	default:
		fmt.Fprintf(w, "plan: %s (index %d)\n", counts, p.Index)
	}
}

func shown(v any) string {
	switch x := v.(type) {
	case string:
		if x == "" {
			return `""`
		}
		return x
	case []string:
		return "[" + strings.Join(x, ", ") + "]"
	}
	return fmt.Sprint(v)
}
