package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// keepKey is the value of origin_client_key that means "the key the
// cluster already holds". export writes it because the API never returns
// client keys.
const keepKey = "<unchanged>"

// applyFile is one YAML document of an apply file.
type applyFile struct {
	Tenants []tenantSpec `yaml:"tenants" json:"tenants"`
}

// rulesNode keeps the transform rules as written. Rules are validated by
// the cluster, not by the strict decoding of the apply file.
type rulesNode struct{ yaml.Node }

func (r *rulesNode) UnmarshalYAML(n *yaml.Node) error {
	r.Node = *n
	return nil
}

func (r rulesNode) MarshalYAML() (any, error) { return &r.Node, nil }

// tenantSpec is one tenant as written in an apply file (and by export).
// Field order is the order export writes.
type tenantSpec struct {
	Domain                   string     `yaml:"domain" json:"domain"`
	Aliases                  []string   `yaml:"aliases,omitempty" json:"aliases,omitempty"`
	Origin                   string     `yaml:"origin" json:"origin"`
	OriginHost               string     `yaml:"origin_host,omitempty" json:"origin_host,omitempty"`
	OriginServerName         string     `yaml:"origin_server_name,omitempty" json:"origin_server_name,omitempty"`
	OriginCAFile             string     `yaml:"origin_ca_file,omitempty" json:"origin_ca_file,omitempty"`
	OriginCAPEM              string     `yaml:"origin_ca_pem,omitempty" json:"origin_ca_pem,omitempty"`
	OriginClientCert         string     `yaml:"origin_client_cert,omitempty" json:"origin_client_cert,omitempty"`
	OriginClientCertFile     string     `yaml:"origin_client_cert_file,omitempty" json:"origin_client_cert_file,omitempty"`
	OriginClientKey          string     `yaml:"origin_client_key,omitempty" json:"origin_client_key,omitempty"`
	OriginClientKeyFile      string     `yaml:"origin_client_key_file,omitempty" json:"origin_client_key_file,omitempty"`
	OriginInsecureSkipVerify bool       `yaml:"origin_insecure_skip_verify,omitempty" json:"origin_insecure_skip_verify,omitempty"`
	Plan                     string     `yaml:"plan,omitempty" json:"plan,omitempty"`
	Expires                  string     `yaml:"expires,omitempty" json:"expires,omitempty"`
	Suspended                bool       `yaml:"suspended,omitempty" json:"suspended,omitempty"`
	HTTPSRedirect            bool       `yaml:"https_redirect,omitempty" json:"https_redirect,omitempty"`
	Metrics                  bool       `yaml:"metrics,omitempty" json:"metrics,omitempty"`
	EarlyHints               bool       `yaml:"early_hints,omitempty" json:"early_hints,omitempty"`
	Cache                    *cacheSpec `yaml:"cache,omitempty" json:"cache,omitempty"`
	// Transform is the HTML transform rules, inline (see docs/transform.md).
	Transform *rulesNode `yaml:"transform,omitempty" json:"-"`
	// TransformJSON replaces Transform in export's JSON output.
	TransformJSON any `yaml:"-" json:"transform,omitempty"`
}

type cacheSpec struct {
	DefaultTTL      string `yaml:"default_ttl,omitempty" json:"default_ttl,omitempty"`
	OverrideTTL     bool   `yaml:"override_ttl,omitempty" json:"override_ttl,omitempty"`
	CacheCookies    bool   `yaml:"cache_cookies,omitempty" json:"cache_cookies,omitempty"`
	CacheAuthorized bool   `yaml:"cache_authorized,omitempty" json:"cache_authorized,omitempty"`
	// StaleIfError and StaleWhileRevalidate are durations like DefaultTTL.
	StaleIfError         string `yaml:"stale_if_error,omitempty" json:"stale_if_error,omitempty"`
	StaleWhileRevalidate string `yaml:"stale_while_revalidate,omitempty" json:"stale_while_revalidate,omitempty"`
	KeepCDNCacheControl  bool   `yaml:"keep_cdn_cache_control,omitempty" json:"keep_cdn_cache_control,omitempty"`
	ClientNoCache        bool   `yaml:"client_no_cache,omitempty" json:"client_no_cache,omitempty"`
}

