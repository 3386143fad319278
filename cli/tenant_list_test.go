package cli

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"

	edgev1 "github.com/edgeproxy/edge/api/edgev1"
)

// oldServer answers List as edged did before filters and opaque page
// tokens: it ignores status and origin_host and reads page_token as the
// domain to start after. It stands for a member not yet upgraded during a
// rolling update (another process, another version).
type oldServer struct {
	edgev1.UnimplementedTenantServiceServer
	domains []string
}

func (s *oldServer) List(_ context.Context, req *edgev1.ListTenantsRequest) (*edgev1.ListTenantsResponse, error) {
	resp := &edgev1.ListTenantsResponse{Index: 7}
	for _, d := range s.domains {
		if d <= req.GetPageToken() {
			continue
		}
		if req.GetLimit() > 0 && len(resp.Tenants) == int(req.GetLimit()) {
			resp.NextPageToken = resp.Tenants[len(resp.Tenants)-1].GetDomain()
			break
		}
		resp.Tenants = append(resp.Tenants, &edgev1.Tenant{Domain: d})
	}
	return resp, nil
}

// Against a server that predates filters and opaque tokens, a plain list
// still works, and a filtered list or one from a token is refused rather
// than printed wrong (every tenant shown as "suspended").
func TestTenantListRefusesAnOlderServersUnfilteredAnswer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	edgev1.RegisterTenantServiceServer(srv, &oldServer{domains: []string{"a.example", "b.example", "c.example"}})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	ctl := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := Execute(context.Background(), append([]string{"--server", lis.Addr().String(), "--timeout", "5s"}, args...), &out, &errb, func(string) string { return "" })
		return out.String(), errb.String(), code
	}
	if out, errs, code := ctl("tenant", "list"); code != 0 || strings.Count(out, ".example") != 3 {
		t.Errorf("plain list: exit %d, %q %q; want the three tenants", code, out, errs)
	}
	for _, args := range [][]string{
		{"--status", "suspended"},
		{"--origin-host", "o.example"},
		{"--page-token", "opaque-from-a-new-server"},
	} {
		out, errs, code := ctl(append([]string{"tenant", "list"}, args...)...)
		if code != 1 || out != "" || !strings.Contains(errs, "server is older") {
			t.Errorf("tenant list %s: exit %d, stdout %q, stderr %q; want 1, nothing printed, and why", strings.Join(args, " "), code, out, errs)
		}
	}
}
