package proxy

import (
	"io"
	"net/http"
	"testing"
)

func TestPerTenantMetricsOnlyForOptedInTenants(t *testing.T) {
	o := origin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	opted := tenant("shop.example", o.URL)
	opted.Metrics = true
	other := tenant("blog.example", o.URL)
	p := startProxy(t, routesOf(opted, other), proxyOpts{})
	for _, host := range []string{"shop.example", "shop.example", "blog.example"} {
		resp := p.do(t, "GET", host, "/", "", nil)
		readAll(t, resp)
	}
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		if mf.GetName() != "edge_tenant_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			series++
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["tenant"] != "shop.example" || labels["code"] != "2xx" || m.GetCounter().GetValue() != 2 {
				t.Errorf("series %v = %v", labels, m.GetCounter().GetValue())
			}
		}
	}
	if series != 1 {
		t.Fatalf("%d per-tenant series, want 1 (only the opted-in tenant)", series)
	}
}
