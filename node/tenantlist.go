package node

import (
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
	"github.com/edgeproxy/edge/raftstore/tenantcfg"
)

// listPagingVersion is ListTenantsResponse.paging: this server applies
// the list filters and makes opaque page tokens. A client that sends a
// filter or a token and gets 0 back talked to an older server, which
// ignored them.
const listPagingVersion = 2

// listFilter is a ListTenants request's filters.
type listFilter struct {
	status     string // "", active, suspended or expired
	originHost string // lower case
}

func listFilterFromProto(req *edgev1.ListTenantsRequest) (listFilter, error) {
	f := listFilter{status: req.GetStatus(), originHost: strings.ToLower(strings.TrimSpace(req.GetOriginHost()))}
	switch f.status {
	case "", "active", "suspended", "expired":
	default:
		return f, status.Errorf(codes.InvalidArgument, "status %q: want active, suspended or expired", f.status)
	}
	return f, nil
}

// match reports whether t passes the filters at now.
func (f listFilter) match(t *tenantcfg.Tenant, now time.Time) bool {
	if f.status != "" {
		state := string(t.License.Status)
		if t.License.Expired(now) {
			state = "expired"
		}
		if state != f.status {
			return false
		}
	}
	if f.originHost != "" {
		host, hostPort := "", ""
		if u, err := url.Parse(t.Origin.URL); err == nil {
			host, hostPort = strings.ToLower(u.Hostname()), strings.ToLower(u.Host)
		}
		if f.originHost != host && f.originHost != hostPort && f.originHost != strings.ToLower(t.Origin.HostHeader) {
			return false
		}
	}
	return true
}

// A page token is base64url("1" NUL last-domain NUL filters) followed by
// the first 8 bytes of its SHA-256: opaque to clients, so its format may
// change, and refused when it is mangled or comes back with other filters
// (the page after "m.example" among suspended tenants is not a page of
// all tenants). It is not a secret and not signed: anyone may list from
// any domain on; the check catches mistakes, not attackers.
const tokenSumLen = 8

func (f listFilter) key() string { return f.status + "\x00" + f.originHost }

func (f listFilter) token(lastDomain string) string {
	payload := "1\x00" + lastDomain + "\x00" + f.key()
	sum := sha256.Sum256([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(append([]byte(payload), sum[:tokenSumLen]...))
}

// decodeToken returns the domain after which the next page starts.
func (f listFilter) decodeToken(tok string) (string, error) {
	bad := status.Error(codes.InvalidArgument, "page_token: not a token this server made; start again without it")
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) <= tokenSumLen {
		return "", bad
	}
	payload, sum := b[:len(b)-tokenSumLen], b[len(b)-tokenSumLen:]
	want := sha256.Sum256(payload)
	if string(sum) != string(want[:tokenSumLen]) {
		return "", bad
	}
	version, rest, _ := strings.Cut(string(payload), "\x00")
	domain, key, ok := strings.Cut(rest, "\x00")
	if version != "1" || !ok {
		return "", bad
	}
	if key != f.key() {
		return "", status.Error(codes.InvalidArgument, "page_token: made for other filters (status, origin_host); give the same filters or start again without it")
	}
	return domain, nil
}
