package proxy

import (
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// isHopHeader reports whether k (canonical) is a hop-by-hop header that a
// proxy must not forward (RFC 9110 §7.6.1), including every Proxy-* header.
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return strings.HasPrefix(k, "Proxy-")
}

// removeHopHeaders deletes the hop-by-hop headers of h and the headers
// named by its Connection header.
func removeHopHeaders(h http.Header) {
	removeConnectionHeaders(h)
	for k := range h {
		if isHopHeader(k) {
			delete(h, k)
		}
	}
}

// removeConnectionHeaders deletes the headers named by h's Connection
// header.
func removeConnectionHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for sf := range strings.SplitSeq(v, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(sf))
			}
		}
	}
}

// upgradeType returns the protocol a request or response asks to switch to
// ("websocket"), or "".
func upgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	if u := h["Upgrade"]; len(u) > 0 {
		return u[0]
	}
	return ""
}

// Values reused for every request so that setting them does not allocate.
var (
	teTrailers     = []string{"trailers"}
	protoHTTP      = []string{"http"}
	protoHTTPS     = []string{"https"}
	connUpgrade    = []string{"Upgrade"}
	viaHTTP11Value = "1.1 edge"
	viaHTTP2Value  = "2 edge"
	viaHTTP10Value = "1.0 edge"
)

// clientForwarded reports whether k (canonical) is a forwarding field a
// client must not set for the origin: Forwarded and X-Forwarded-* but
// X-Forwarded-For. Origins build links and redirects from them (host,
// proto, port, prefix); the cache keys on none of them, so a client's
// value would end up in a response served to everyone. The proxy sets
// X-Forwarded-Proto and -Host itself, from what the cache keys on.
func clientForwarded(k string) bool {
	const xf = "X-Forwarded-"
	return k == "Forwarded" || len(k) > len(xf) && k[:len(xf)] == xf && k != "X-Forwarded-For"
}

// prepareRequestHeaders cleans the client's request headers in place for
// forwarding: hop-by-hop headers go (an Upgrade survives for upgrade
// requests, "TE: trailers" survives for gRPC-style clients), so do the
// client's own Forwarded and X-Forwarded-* (clientForwarded), and
// X-Forwarded-For/-Proto/-Host and Via are set. host is the normalised
// host (NormalizeHost: lowercase, no port), the one routing and the cache
// key use: X-Forwarded-Host carries it, not the client's Host, so that a
// page the origin builds from it is the same for every request that
// shares its cache key (docs/proxy.md, "Forwarding rules"). store supplies
// backing arrays so that the common case does not allocate.
//
// The shared []string values above are only ever replaced, never appended
// to in place: every append below copies first.
func prepareRequestHeaders(r *http.Request, host, upgrade string, store *[4]string) {
	h := r.Header
	trailers := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	removeConnectionHeaders(h)
	for k := range h {
		if isHopHeader(k) || clientForwarded(k) {
			delete(h, k)
		}
	}
	if trailers {
		h["Te"] = teTrailers
	}
	if upgrade != "" {
		h["Connection"] = connUpgrade
		store[2] = upgrade
		h["Upgrade"] = store[2:3:3]
	}

	if ip := clientIP(r.RemoteAddr); ip != "" {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			store[0] = strings.Join(prior, ", ") + ", " + ip
		} else {
			store[0] = ip
		}
		h["X-Forwarded-For"] = store[0:1:1]
	}
	if r.TLS != nil {
		h["X-Forwarded-Proto"] = protoHTTPS
	} else {
		h["X-Forwarded-Proto"] = protoHTTP
	}
	if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]" // an IPv6 literal, as a Host header writes it
	}
	store[1] = host
	h["X-Forwarded-Host"] = store[1:2:2]

	via := viaHTTP11Value
	switch {
	case r.ProtoMajor == 2:
		via = viaHTTP2Value
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		via = viaHTTP10Value
	}
	if prior := h["Via"]; len(prior) > 0 {
		h["Via"] = append(prior[:len(prior):len(prior)], via)
	} else {
		store[3] = via
		h["Via"] = store[3:4:4]
	}
}

// clientIP returns the address part of a RemoteAddr ("1.2.3.4:5" → "1.2.3.4",
// "[::1]:5" → "::1") without allocating.
func clientIP(remote string) string {
	i := strings.LastIndexByte(remote, ':')
	if i < 0 {
		return remote
	}
	host := remote[:i]
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}
