package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// envSamples is a valid value for each global flag. A flag added without
// one fails TestEveryGlobalFlagHasAnEnvVar: give it a sample, and it gets
// its EDGECTL_* variable with no other work.
var envSamples = map[string]string{
	"server":          "a.example:7001,b.example:7001",
	"token":           "sample-token",
	"token-file":      "/sample/token",
	"output":          "json",
	"timeout":         "7s",
	"attempt-timeout": "1s",
	"local":           "true",
	"tls-ca":          "/sample/ca.pem",
	"tls-cert":        "/sample/cert.pem",
	"tls-key":         "/sample/key.pem",
	"context":         "other",
	// config: set by the test to a file holding the "other" context.
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// resolve runs `edgectl ARGS version --client` with env and returns the
// settings edgectl ended up with, and its exit code.
func resolve(t *testing.T, env map[string]string, args ...string) (*globals, *pflag.FlagSet, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}
	root := newRoot(g)
	root.SetArgs(append(args, "version", "--client"))
	root.SetOut(&out)
	root.SetErr(&errb)
	code := 0
	if err := root.ExecuteContext(context.Background()); err != nil {
		code = 1
		if _, ok := err.(usageError); ok {
			code = 2
		}
		errb.WriteString(err.Error())
	}
	return g, root.PersistentFlags(), errb.String(), code
}

// Every global flag has an EDGECTL_* variable that sets it, and its help
// names the variable: the list is every persistent flag, not a copy of it.
func TestEveryGlobalFlagHasAnEnvVar(t *testing.T) {
	env := map[string]string{}
	flags := newRoot(&globals{getenv: func(string) string { return "" }}).PersistentFlags()
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" {
			env[envName(f.Name)] = writeConfig(t, "contexts:\n  - name: other\n")
			return
		}
		v, ok := envSamples[f.Name]
		if !ok {
			t.Errorf("global flag --%s has no sample in envSamples", f.Name)
			return
		}
		env[envName(f.Name)] = v
		if !strings.Contains(f.Usage, "("+envName(f.Name)+")") {
			t.Errorf("--%s: help does not name %s", f.Name, envName(f.Name))
		}
	})
	_, pf, errs, code := resolve(t, env)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	pf.VisitAll(func(f *pflag.Flag) {
		want := env[envName(f.Name)]
		got := f.Value.String()
		if d, err := time.ParseDuration(want); err == nil && f.Value.Type() == "duration" {
			want = d.String()
		}
		if got != want {
			t.Errorf("%s=%q: --%s is %q", envName(f.Name), env[envName(f.Name)], f.Name, got)
		}
	})

	// A bad value is a usage error naming the variable.
	if _, _, errs, code := resolve(t, map[string]string{"EDGECTL_TIMEOUT": "soon"}); code != 2 || !strings.Contains(errs, "EDGECTL_TIMEOUT") {
		t.Errorf("EDGECTL_TIMEOUT=soon: exit %d, %q; want 2 naming the variable", code, errs)
	}
}

// settings are the connection settings a context can give.
type settings struct {
	servers, tokenFile, caFile, certFile, keyFile string
	timeout                                       time.Duration
}