// tenantState is a tenant in normalised form, built from a file (desired)
// or from the cluster (current), so the two compare field by field.
type tenantState struct {
	Domain        string
	Aliases       []string // normalised and sorted
	Origin        string
	OriginHost    string
	ServerName    string
	CAPEM         string
	ClientCertPEM string
	// ClientKeyPEM is the key from the file; empty with KeepKey or when the
	// file has none. For a tenant from the cluster it is always empty.
	ClientKeyPEM    string
	KeepKey         bool // desired: origin_client_key: <unchanged>
	KeySet          bool // current: the cluster holds a key
	Insecure        bool
	Plan            string
	Expires         time.Time // zero: never
	Suspended       bool
	HTTPSRedirect   bool
	Metrics         bool
	EarlyHints      bool
	CacheTTL        time.Duration // whole seconds
	CacheOverride   bool
	CacheCookies    bool
	CacheAuthorized bool
	CacheSIE        time.Duration // whole seconds
	CacheSWR        time.Duration // whole seconds
	CacheKeepCDN    bool
	CacheClientNC   bool
	// Transform is the rules as a normalised JSON-like value (see
	// normRules); nil means no rules. TransformText is what is sent.
	Transform     any
	TransformText string

	Index uint64 // current: the raft index of the tenant's last change
	Where string // desired: "file:line" of the entry, for messages
}

// source is one input of apply or diff.
type source struct {
	Name string // shown in messages; "<stdin>" for -
	Dir  string // relative file paths in the document resolve against it
	Data []byte
}

// readSources reads each -f argument ("-" is standard input).
func readSources(files []string, stdin io.Reader) ([]source, error) {
	if len(files) == 0 {
		return nil, usagef("-f FILE is required (use - for standard input)")
	}
	var out []source
	for _, f := range files {
		if f == "-" {
			b, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			wd, _ := os.Getwd()
			out = append(out, source{Name: "<stdin>", Dir: wd, Data: b})
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("-f: %w", err)
		}
		out = append(out, source{Name: f, Dir: filepath.Dir(f), Data: b})
	}
	return out, nil
}

// errList collects input errors so a file with several mistakes is
// reported in one run. At most maxErrs are kept.
type errList []string

const maxErrs = 10

func (l *errList) add(format string, args ...any) {
	if len(*l) < maxErrs {
		*l = append(*l, fmt.Sprintf(format, args...))
	} else if len(*l) == maxErrs {
		*l = append(*l, "…")
	}
}

func (l errList) err() error {
	if len(l) == 0 {
		return nil
	}
	return errors.New(strings.Join(l, "; "))
}

