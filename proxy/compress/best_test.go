package compress

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// bestReference is Best written the obvious way (maps, floats, a regexp
// for the qvalue grammar), to fuzz the allocation-free one against.
func bestReference(lines []string, have Set) Encoding {
	if len(lines) == 0 {
		return Identity
	}
	qre := regexp.MustCompile(`^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$`)
	listed := map[string]float64{}
	for _, line := range lines {
		for _, item := range strings.Split(line, ",") {
			parts := strings.Split(item, ";")
			coding := asciiLower(strings.Trim(parts[0], " \t"))
			if coding == "" {
				continue
			}
			if coding == "x-gzip" {
				coding = "gzip"
			}
			q, valid := 1.0, true
			for _, p := range parts[1:] {
				name, value, _ := strings.Cut(strings.Trim(p, " \t"), "=")
				if asciiLower(strings.Trim(name, " \t")) != "q" {
					continue
				}
				value = strings.Trim(value, " \t")
				if !qre.MatchString(value) {
					valid = false
					break
				}
				q, _ = strconv.ParseFloat(value, 64)
			}
			if !valid {
				continue
			}
			if old, ok := listed[coding]; !ok || q < old {
				listed[coding] = q
			}
		}
	}
	weight := func(name string) float64 {
		if q, ok := listed[name]; ok {
			return q
		}
		if q, ok := listed["*"]; ok {
			return q
		}
		return 0
	}
	best, bestQ := Identity, 0.0
	for _, e := range []Encoding{Brotli, Zstd, Gzip} {
		if have.Has(e) && weight(e.String()) > bestQ {
			best, bestQ = e, weight(e.String())
		}
	}
	if q, ok := listed["identity"]; ok && q > bestQ {
		return Identity
	}
	return best
}

func TestBest(t *testing.T) {
	all := Set(0).Add(Gzip).Add(Brotli).Add(Zstd)
	gz := Set(0).Add(Gzip)
	gzBr := gz.Add(Brotli)
	for _, tc := range []struct {
		ae   []string
		have Set
		want Encoding
	}{
		{nil, all, Identity},
		{[]string{""}, all, Identity},
		{[]string{"gzip, deflate, br, zstd"}, all, Brotli}, // ties: br first
		{[]string{"gzip, deflate, br, zstd"}, gz, Gzip},
		{[]string{"gzip, zstd"}, all, Zstd},
		{[]string{"br;q=1, gzip;q=0.5"}, gzBr, Brotli}, // the example
		{[]string{"br;q=0.5, gzip;q=1"}, gzBr, Gzip},
		{[]string{"br;q=0, gzip;q=0.1"}, gzBr, Gzip},
		{[]string{"br;q=0, gzip;q=0"}, gzBr, Identity},
		{[]string{"*"}, all, Brotli},
		{[]string{"*;q=0.5, br;q=0"}, all, Zstd},
		{[]string{"gzip;q=0.5, identity"}, all, Identity}, // identity listed higher
		{[]string{"gzip;q=0.5, identity;q=0.5"}, all, Gzip},
		{[]string{"identity;q=0, *;q=0"}, all, Identity}, // nothing else to send
		{[]string{"X-GZIP"}, all, Gzip},
		{[]string{"gzip", "br"}, all, Brotli},             // two field lines
		{[]string{"br;q=1.5, gzip"}, all, Gzip},           // malformed q: element ignored
		{[]string{"br, br;q=0.2, gzip;q=0.5"}, all, Gzip}, // listed twice: the lower wins
		{[]string{"gzip"}, 0, Identity},
	} {
		if got := Best(tc.ae, tc.have); got != tc.want {
			t.Errorf("Best(%q, %b) = %v, want %v", tc.ae, tc.have, got, tc.want)
		}
		if got := bestReference(tc.ae, tc.have); got != tc.want {
			t.Errorf("reference(%q, %b) = %v, want %v (the reference is wrong)", tc.ae, tc.have, got, tc.want)
		}
	}
}

func TestBestDoesNotAllocate(t *testing.T) {
	lines := []string{"gzip;q=0.8, deflate, br;q=1.0, zstd;q=0.9, *;q=0.1"}
	all := Set(0).Add(Gzip).Add(Brotli).Add(Zstd)
	if n := testing.AllocsPerRun(100, func() { _ = Best(lines, all) }); n != 0 {
		t.Fatalf("Best allocates %v times", n)
	}
}

func FuzzBest(f *testing.F) {
	for _, s := range []string{"gzip, deflate, br, zstd", "br;q=1, gzip;q=0.5", "*;q=0", "identity;q=1, gzip;q=0.999",
		"x-gzip;Q=0.5;level=1", "zſtd, \u212a", " br ;q= 0.3\t, gzip;q=0.30", "zstd;q=1.000, br;q=1.0001", ",,;q=1,"} {
		f.Add(s, "", uint8(14))
	}
	f.Fuzz(func(t *testing.T, a, b string, have uint8) {
		lines := []string{a}
		if b != "" {
			lines = append(lines, b)
		}
		if got, want := Best(lines, Set(have)), bestReference(lines, Set(have)); got != want {
			t.Fatalf("Best(%q, %b) = %v, reference %v", lines, have, got, want)
		}
	})
}

// asciiLower lowers ASCII letters only: content codings are tokens.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
