package node

import (
	"testing"
)

// A page token round-trips with the filters it was made for, and
// anything else a client sends is refused, never misread as a domain.
func FuzzPageToken(f *testing.F) {
	f.Add("m.example", "", "", "suspended", "")
	f.Add("", "active", "o.example", "active", "o.example")
	f.Add("a\x00b", "", "", "", "x")
	f.Fuzz(func(t *testing.T, domain, status, host, status2, host2 string) {
		if containsNUL(domain, status) {
			t.Skip()
		}
		made := listFilter{status: status, originHost: host}
		tok := made.token(domain)
		got, err := made.decodeToken(tok)
		if err != nil || got != domain {
			t.Fatalf("token for %q: got %q, %v", domain, got, err)
		}
		other := listFilter{status: status2, originHost: host2}
		if got, err := other.decodeToken(tok); err == nil && other.key() != made.key() {
			t.Fatalf("token made for %+v accepted with %+v (%q)", made, other, got)
		}
		// A token with any byte changed is refused.
		for i := range tok {
			b := []byte(tok)
			b[i] ^= 1
			if got, err := made.decodeToken(string(b)); err == nil && string(b) != tok && got != domain {
				t.Fatalf("mangled token %q accepted: %q", b, got)
			}
		}
	})
}

// containsNUL: NUL separates the token's parts; no stored domain holds
// one, and status is one of three words (so the host, last, may).
func containsNUL(ss ...string) bool {
	for _, s := range ss {
		for i := range len(s) {
			if s[i] == 0 {
				return true
			}
		}
	}
	return false
}