// parseDesired decodes and validates every source and returns the desired
// tenants sorted by domain. Any error means nothing may be written.
func parseDesired(srcs []source) ([]*tenantState, error) {
	var errs errList
	var specs []located
	sawTenants := false
	for _, s := range srcs {
		ls, saw, err := decodeSource(s)
		if err != nil {
			errs.add("%s", err)
			continue
		}
		sawTenants = sawTenants || saw
		specs = append(specs, ls...)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	if !sawTenants {
		names := make([]string, len(srcs))
		for i, s := range srcs {
			names[i] = s.Name
		}
		return nil, fmt.Errorf("%s: no \"tenants:\" list found (an empty desired state must be written as \"tenants: []\")", strings.Join(names, ", "))
	}
	type owner struct{ domain, where string }
	names := map[string]owner{}
	var out []*tenantState
	for _, l := range specs {
		st, ferrs := l.spec.toState(l.src, l.line, l.lines)
		if len(ferrs) > 0 {
			for _, e := range ferrs {
				errs.add("%s", e)
			}
			continue
		}
		claim := func(name, what string) {
			if o, dup := names[name]; dup {
				if o.domain == st.Domain && what == "domain" {
					errs.add("%s: tenant %s is defined twice (also at %s)", st.Where, name, o.where)
				} else if o.domain == st.Domain {
					errs.add("%s: %s: %s is listed twice", st.Where, st.Domain, name)
				} else {
					errs.add("%s: %s %s of %s is already used by tenant %s (%s)", st.Where, what, name, st.Domain, o.domain, o.where)
				}
				return
			}
			names[name] = owner{st.Domain, st.Where}
		}
		claim(st.Domain, "domain")
		for _, a := range st.Aliases {
			claim(a, "alias")
		}
		out = append(out, st)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out, nil
}

type located struct {
	src   source
	spec  tenantSpec
	line  int
	lines map[string]int // field name → line
}

// decodeSource decodes every document of s strictly (unknown fields are
// errors) and pairs each tenant with its line numbers. saw reports whether
// any document has a tenants key.
func decodeSource(s source) (out []located, saw bool, err error) {
	strict := yaml.NewDecoder(bytes.NewReader(s.Data))
	strict.KnownFields(true)
	loose := yaml.NewDecoder(bytes.NewReader(s.Data))
	for {
		var f applyFile
		err := strict.Decode(&f)
		if errors.Is(err, io.EOF) {
			return out, saw, nil
		}
		if err != nil {
			return nil, false, yamlError(s.Name, syntaxLine(s.Data, err))
		}
		var doc yaml.Node
		if err := loose.Decode(&doc); err != nil {
			return nil, false, yamlError(s.Name, err)
		}
		items, has := tenantItems(&doc)
		saw = saw || has
		if len(items) != len(f.Tenants) {
			return nil, false, fmt.Errorf("%s: internal error: %d tenants decoded, %d entries found", s.Name, len(f.Tenants), len(items))
		}
		for i, t := range f.Tenants {
			lines := map[string]int{}
			for j := 0; j+1 < len(items[i].Content); j += 2 {
				lines[items[i].Content[j].Value] = items[i].Content[j].Line
			}
			out = append(out, located{src: s, spec: t, line: items[i].Line, lines: lines})
		}
	}
}

// tenantItems returns the entries of the document's tenants list.
func tenantItems(doc *yaml.Node) ([]*yaml.Node, bool) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, false
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "tenants" {
			v := m.Content[i+1]
			for v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			if v.Kind != yaml.SequenceNode {
				return nil, true
			}
			items := make([]*yaml.Node, len(v.Content))
			for j, it := range v.Content {
				for it.Kind == yaml.AliasNode {
					it = it.Alias
				}
				items[j] = it
			}
			return items, true
		}
	}
	return nil, false
}

// syntaxLine improves the line of a YAML syntax error. yaml.v3 reports
// the line where the enclosing block starts, often far above the mistake;
// the first prefix of the input that fails with the same reason ends on
// the line that breaks it.
func syntaxLine(data []byte, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return err
	}
	reason := yamlLineRe.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "")
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 5000 {
		return err
	}
	end := 0
	for i, l := range lines {
		end += len(l)
		d := yaml.NewDecoder(bytes.NewReader(data[:end]))
		for {
			var n yaml.Node
			perr := d.Decode(&n)
			if perr == nil {
				continue
			}
			if !errors.Is(perr, io.EOF) && yamlLineRe.ReplaceAllString(strings.TrimPrefix(perr.Error(), "yaml: "), "") == reason {
				return fmt.Errorf("line %d: %s", i+1, reason)
			}
			break
		}
	}
	return err
}

var (
	yamlLineRe    = regexp.MustCompile(`^line (\d+): `)
	yamlUnknownRe = regexp.MustCompile(`field (\S+) not found in type \S+`)
	yamlListRe    = regexp.MustCompile(` into \[\]\S+`)
	yamlTypeRe    = regexp.MustCompile(` into \*?cli\.\S+`)
)