// flag > EDGECTL_* > context > default, setting by setting; the
// context's paths resolve against the config file's directory.
func TestSettingsPrecedence(t *testing.T) {
	cfg := writeConfig(t, `current-context: prod
contexts:
  - name: prod
    servers: [p0.example:7001, p1.example:7001]
    token-file: prod.token
    tls-ca: ca.pem
    tls-cert: cert.pem
    tls-key: key.pem
    timeout: 40s
  - name: staging
    servers: [s0.example:7001]
`)
	dir := filepath.Dir(cfg)
	base := map[string]string{"EDGECTL_CONFIG": cfg}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want settings
	}{
		{"context", with(), nil, settings{servers: "p0.example:7001,p1.example:7001", tokenFile: filepath.Join(dir, "prod.token"),
			caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), timeout: 40 * time.Second}},
		{"env over context", with("EDGECTL_SERVER", "e.example:7001", "EDGECTL_TIMEOUT", "5s"), nil, settings{servers: "e.example:7001", tokenFile: filepath.Join(dir, "prod.token"),
			caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), timeout: 5 * time.Second}},
		{"flag over env", with("EDGECTL_SERVER", "e.example:7001"), []string{"--server", "f.example:7001", "--tls-cert", "/c", "--tls-key", "/k"}, settings{servers: "f.example:7001",
			tokenFile: filepath.Join(dir, "prod.token"), caFile: filepath.Join(dir, "ca.pem"), certFile: "/c", keyFile: "/k", timeout: 40 * time.Second}},
		{"--context", with(), []string{"--context", "staging"}, settings{servers: "s0.example:7001", timeout: 15 * time.Second}},
		{"EDGECTL_CONTEXT", with("EDGECTL_CONTEXT", "staging"), nil, settings{servers: "s0.example:7001", timeout: 15 * time.Second}},
		{"no file: defaults", map[string]string{"EDGECTL_CONFIG": filepath.Join(dir, "missing.yaml")}, nil, settings{servers: "127.0.0.1:7001", timeout: 15 * time.Second}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, _, errs, code := resolve(t, c.env, c.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			got := settings{servers: g.servers, tokenFile: g.tokenFile, caFile: g.caFile, certFile: g.certFile, keyFile: g.keyFile, timeout: g.timeout}
			if got != c.want {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}

	// A context that does not exist, or a file that holds a token, is
	// refused with exit 2.
	if _, _, errs, code := resolve(t, with(), "--context", "nope"); code != 2 || !strings.Contains(errs, `context "nope"`) {
		t.Errorf("--context nope: exit %d, %q", code, errs)
	}
	bad := writeConfig(t, "contexts:\n  - name: x\n    token: s3cret\n")
	if _, _, errs, code := resolve(t, map[string]string{"EDGECTL_CONFIG": bad}); code != 2 || !strings.Contains(errs, "never a token") {
		t.Errorf("a token in the file: exit %d, %q", code, errs)
	}
}

// The config commands, driven as a user would: the file is created 0600
// where XDG_CONFIG_HOME says, holds the token file's path and not its
// content, and use-context switches what later commands use.
func TestConfigCommands(t *testing.T) {
	xdg := t.TempDir()
	work := t.TempDir()
	tokenFile := filepath.Join(work, "prod.token")
	if err := os.WriteFile(tokenFile, []byte("the-token-value-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"XDG_CONFIG_HOME": xdg, "HOME": t.TempDir()}
	ctl := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := Execute(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
		return out.String(), errb.String(), code
	}
	if _, errs, code := ctl("config", "set-context", "prod", "--server", "p0:7001,p1:7001", "--token-file", tokenFile, "--timeout", "30s"); code != 0 {
		t.Fatalf("set-context: exit %d: %s", code, errs)
	}
	if _, errs, code := ctl("config", "set-context", "staging", "--server", "s0:7001"); code != 0 {
		t.Fatalf("set-context: exit %d: %s", code, errs)
	}
	path := filepath.Join(xdg, "edgectl", "config.yaml")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "the-token-value") || !strings.Contains(string(b), tokenFile) {
		t.Errorf("config file holds the token or lacks its path:\n%s", b)
	}
	if _, _, code := ctl("config", "current-context"); code != 1 {
		t.Errorf("current-context before use-context: exit %d, want 1", code)
	}
	if _, _, code := ctl("config", "use-context", "nope"); code != 1 {
		t.Errorf("use-context nope: exit %d, want 1", code)
	}
	if _, errs, code := ctl("config", "use-context", "staging"); code != 0 {
		t.Fatalf("use-context: exit %d: %s", code, errs)
	}
	out, _, _ := ctl("config", "current-context")
	if strings.TrimSpace(out) != "staging" {
		t.Errorf("current-context: %q", out)
	}
	out, _, _ = ctl("config", "get-contexts", "-o", "json")
	var gc struct {
		Current  string `json:"current_context"`
		Contexts []struct {
			Name    string   `json:"name"`
			Current bool     `json:"current"`
			Servers []string `json:"servers"`
		} `json:"contexts"`
	}
	if err := json.Unmarshal([]byte(out), &gc); err != nil {
		t.Fatalf("get-contexts -o json: %v\n%s", err, out)
	}
	if gc.Current != "staging" || len(gc.Contexts) != 2 || gc.Contexts[0].Name != "prod" || len(gc.Contexts[0].Servers) != 2 || !gc.Contexts[1].Current {
		t.Errorf("get-contexts: %+v", gc)
	}
	// Changing one setting keeps the others.
	if _, errs, code := ctl("config", "set-context", "prod", "--timeout", "1m"); code != 0 {
		t.Fatalf("set-context: exit %d: %s", code, errs)
	}
	env["EDGECTL_CONTEXT"] = "prod"
	g, _, errs, code := resolve(t, env)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if g.servers != "p0:7001,p1:7001" || g.tokenFile != tokenFile || g.timeout != time.Minute {
		t.Errorf("after set-context --timeout: servers %q token file %q timeout %v", g.servers, g.tokenFile, g.timeout)
	}
}
