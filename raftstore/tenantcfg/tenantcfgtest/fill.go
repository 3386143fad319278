// Package tenantcfgtest fills the tenant model, and the API messages that
// carry it, with a non-zero value in every field, and lists the fields a
// value lacks. Tests use it to prove that no conversion drops a setting:
// a field added later is filled and checked without touching them.
//
// It is for tests only; nothing in a binary imports it.
package tenantcfgtest

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/edgeproxy/edge/raftstore/tenantcfg"
	"github.com/edgeproxy/edge/scripts/testkit"
)

// ServerOwned are the fields of a Tenant the cluster sets when it applies
// a change; no request carries them, so round trips ignore them.
var ServerOwned = []string{"CreatedAt", "UpdatedAt", "Index", "OriginIndex"}

// Domain is the primary domain of the tenant Tenant returns.
const Domain = "roundtrip.example"

// Tenant returns a tenant that passes tenantcfg.Validate unchanged and
// has every field set. Fields the validators constrain get a valid value
// (domain, aliases, license status, origin URL, certificate and key,
// transform rules); every other field gets a value of its kind that no
// other field has, so two swapped mappings show too: strings "v<n>-<name>",
// true, whole seconds, n, a day in 2030. A new field with a format of its
// own needs a line here; the round-trip tests fail until it has one.
func Tenant(t testing.TB) *tenantcfg.Tenant {
	t.Helper()
	tn := &tenantcfg.Tenant{}
	n := 0
	fillValue(reflect.ValueOf(tn).Elem(), "", &n)
	cert, key := testkit.SelfSigned(t, "roundtrip client").PEMStrings()
	tn.Domain = Domain
	tn.Aliases = []string{"a." + Domain, "www." + Domain} // sorted, as apply files store them
	tn.License.Status = tenantcfg.LicenseSuspended        // not the default, so a dropped flag shows
	tn.Origin.URL = "https://origin." + Domain + ":8443"
	tn.Origin.TLS.CAPEM = cert
	tn.Origin.TLS.ClientCertPEM = cert
	tn.Origin.TLS.ClientKeyPEM = key
	tn.Transform = `{"rewrite_links":true}` // the cluster's canonical form
	if err := tenantcfg.Validate(tn); err != nil {
		t.Fatalf("tenantcfgtest.Tenant is not valid (give the new field a valid value): %v", err)
	}
	return tn
}

func fillValue(v reflect.Value, name string, n *int) {
	*n++
	switch v.Interface().(type) {
	case time.Time:
		v.Set(reflect.ValueOf(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, *n)))
		return
	case time.Duration:
		v.SetInt(int64(time.Duration(*n)*time.Minute + time.Duration(*n)*time.Second))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fillValue(v.Field(i), v.Type().Field(i).Name, n)
			}
		}
	case reflect.String:
		v.SetString(fmt.Sprintf("v%d-%s", *n, strings.ToLower(name)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		fillValue(s.Index(0), name, n)
		fillValue(s.Index(1), name, n)
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillValue(p.Elem(), name, n)
		v.Set(p)
	default:
		panic(fmt.Sprintf("tenantcfgtest: cannot fill %s (%s)", name, v.Type()))
	}
}

// Unset lists the exported fields of v (a struct or a pointer to one),
// by path ("Origin.TLS.CAPEM"), that hold their zero value. Structs are
// walked into, except time.Time; fields named in skip (by path) are left
// out.
func Unset(v any, skip ...string) []string {
	var out []string
	walk(reflect.ValueOf(v), "", func(path string, f reflect.Value) {
		if f.IsZero() && !contains(skip, path) {
			out = append(out, path)
		}
	})
	return out
}

// Diff lists the fields, by path, in which a and b (two tenants) differ,
// leaving out the ServerOwned ones.
func Diff(a, b *tenantcfg.Tenant) []string {
	var leaves []string
	walk(reflect.ValueOf(a), "", func(path string, _ reflect.Value) { leaves = append(leaves, path) })
	var out []string
	for _, p := range leaves {
		if contains(ServerOwned, p) {
			continue
		}
		x, y := field(reflect.ValueOf(a), p), field(reflect.ValueOf(b), p)
		if !reflect.DeepEqual(x.Interface(), y.Interface()) {
			out = append(out, fmt.Sprintf("%s: %v != %v", p, short(x), short(y)))
		}
	}
	return out
}

func short(v reflect.Value) string {
	s := fmt.Sprint(v.Interface())
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func walk(v reflect.Value, prefix string, leaf func(path string, f reflect.Value)) {
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	for i := 0; i < v.NumField(); i++ {
		sf := v.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		path := prefix + sf.Name
		f := v.Field(i)
		if f.Kind() == reflect.Struct && f.Type() != reflect.TypeOf(time.Time{}) {
			walk(f, path+".", leaf)
			continue
		}
		leaf(path, f)
	}
}

func field(v reflect.Value, path string) reflect.Value {
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	for _, name := range strings.Split(path, ".") {
		v = v.FieldByName(name)
	}
	return v
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// FillMessage sets every field of m, and of the messages in it, to a
// value of its kind that no other field has (strings "v<n>-<name>", true,
// n, two elements for a list). Well-known types (Timestamp) get small
// valid values the same way.
func FillMessage(m proto.Message) {
	n := 0
	fillMessage(m.ProtoReflect(), &n)
}

func fillMessage(m protoreflect.Message, n *int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		*n++
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for j := 0; j < 2; j++ {
				*n++
				l.Append(scalar(fd, *n))
			}
		case fd.Kind() == protoreflect.MessageKind:
			fillMessage(m.Mutable(fd).Message(), n)
		default:
			m.Set(fd, scalar(fd, *n))
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor, n int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("v%d-%s", n, fd.Name()))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(n))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(vals.Len() - 1).Number())
	}
	panic(fmt.Sprintf("tenantcfgtest: cannot fill %s (%s)", fd.FullName(), fd.Kind()))
}

// UnsetFields lists the fields of m, by path ("origin.tls.ca_pem"), that
// are not populated, walking into Edge's own messages (a well-known type
// such as a Timestamp counts as set when present). Fields named in skip
// are left out.
func UnsetFields(m proto.Message, skip ...string) []string {
	var out []string
	unsetFields(m.ProtoReflect(), "", skip, &out)
	return out
}

func unsetFields(m protoreflect.Message, prefix string, skip []string, out *[]string) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		path := prefix + string(fd.Name())
		if contains(skip, path) {
			continue
		}
		if !m.Has(fd) {
			*out = append(*out, path)
			continue
		}
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() &&
			!strings.HasPrefix(string(fd.Message().FullName()), "google.protobuf.") {
			unsetFields(m.Get(fd).Message(), path+".", skip, out)
		}
	}
}