// yamlError rewrites a yaml.v3 error as "FILE:LINE: reason" lines.
func yamlError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		l = yamlUnknownRe.ReplaceAllString(l, `unknown field "$1"`)
		l = yamlListRe.ReplaceAllString(l, " into a list")
		l = yamlTypeRe.ReplaceAllString(l, " into a mapping")
		if m := yamlLineRe.FindStringSubmatch(l); m != nil {
			parts = append(parts, name+":"+m[1]+": "+l[len(m[0]):])
		} else {
			parts = append(parts, name+": "+l)
		}
	}
	return errors.New(strings.Join(parts, "; "))
}

// toState validates one entry and normalises it.
func (t *tenantSpec) toState(src source, line int, lines map[string]int) (*tenantState, []string) {
	var errs []string
	at := func(field string) string {
		if l, ok := lines[field]; ok {
			return fmt.Sprintf("%s:%d", src.Name, l)
		}
		return fmt.Sprintf("%s:%d", src.Name, line)
	}
	d, derr := tenantcfg.NormalizeDomain("domain", t.Domain)
	prefix := ""
	if derr == nil {
		prefix = d + ": "
	}
	bad := func(field, format string, args ...any) {
		errs = append(errs, at(field)+": "+prefix+field+": "+fmt.Sprintf(format, args...))
	}
	if derr != nil {
		bad("domain", "%s", why(derr))
	}
	st := &tenantState{Domain: d, Where: fmt.Sprintf("%s:%d", src.Name, line)}
	seen := map[string]bool{d: true}
	for i, a := range t.Aliases {
		n, err := tenantcfg.NormalizeDomain("aliases", a)
		if err != nil {
			bad("aliases", "[%d]: %s", i, why(err))
			continue
		}
		if seen[n] {
			if n == d {
				bad("aliases", "%s is the tenant's own domain", n)
			} else {
				bad("aliases", "%s is listed twice", n)
			}
			continue
		}
		seen[n] = true
		st.Aliases = append(st.Aliases, n)
	}
	slices.Sort(st.Aliases)

	if t.Origin == "" {
		bad("origin", "required (an http:// or https:// URL)")
	} else if u, err := tenantcfg.ValidateOriginURL("origin", t.Origin); err != nil {
		bad("origin", "%s", why(err))
	} else {
		st.Origin = u
	}
	st.OriginHost = t.OriginHost
	if err := tenantcfg.ValidateHostHeader("origin_host", t.OriginHost); err != nil {
		bad("origin_host", "%s", why(err))
	}
	st.ServerName = t.OriginServerName
	if err := tenantcfg.ValidateServerName("origin_server_name", t.OriginServerName); err != nil {
		bad("origin_server_name", "%s", why(err))
	}
	st.Insecure = t.OriginInsecureSkipVerify

	pick := func(inlineField, inline, fileField, file string) string {
		switch {
		case inline != "" && file != "":
			bad(fileField, "give %s or %s, not both", inlineField, fileField)
		case file != "":
			p := file
			if !filepath.IsAbs(p) {
				p = filepath.Join(src.Dir, p)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				bad(fileField, "%v", err)
				return ""
			}
			return string(b)
		}
		return inline
	}
	st.CAPEM = pick("origin_ca_pem", t.OriginCAPEM, "origin_ca_file", t.OriginCAFile)
	caField := firstSet(lines, "origin_ca_pem", "origin_ca_file")
	if err := tenantcfg.ValidateCertPEM(caField, st.CAPEM); err != nil {
		bad(caField, "%s", why(err))
	}
	st.ClientCertPEM = pick("origin_client_cert", t.OriginClientCert, "origin_client_cert_file", t.OriginClientCertFile)
	if t.OriginClientKey == keepKey {
		if t.OriginClientKeyFile != "" {
			bad("origin_client_key_file", "give origin_client_key or origin_client_key_file, not both")
		}
		st.KeepKey = true
	} else {
		st.ClientKeyPEM = pick("origin_client_key", t.OriginClientKey, "origin_client_key_file", t.OriginClientKeyFile)
	}
	certField := firstSet(lines, "origin_client_cert", "origin_client_cert_file")
	keyField := firstSet(lines, "origin_client_key", "origin_client_key_file")
	switch hasKey := st.ClientKeyPEM != "" || st.KeepKey; {
	case st.ClientCertPEM == "" && hasKey:
		bad(keyField, "needs origin_client_cert or origin_client_cert_file")
	case st.ClientCertPEM != "" && !hasKey:
		bad(certField, "needs origin_client_key or origin_client_key_file (or origin_client_key: %q to keep the key the cluster holds)", keepKey)
	case st.ClientCertPEM != "" && st.KeepKey:
		if err := tenantcfg.ValidateCertPEM(certField, st.ClientCertPEM); err != nil {
			bad(certField, "%s", why(err))
		}
	case st.ClientCertPEM != "":
		if err := tenantcfg.ValidateClientCert(certField, keyField, st.ClientCertPEM, st.ClientKeyPEM); err != nil {
			bad(certField, "%s", why(err))
		}
	}

	st.Plan = t.Plan
	if err := tenantcfg.ValidatePlan("plan", t.Plan); err != nil {
		bad("plan", "%s", why(err))
	}
	if t.Expires != "" {
		e, err := time.Parse(time.RFC3339, t.Expires)
		if err != nil {
			bad("expires", "%q: want RFC 3339, e.g. 2027-01-31T00:00:00Z (omit it for a license that never expires)", t.Expires)
		}
		st.Expires = e.UTC()
	}
	st.Suspended = t.Suspended
	st.HTTPSRedirect = t.HTTPSRedirect
	st.Metrics = t.Metrics
	st.EarlyHints = t.EarlyHints
	if c := t.Cache; c != nil {
		if c.DefaultTTL != "" {
			ttl, err := time.ParseDuration(c.DefaultTTL)
			switch {
			case err != nil:
				bad("cache", "default_ttl %q: want a duration such as 90s, 5m or 1h", c.DefaultTTL)
			case ttl < 0:
				bad("cache", "default_ttl %q: must not be negative", c.DefaultTTL)
			case ttl%time.Second != 0:
				bad("cache", "default_ttl %q: must be whole seconds", c.DefaultTTL)
			}
			st.CacheTTL = ttl
		}
		st.CacheOverride = c.OverrideTTL
		st.CacheCookies = c.CacheCookies
		st.CacheAuthorized = c.CacheAuthorized
		for _, d := range []struct {
			name, v string
			dst     *time.Duration
		}{{"stale_if_error", c.StaleIfError, &st.CacheSIE}, {"stale_while_revalidate", c.StaleWhileRevalidate, &st.CacheSWR}} {
			if d.v == "" {
				continue
			}
			v, err := time.ParseDuration(d.v)
			switch {
			case err != nil:
				bad("cache", "%s %q: want a duration such as 90s, 5m or 1h", d.name, d.v)
			case v < 0:
				bad("cache", "%s %q: must not be negative", d.name, d.v)
			case v%time.Second != 0:
				bad("cache", "%s %q: must be whole seconds", d.name, d.v)
			}
			*d.dst = v
		}
		st.CacheKeepCDN = c.KeepCDNCacheControl
		st.CacheClientNC = c.ClientNoCache
	}
	if t.Transform != nil {
		n := &t.Transform.Node
		switch {
		case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		case n.Kind != yaml.MappingNode:
			bad("transform", "must be a mapping of rules (see docs/transform.md)")
		default:
			st.Transform = normRules(nodeValue(n))
			if st.Transform != nil {
				b, err := yaml.Marshal(n)
				if err != nil {
					bad("transform", "%v", err)
				}
				st.TransformText = string(b)
			}
		}
	}
	return st, errs
}

