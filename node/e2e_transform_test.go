package node_test

import (
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestE2ETransformRules(t *testing.T) {
	c := startE2ECluster(t, 1)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		zw.Write([]byte(`<html><head><title>Welcome</title></head><body><h1>Welcome</h1><p>Hello world</p><p>path=` + r.URL.Path + `</p></body></html>`))
		zw.Close()
	}))
	defer origin.Close()
	srv := c.nodes[0].admin
	c.mustCtl("--server", srv, "tenant", "add", "shop.example", "--origin", origin.URL)
	dir := t.TempDir()
	rules := "../testdata/transform/issue-example.yaml" // the rules file from issue 5, as-is

	// Preview before traffic sees the rules.
	diff := c.mustCtl("--server", srv, "transform", "preview", "shop.example", "--url", "/", "--lang", "fr", "-f", rules, "--diff")
	if !strings.Contains(diff, "+") || !strings.Contains(diff, "Bienvenue") {
		t.Fatalf("preview diff:\n%s", diff)
	}
	if code, body := proxyStatus(t, c.nodes[0].http, "shop.example"); code != 200 || strings.Contains(body, "edge-toolbar") {
		t.Fatalf("preview changed live traffic: %d %q", code, body)
	}

	c.mustCtl("--server", srv, "tenant", "transform", "set", "shop.example", "-f", rules)
	if got := c.mustCtl("--server", srv, "tenant", "transform", "get", "shop.example"); !strings.Contains(got, "Bienvenue") || !strings.Contains(got, "body-end") {
		t.Fatalf("transform get:\n%s", got)
	}
	req, _ := http.NewRequest("GET", "http://"+c.nodes[0].http+"/fr/page", nil)
	req.Host = "shop.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4096)
	n, _ := resp.Body.Read(b)
	resp.Body.Close()
	body := string(b[:n])
	for _, want := range []string{"<h1>Bienvenue</h1>", "Bonjour le monde", "path=/page", `edge-toolbar`, `lang="fr"`} {
		if !strings.Contains(body, want) {
			t.Errorf("french page lacks %q: %s", want, body)
		}
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("inject:\n  - at: nowhere\n    html: x\n"), 0o600)
	if _, errs, code := c.ctl("--server", srv, "tenant", "transform", "set", "shop.example", "-f", bad); code != 1 || !strings.Contains(errs, "inject[0]") {
		t.Fatalf("bad rules: exit %d, %q", code, errs)
	}
	c.mustCtl("--server", srv, "tenant", "transform", "clear", "shop.example")
	if got := c.mustCtl("--server", srv, "tenant", "transform", "get", "shop.example"); !strings.Contains(got, "no transform rules") {
		t.Fatalf("after clear: %q", got)
	}
}
