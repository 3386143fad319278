package cli

import (
	"strings"
	"testing"
)

// TestLineDiffRemovedBeforeAdded: transform preview --diff reads like
// diff -u: a replaced line shows its old text (-) before its new (+), and
// lines both sides share are not printed.
func TestLineDiffRemovedBeforeAdded(t *testing.T) {
	for _, c := range []struct {
		a, b, want string
	}{
		{"a b c", "a x c", "-b +x"},
		{"<h1>Hello</h1> <p>Shop</p>", "<h1>Bonjour</h1> <p>Boutique</p>", "-<h1>Hello</h1> -<p>Shop</p> +<h1>Bonjour</h1> +<p>Boutique</p>"},
		{"a b", "a b c", "+c"},
		{"a b c", "a c", "-b"},
		{"same", "same", ""},
	} {
		var out strings.Builder
		lineDiff(&out, strings.Fields(c.a), strings.Fields(c.b))
		if got := strings.Join(strings.Fields(out.String()), " "); got != c.want {
			t.Errorf("lineDiff(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}