func firstSet(lines map[string]int, fields ...string) string {
	for _, f := range fields {
		if _, ok := lines[f]; ok {
			return f
		}
	}
	return fields[0]
}

// why is a validator's reason without its field name, which the
// messages of an apply file give in their own place.
func why(err error) string {
	var fe *tenantcfg.FieldError
	if errors.As(err, &fe) {
		return fe.Reason
	}
	return err.Error()
}

// nodeValue turns a YAML node into plain data whose scalars are all
// strings (their text as written), so "1", 1 and "true", true compare the
// way the cluster's typed decoding would see them.
func nodeValue(n *yaml.Node) any {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return nodeValue(n.Content[0])
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = nodeValue(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		s := make([]any, len(n.Content))
		for i, c := range n.Content {
			s[i] = nodeValue(c)
		}
		return s
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return n.Value
	}
	return nil
}

// jsonValue decodes stored rules (canonical JSON) into the same shape as
// nodeValue: scalars as strings.
func jsonValue(s string) (any, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	var conv func(any) any
	conv = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = conv(e)
			}
		case []any:
			for i, e := range x {
				x[i] = conv(e)
			}
		case bool:
			return strconv.FormatBool(x)
		case json.Number:
			return x.String()
		}
		return v
	}
	return conv(v), nil
}

