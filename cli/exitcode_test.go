package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	// A closed port: nothing in this file may reach a server.
	env := map[string]string{"EDGECTL_SERVER": "127.0.0.1:1"}
	code = Execute(context.Background(), args, &out, &errb, func(k string) string { return env[k] })
	return out.String(), errb.String(), code
}

// Every usage mistake exits 2 with one line on stderr, in every command:
// an unknown command at any level, an unknown flag, a missing group
// command. Cobra's defaults were 0 (help) for `tenant lst` and 1 for an
// unknown top-level command.
func TestUsageErrorsExit2Everywhere(t *testing.T) {
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Name() == "help" {
			return
		}
		check := func(want string, args ...string) {
			t.Helper()
			_, errs, code := run(t, append(append([]string{}, path...), args...)...)
			last := strings.TrimSpace(errs)
			if i := strings.LastIndex(last, "\n"); i >= 0 {
				last = last[i+1:]
			}
			if code != 2 || !strings.Contains(last, want) {
				t.Errorf("edgectl %s: exit %d, last stderr line %q; want 2 and %q", strings.Join(append(path, args...), " "), code, last, want)
			}
		}
		check("unknown flag", "--no-such-flag")
		if c.HasSubCommands() {
			check("unknown command \"nosuch\"", "nosuch")
			check("missing command")
			for _, s := range c.Commands() {
				walk(s, append(append([]string{}, path...), s.Name()))
			}
		}
	}
	walk(newRoot(&globals{getenv: func(string) string { return "" }}), nil)
}

func TestUnknownCommandSuggests(t *testing.T) {
	for args, want := range map[string]string{
		"tenant lst":    `unknown command "lst" for "edgectl tenant"; did you mean`,
		"tenat":         `did you mean tenant?`,
		"cluster statu": `did you mean status?`,
	} {
		out, errs, code := run(t, strings.Fields(args)...)
		if code != 2 || !strings.Contains(errs, want) || out != "" {
			t.Errorf("edgectl %s: exit %d, stdout %q, stderr %q; want 2, nothing on stdout and %q", args, code, out, errs, want)
		}
		if strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("edgectl %s: stderr is not one line: %q", args, errs)
		}
	}
}

// Wrong argument counts are usage errors, checked before any server is
// contacted.
func TestArgumentCountsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"tenant", "get"},
		{"tenant", "get", "a.example", "b.example"},
		{"tenant", "list", "extra"},
		{"cluster", "status", "extra"},
		{"cluster", "join", "n1"},
		{"cert", "remove"},
		{"snapshot", "save"},
		{"snapshot", "restore", "a", "b"},
		{"history", "a.example", "b.example"},
		{"version", "extra"},
		{"completion", "bash", "extra"},
		{"-o", "xml", "tenant", "list"},
	} {
		if _, errs, code := run(t, args...); code != 2 {
			t.Errorf("edgectl %s: exit %d (%s), want 2", strings.Join(args, " "), code, strings.TrimSpace(errs))
		}
	}
	// Help asked for is not an error.
	for _, args := range [][]string{{"--help"}, {"tenant", "--help"}, {"help", "tenant"}} {
		if out, _, code := run(t, args...); code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("edgectl %s: exit %d, want 0 and the help", strings.Join(args, " "), code)
		}
	}
}
