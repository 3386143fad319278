package cache

import (
	"net/http"
	"strings"
	"time"
)

// cacheControl is a parsed Cache-Control header (RFC 9111 section 5.2).
// Durations are -1 when the directive is absent.
type cacheControl struct {
	maxAge, sMaxAge, swr, sie            time.Duration
	noStore, noCache, private, public    bool
	mustRevalidate, proxyRevalidate, any bool
}

// parseCacheControl parses every Cache-Control field line in h.
func parseCacheControl(h http.Header) cacheControl {
	return parseDirectives(h["Cache-Control"])
}

// parseDirectives parses the lines of a Cache-Control field. Unknown
// directives are ignored; a directive with a malformed delta-seconds value
// is treated as absent, except max-age and s-maxage, which then mean
// "already stale" (RFC 9111 section 4.2.1 asks caches to be conservative).
// A max-age or s-maxage given twice with different values also means
// "already stale" (section 4.2.1 allows the first or stale; two layers
// disagreeing about a lifetime is not a reason to pick the longer one);
// stale-while-revalidate and stale-if-error given twice take the smaller.
func parseDirectives(lines []string) cacheControl {
	cc := cacheControl{maxAge: -1, sMaxAge: -1, swr: -1, sie: -1}
	for _, line := range lines {
		for len(line) > 0 {
			var item string
			item, line = nextDirective(line)
			name, value, _ := strings.Cut(item, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			value = strings.Trim(strings.TrimSpace(value), `"`)
			if name == "" {
				continue
			}
			cc.any = true
			switch name {
			case "max-age":
				cc.maxAge = repeated(cc.maxAge, deltaSeconds(value, 0))
			case "s-maxage":
				cc.sMaxAge = repeated(cc.sMaxAge, deltaSeconds(value, 0))
			case "stale-while-revalidate":
				if d := deltaSeconds(value, -1); d >= 0 {
					cc.swr = smaller(cc.swr, d)
				}
			case "stale-if-error":
				if d := deltaSeconds(value, -1); d >= 0 {
					cc.sie = smaller(cc.sie, d)
				}
			case "no-store":
				cc.noStore = true
			case "no-cache":
				// A qualified no-cache="field" is treated like plain no-cache:
				// revalidating more often is always safe.
				cc.noCache = true
			case "private":
				cc.private = true
			case "public":
				cc.public = true
			case "must-revalidate":
				cc.mustRevalidate = true
			case "proxy-revalidate":
				cc.proxyRevalidate = true
			}
		}
	}
	return cc
}

// repeated combines a lifetime directive seen before (prev, -1 if not)
// with a new occurrence: different values mean stale.
func repeated(prev, d time.Duration) time.Duration {
	if prev >= 0 && prev != d {
		return 0
	}
	return d
}

// smaller combines a stale window seen before (prev, -1 if not) with a
// new occurrence.
func smaller(prev, d time.Duration) time.Duration {
	if prev >= 0 {
		return min(prev, d)
	}
	return d
}

// nextDirective splits the first directive off a Cache-Control list,
// honouring quoted strings that may contain commas.
func nextDirective(s string) (item, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case ',':
			if !quoted {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

// deltaSeconds parses a delta-seconds value (1*DIGIT, RFC 9111 section
// 1.2.2: no sign, no space); bad values yield bad. Values past 2^31-1,
// however many digits, are 2^31-1.
func deltaSeconds(v string, bad time.Duration) time.Duration {
	if v == "" {
		return bad
	}
	const maxDelta = 1<<31 - 1
	n := int64(0)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return bad
		}
		if n <= maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return time.Duration(min(n, maxDelta)) * time.Second
}

// fieldDate parses a header field that holds one HTTP-date; a field
// given more than once, or not a valid HTTP-date, is invalid.
func fieldDate(h http.Header, name string, now time.Time) (t time.Time, present, ok bool) {
	v := h[name]
	switch len(v) {
	case 0:
		return time.Time{}, false, false
	case 1:
		t, ok = parseHTTPDate(v[0], now)
		return t, true, ok
	}
	return time.Time{}, true, false
}

// ageOf reads the Age field (RFC 9111 section 5.1): the first member of
// a list (several field lines or commas), as the section asks. ok is
// false when that member is not delta-seconds: the response's age is
// then unknown, and the cache treats it as already stale rather than
// ignoring the field (the section's SHOULD), which would make a response
// an upstream cache has held for hours look fresh.
func ageOf(h http.Header) (age time.Duration, ok bool) {
	v := h["Age"]
	if len(v) == 0 {
		return 0, true
	}
	first, _, _ := strings.Cut(v[0], ",")
	d := deltaSeconds(strings.TrimSpace(first), -1)
	if d < 0 {
		return 0, false
	}
	return d, true
}

// heuristicStatus reports whether a status code is heuristically cacheable
// (RFC 9110 section 15.1): storable without explicit freshness.
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// maxHeuristic caps the Last-Modified heuristic lifetime.
const maxHeuristic = 24 * time.Hour

// freshness is what the cache decides about a response when storing it.
type freshness struct {
	storable       bool
	reason         string // why not storable, for Cache-Status detail
	lifetime       time.Duration
	swr, sie       time.Duration
	mustRevalidate bool // no stale serving at all once stale
	noCache        bool // revalidate on every use
}

// decide applies RFC 9111 sections 3 and 4.2.1 and the tenant policy to a
// response received at now.
// A targeted field (Edge-Cache-Control, CDN-Cache-Control) replaces
// Cache-Control and Expires when present and valid (RFC 9213).
func decide(code int, h http.Header, p Policy, reqAuthorized bool, now time.Time) freshness {
	cc, targeted := controlOf(h)
	f := freshness{}
	switch {
	case code == http.StatusPartialContent || code == http.StatusNotModified || code < 200:
		f.reason = "status"
		return f
	case cc.noStore:
		f.reason = "no-store"
		return f
	case cc.private:
		f.reason = "private"
		return f
	case reqAuthorized && !p.CacheAuthorized:
		f.reason = "authorization"
		return f
	case reqAuthorized && !cc.public && cc.sMaxAge < 0 && !cc.mustRevalidate:
		// RFC 9111 section 3.5: a shared cache stores a response to a
		// request with Authorization only when the origin said it may
		// be shared (public, s-maxage, must-revalidate). Without this,
		// one user's max-age=3600 answer would be every user's.
		f.reason = "authorization"
		return f
	case len(h.Values("Set-Cookie")) > 0 && !p.CacheSetCookie:
		f.reason = "set-cookie"
		return f
	}
	for _, v := range h.Values("Vary") {
		if strings.Contains(v, "*") {
			f.reason = "vary"
			return f
		}
	}

	explicit := true
	switch {
	case p.OverrideTTL && p.DefaultTTL > 0:
		f.lifetime = p.DefaultTTL
	case cc.sMaxAge >= 0:
		f.lifetime = cc.sMaxAge
	case cc.maxAge >= 0:
		f.lifetime = cc.maxAge
	case len(h["Expires"]) > 0 && !targeted:
		// Several Expires lines, or one that is not exactly an HTTP-date,
		// mean already expired (RFC 9111 sections 4.2.1 and 5.3).
		exp, _, ok := fieldDate(h, "Expires", now)
		if !ok {
			f.lifetime = 0
			break
		}
		f.lifetime = max(exp.Sub(dateOf(h, now)), 0)
	default:
		explicit = false
	}
	if !explicit && !cc.public {
		if !heuristicStatus(code) {
			f.reason = "status"
			return f
		}
	}
	if !explicit {
		switch {
		case p.DefaultTTL > 0:
			f.lifetime = p.DefaultTTL
		default:
			if lm, _, ok := fieldDate(h, "Last-Modified", now); ok {
				f.lifetime = min(max(dateOf(h, now).Sub(lm)/10, 0), maxHeuristic)
			}
		}
	}
	_, _, lmOK := fieldDate(h, "Last-Modified", now)
	hasValidator := h.Get("ETag") != "" || lmOK
	f.swr = max(cc.swr, 0)
	f.sie = max(cc.sie, 0)
	// s-maxage implies proxy-revalidate (RFC 9111 section 5.2.2.10), but an
	// explicit stale-while-revalidate or stale-if-error next to it is the
	// origin asking for stale serving, as CDNs read it.
	f.mustRevalidate = cc.mustRevalidate || cc.proxyRevalidate ||
		cc.sMaxAge >= 0 && !p.OverrideTTL && f.swr == 0 && f.sie == 0
	if !f.mustRevalidate && f.sie == 0 {
		f.sie = p.StaleIfError
	}
	if !f.mustRevalidate && f.swr == 0 {
		f.swr = p.StaleWhileRevalidate
	}
	f.noCache = cc.noCache
	if _, ok := ageOf(h); !ok && !(p.OverrideTTL && p.DefaultTTL > 0) {
		f.lifetime = 0 // an unreadable Age: how old it is is unknown
		explicit = true
	}
	if f.lifetime <= 0 && !hasValidator && f.swr == 0 && f.sie == 0 {
		// Stale on arrival, or (heuristically cacheable, no Last-Modified,
		// no tenant default) without any freshness information at all:
		// Cache-Status tells the two apart.
		f.reason = "stale"
		if !explicit {
			f.reason = "no-freshness"
		}
		return f
	}
	f.storable = true
	return f
}

// dateOf is the response's Date, or now when it has none or an invalid one
// (RFC 9110 section 6.6.1: a recipient may then use its own clock).
func dateOf(h http.Header, now time.Time) time.Time {
	if d, _, ok := fieldDate(h, "Date", now); ok {
		return d
	}
	return now
}

// initialAge is the corrected initial age of a response (RFC 9111 section
// 4.2.3): requestTime is when the fetch started, responseTime when the
// response arrived.
func initialAge(h http.Header, requestTime, responseTime time.Time) time.Duration {
	apparent := time.Duration(0)
	if d, _, ok := fieldDate(h, "Date", responseTime); ok {
		apparent = max(responseTime.Sub(d), 0)
	}
	ageValue, _ := ageOf(h) // an invalid Age made decide treat the response as stale
	corrected := ageValue + responseTime.Sub(requestTime)
	return max(apparent, corrected)
}