// normRules drops what the canonical encoding omits (empty strings,
// false, empty lists and maps, nulls) from every mapping, so rules written
// by hand compare equal to their stored form. It returns nil for rules
// that do nothing.
func normRules(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			e = normRules(e)
			if isEmptyValue(e) {
				delete(x, k)
			} else {
				x[k] = e
			}
		}
		if len(x) == 0 {
			return nil
		}
	case []any:
		for i, e := range x {
			x[i] = normRules(e)
		}
		if len(x) == 0 {
			return nil
		}
	}
	return v
}

func isEmptyValue(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == "" || x == "false"
	}
	return false
}

// stateFromProto normalises a tenant read from the cluster.
func stateFromProto(t *edgev1.Tenant) *tenantState {
	tls := t.GetOrigin().GetTls()
	st := &tenantState{
		Domain:          t.GetDomain(),
		Aliases:         slices.Sorted(slices.Values(t.GetAliases())),
		Origin:          t.GetOrigin().GetUrl(),
		OriginHost:      t.GetOrigin().GetHostHeader(),
		ServerName:      tls.GetServerName(),
		CAPEM:           tls.GetCaPem(),
		ClientCertPEM:   tls.GetClientCertPem(),
		KeySet:          tls.GetClientKeySet(),
		Insecure:        tls.GetInsecureSkipVerify(),
		Plan:            t.GetLicense().GetPlan(),
		Suspended:       t.GetLicense().GetStatus() == "suspended",
		HTTPSRedirect:   t.GetHttpsRedirect(),
		Metrics:         t.GetMetrics(),
		EarlyHints:      t.GetEarlyHints(),
		CacheTTL:        time.Duration(t.GetCache().GetDefaultTtlSeconds()) * time.Second,
		CacheOverride:   t.GetCache().GetOverrideTtl(),
		CacheCookies:    t.GetCache().GetCacheCookies(),
		CacheAuthorized: t.GetCache().GetCacheAuthorized(),
		CacheSIE:        time.Duration(t.GetCache().GetStaleIfErrorSeconds()) * time.Second,
		CacheSWR:        time.Duration(t.GetCache().GetStaleWhileRevalidateSeconds()) * time.Second,
		CacheKeepCDN:    t.GetCache().GetKeepCdnCacheControl(),
		CacheClientNC:   t.GetCache().GetClientNoCache(),
		Index:           t.GetIndex(),
	}
	if len(st.Aliases) == 0 {
		st.Aliases = nil
	}
	if e := t.GetLicense().GetExpiresAt(); e != nil {
		st.Expires = e.AsTime().UTC()
	}
	if r := t.GetTransform(); r != "" {
		v, err := jsonValue(r)
		if err != nil {
			v = r // not JSON: compares unequal to any file, so apply rewrites it
		}
		st.Transform = normRules(v)
	}
	return st
}

// pemSummary shows a PEM value in a plan without printing it.
func pemSummary(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return "PEM sha256:" + hex.EncodeToString(sum[:6])
}

// formatTTL writes a duration the short way people write it: 5m, 1h30m, 90s.
func formatTTL(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dh", h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dm", m)
		d -= m * time.Minute
	}
	if s := d / time.Second; s > 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}
