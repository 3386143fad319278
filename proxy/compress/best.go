package compress

// Set is a set of encodings, one bit per Encoding (Identity's bit is
// ignored by Best: identity is always available).
type Set uint8

// Add returns s with e in it.
func (s Set) Add(e Encoding) Set { return s | 1<<e }

// Has reports whether e is in s.
func (s Set) Has(e Encoding) bool { return s&(1<<e) != 0 }

// storedPreference breaks ties between stored variants: br, then zstd,
// then gzip. Unlike Negotiate's order (which weighs the CPU of
// compressing per response), a stored variant was compressed once at a
// high level, so the smallest wins: br, then zstd, then gzip.
var storedPreference = [...]Encoding{Brotli, Zstd, Gzip}

// Best picks which of the encodings a stored response has (have) to send
// a client whose Accept-Encoding field lines are lines (RFC 9110 section
// 12.5.3): the coding with the highest q-value, ties broken br, zstd,
// gzip. A coding not listed takes the q-value of "*", or is not
// acceptable without one; q=0 excludes; "x-gzip" is gzip; listed twice,
// the lower weight wins. Identity, always available, wins only when it is
// listed with a higher q-value than every acceptable coding, or when none
// is acceptable (also with no Accept-Encoding at all, or an empty one).
// Malformed elements are ignored. Best does not allocate.
func Best(lines []string, have Set) Encoding {
	have &^= 1 << Identity
	if have == 0 || len(lines) == 0 {
		return Identity
	}
	var q [4]int // thousandths; -1: not listed
	q[Gzip], q[Zstd], q[Brotli] = -1, -1, -1
	identityQ, star := -1, -1
	for _, line := range lines {
		sc := scanner{s: line}
		for {
			coding, qv, ok := sc.next()
			if !ok {
				break
			}
			var slot *int
			switch {
			case asciiFold(coding, "br"):
				slot = &q[Brotli]
			case asciiFold(coding, "gzip"), asciiFold(coding, "x-gzip"):
				slot = &q[Gzip]
			case asciiFold(coding, "zstd"):
				slot = &q[Zstd]
			case coding == "*":
				slot = &star
			case asciiFold(coding, "identity"):
				slot = &identityQ
			default:
				continue
			}
			if *slot < 0 || qv < *slot {
				*slot = qv
			}
		}
	}
	best, bestQ := Identity, 0
	for _, e := range storedPreference {
		if !have.Has(e) {
			continue
		}
		v := q[e]
		if v < 0 {
			v = star
		}
		if v > bestQ {
			best, bestQ = e, v
		}
	}
	if identityQ > bestQ {
		return Identity
	}
	return best
}

// asciiFold compares a token with a lower-case ASCII name, ignoring ASCII
// case only: strings.EqualFold would also take "zſtd" (U+017F) for zstd.
func asciiFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
