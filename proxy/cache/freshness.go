package cache

import (
	"net/http"
	"strconv"
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

// parseCacheControl parses every Cache-Control field line in h. Unknown
// directives are ignored; a directive with a malformed delta-seconds value
// is treated as absent, except max-age and s-maxage, which then mean
// "already stale" (RFC 9111 section 4.2.1 asks caches to be conservative).
func parseCacheControl(h http.Header) cacheControl {
	cc := cacheControl{maxAge: -1, sMaxAge: -1, swr: -1, sie: -1}
	for _, line := range h.Values("Cache-Control") {
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
				cc.maxAge = deltaSeconds(value, 0)
			case "s-maxage":
				cc.sMaxAge = deltaSeconds(value, 0)
			case "stale-while-revalidate":
				cc.swr = deltaSeconds(value, -1)
			case "stale-if-error":
				cc.sie = deltaSeconds(value, -1)
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

// deltaSeconds parses a delta-seconds value; bad values yield bad.
func deltaSeconds(v string, bad time.Duration) time.Duration {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return bad
	}
	const maxDelta = 1<<31 - 1 // RFC 9111 section 1.2.2
	if n > maxDelta {
		n = maxDelta
	}
	return time.Duration(n) * time.Second
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
func decide(code int, h http.Header, p Policy, reqAuthorized bool, now time.Time) freshness {
	cc := parseCacheControl(h)
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
	case h.Get("Expires") != "":
		exp, err := http.ParseTime(h.Get("Expires"))
		if err != nil {
			f.lifetime = 0 // invalid Expires means already expired
			break
		}
		date := now
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			date = d
		}
		f.lifetime = max(exp.Sub(date), 0)
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
			if lm, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
				date := now
				if d, err := http.ParseTime(h.Get("Date")); err == nil {
					date = d
				}
				f.lifetime = min(max(date.Sub(lm)/10, 0), maxHeuristic)
			}
		}
	}
	hasValidator := h.Get("ETag") != "" || h.Get("Last-Modified") != ""
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
	f.noCache = cc.noCache
	if f.lifetime <= 0 && !hasValidator && f.swr == 0 && f.sie == 0 {
		f.reason = "stale"
		return f
	}
	f.storable = true
	return f
}

// initialAge is the corrected initial age of a response (RFC 9111 section
// 4.2.3): requestTime is when the fetch started, responseTime when the
// response arrived.
func initialAge(h http.Header, requestTime, responseTime time.Time) time.Duration {
	apparent := time.Duration(0)
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		apparent = max(responseTime.Sub(d), 0)
	}
	ageValue := time.Duration(0)
	if a := h.Get("Age"); a != "" {
		ageValue = max(deltaSeconds(a, 0), 0)
	}
	corrected := ageValue + responseTime.Sub(requestTime)
	return max(apparent, corrected)
}
