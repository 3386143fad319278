package cli

import "testing"

// The config file is hand-edited: any input parses or is refused with an
// error, and what parses holds no token and only usable timeouts.
func FuzzParseConfig(f *testing.F) {
	f.Add("current-context: a\ncontexts:\n  - name: a\n    servers: [x:1]\n    timeout: 3s\n")
	f.Add("contexts:\n  - name: a\n    token: t\n")
	f.Add("contexts: [{name: a}, {name: a}]")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		cf, err := parseConfig([]byte(in))
		if err != nil {
			return
		}
		for _, c := range cf.Contexts {
			if c.Token != "" || c.Name == "" || (c.TLSCert == "") != (c.TLSKey == "") {
				t.Fatalf("accepted %+v", c)
			}
		}
	})
}
