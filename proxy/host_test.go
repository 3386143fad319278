package proxy

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	tests := []struct {
		in, want string
		err      error
	}{
		{"shop.example", "shop.example", nil},
		{"Shop.Example", "shop.example", nil},
		{"shop.example:8080", "shop.example", nil},
		{"SHOP.EXAMPLE.:443", "shop.example", nil},
		{"shop.example.", "shop.example", nil},
		{"shop.example:", "shop.example", nil},
		{"localhost", "localhost", nil},
		{"127.0.0.1:80", "127.0.0.1", nil},
		{"[::1]", "::1", nil},
		{"[::1]:8443", "::1", nil},
		{"[2001:DB8::1]:443", "2001:db8::1", nil},
		{"a_b-c.example", "a_b-c.example", nil},
		{long63 + ".example", long63 + ".example", nil},
		{"", "", ErrMissingHost},
		{".", "", ErrInvalidHost},
		{":80", "", ErrInvalidHost},
		{"shop..example", "", ErrInvalidHost},
		{".shop.example", "", ErrInvalidHost},
		{"shop.example..", "", ErrInvalidHost},
		{"shop.example:http", "", ErrInvalidHost},
		{"shop.example:0", "", ErrInvalidHost},
		{"shop.example:65536", "", ErrInvalidHost},
		{"shop.example:123456", "", ErrInvalidHost},
		{"::1", "", ErrInvalidHost},
		{"[::1", "", ErrInvalidHost},
		{"[::1]x", "", ErrInvalidHost},
		{"[::1]:x", "", ErrInvalidHost},
		{"[zz::1]", "", ErrInvalidHost},
		{"[1]", "", ErrInvalidHost},
		{"shop example", "", ErrInvalidHost},
		{"shop.example/x", "", ErrInvalidHost},
		{"user@shop.example", "", ErrInvalidHost},
		{"shöp.example", "", ErrInvalidHost},
		{"shop.example\x00", "", ErrInvalidHost},
		{strings.Repeat("a", 64) + ".example", "", ErrInvalidHost},
		{strings.Repeat("a.", 127) + "ab", "", ErrInvalidHost}, // 256 bytes
	}
	for _, tt := range tests {
		got, err := NormalizeHost(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestNormalizeHostNoAllocForNormalHosts(t *testing.T) {
	for _, h := range []string{"shop.example", "shop.example:8443", "shop.example.", "[::1]:80"} {
		if n := testing.AllocsPerRun(100, func() { NormalizeHost(h) }); n != 0 {
			t.Errorf("NormalizeHost(%q): %v allocs, want 0", h, n)
		}
	}
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"shop.example", "Shop.Example.:443", "[::1]:80", "a..b", "", ":", "[", "x:99999", "ä.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := NormalizeHost(in)
		if err != nil {
			if got != "" {
				t.Fatalf("error %v with non-empty result %q", err, got)
			}
			return
		}
		if got == "" || len(got) > maxHostLen {
			t.Fatalf("NormalizeHost(%q) = %q: bad length", in, got)
		}
		if strings.HasSuffix(got, ".") || strings.ToLower(got) != got {
			t.Fatalf("NormalizeHost(%q) = %q: not normal", in, got)
		}
		if strings.Contains(got, ":") != (in[0] == '[') {
			t.Fatalf("NormalizeHost(%q) = %q: port left or IPv6 mangled", in, got)
		}
		// Normal names are fixed points; IPv6 needs its brackets back.
		again := got
		if in[0] == '[' {
			again = "[" + got + "]"
		}
		if g2, err := NormalizeHost(again); err != nil || g2 != got {
			t.Fatalf("not idempotent: %q → %q → %q, %v", in, got, g2, err)
		}
		// Adding a port or a trailing dot does not change the result.
		if in[0] != '[' {
			if g3, err := NormalizeHost(strings.ToUpper(got) + ".:443"); err != nil || g3 != got {
				t.Fatalf("%q with dot and port → %q, %v; want %q", got, g3, err, got)
			}
		}
	})
}

func BenchmarkNormalizeHost(b *testing.B) {
	for _, h := range []string{"shop.example", "shop.example:8443", "Shop.Example"} {
		b.Run(h, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NormalizeHost(h)
			}
		})
	}
}
