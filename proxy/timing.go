package proxy

import (
	"net/http"
	"strconv"
	"time"
)

// Timing header names, in canonical form so they can index http.Header
// directly.
const (
	headerOriginTime   = "X-Origin-Time"
	headerTotalTime    = "X-Total-Time"
	headerServerTiming = "Server-Timing"
)

// appendMillis appends d in milliseconds with two decimals, rounded to the
// nearest 10 µs: 12_344_999ns → "12.34".
func appendMillis(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	c := (int64(d) + 5000) / 10000 // hundredths of a millisecond
	b = strconv.AppendInt(b, c/100, 10)
	return append(b, '.', byte('0'+c/10%10), byte('0'+c%10))
}

// setTimingHeaders sets X-Origin-Time, X-Total-Time and adds a Server-Timing
// value to h. The three values share one string allocation; vals holds the
// []string backing arrays so that setting them does not allocate either.
// An origin-sent Server-Timing is kept and ours is appended after it.
func setTimingHeaders(h http.Header, origin, total time.Duration, vals *[3]string) {
	formatTiming(origin, total, vals)
	h[headerOriginTime] = vals[0:1:1]
	h[headerTotalTime] = vals[1:2:2]
	if prior := h[headerServerTiming]; len(prior) > 0 {
		h[headerServerTiming] = append(prior[:len(prior):len(prior)], vals[2])
	} else {
		h[headerServerTiming] = vals[2:3:3]
	}
}

// formatTiming sets vals to the X-Origin-Time, X-Total-Time and
// Server-Timing values, which share one string allocation.
func formatTiming(origin, total time.Duration, vals *[3]string) {
	var buf [96]byte
	b := appendMillis(buf[:0], origin)
	b = append(b, "ms"...)
	o := len(b)
	b = appendMillis(b, total)
	b = append(b, "ms"...)
	t := len(b)
	b = append(b, "origin;dur="...)
	b = appendMillis(b, origin)
	b = append(b, ", total;dur="...)
	b = appendMillis(b, total)
	s := string(b)
	vals[0], vals[1], vals[2] = s[:o], s[o:t], s[t:]
}
