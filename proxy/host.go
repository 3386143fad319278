package proxy

import (
	"errors"
	"strings"
)

// Errors returned by NormalizeHost.
var (
	ErrMissingHost = errors.New("missing host")
	ErrInvalidHost = errors.New("invalid host")
)

const (
	maxHostLen  = 253 // DNS name limit without the trailing dot
	maxLabelLen = 63
)

// NormalizeHost turns a Host header or :authority value into the key used
// for routing: lowercase, without port and without a trailing dot. An IPv6
// literal loses its brackets ("[::1]:8443" → "::1").
//
// It accepts letters, digits, '-', '_' and '.' in names, rejects empty
// labels, labels over 63 bytes and names over 253 bytes, and non-numeric
// or out-of-range ports. A host that is already normal (lowercase, with or
// without a port) is returned as a substring of the input: no allocation.
func NormalizeHost(h string) (string, error) {
	if h == "" {
		return "", ErrMissingHost
	}
	if h[0] == '[' {
		return normalizeIPv6(h)
	}
	name := h
	if i := lastColon(h); i >= 0 {
		if !validPort(h[i+1:]) {
			return "", ErrInvalidHost
		}
		name = h[:i]
	}
	if n := len(name); n > 0 && name[n-1] == '.' {
		name = name[:n-1]
	}
	if name == "" || len(name) > maxHostLen {
		return "", ErrInvalidHost
	}
	upper := false
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			label++
		case 'A' <= c && c <= 'Z':
			upper = true
			label++
		case c == '.':
			if label == 0 {
				return "", ErrInvalidHost
			}
			label = 0
			continue
		default:
			return "", ErrInvalidHost
		}
		if label > maxLabelLen {
			return "", ErrInvalidHost
		}
	}
	if label == 0 { // "a.." once the trailing dot is gone
		return "", ErrInvalidHost
	}
	if !upper {
		return name, nil
	}
	return lower(name), nil
}

// normalizeIPv6 handles "[addr]" and "[addr]:port".
func normalizeIPv6(h string) (string, error) {
	end := -1
	for i := 1; i < len(h); i++ {
		if h[i] == ']' {
			end = i
			break
		}
	}
	if end < 0 {
		return "", ErrInvalidHost
	}
	if rest := h[end+1:]; rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
		return "", ErrInvalidHost
	}
	addr := h[1:end]
	if len(addr) < 2 || len(addr) > 45 {
		return "", ErrInvalidHost
	}
	upper, colons := false, 0
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', c == '.':
		case 'A' <= c && c <= 'F':
			upper = true
		case c == ':':
			colons++
		default:
			return "", ErrInvalidHost
		}
	}
	if colons < 2 {
		return "", ErrInvalidHost
	}
	if !upper {
		return addr, nil
	}
	return lower(addr), nil
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
	}
	return -1
}

// validPort accepts "" (RFC 3986 allows "host:") and 1..65535.
func validPort(p string) bool {
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return p == "" || (n > 0 && n <= 65535)
}

// lower lowercases ASCII s in one allocation.
func lower(s string) string { return strings.ToLower(s) }
