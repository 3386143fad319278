package accesslog

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Entry is one proxied request as the access line shows it. The zero
// Time leaves the "time" key out, as slog does for a zero record time; an
// empty Error leaves the "error" key out.
type Entry struct {
	Time     time.Time
	Tenant   string
	Host     string
	Method   string
	Path     string
	Status   int
	Bytes    int64
	Origin   time.Duration // origin_ms
	Total    time.Duration // total_ms
	Duration time.Duration // duration_ms
	Proto    string
	Cache    string
	// RequestID is the request's X-Request-Id (the client's when
	// well-formed, else one the proxy made up); ClientIP the TCP peer's
	// address; UserAgent the client's User-Agent. Always written, "" when
	// empty, so every line has the same keys.
	RequestID string
	ClientIP  string
	UserAgent string
	Error     string
}

// Field is a static string field written into every line a Writer Logs,
// after "msg" and before the request fields, like an attribute added with
// slog.Logger.With.
type Field struct{ Key, Value string }

// appendFields pre-encodes static fields as `,"k":"v"...`.
func appendFields(b []byte, fields []Field) []byte {
	for _, f := range fields {
		b = append(b, ',', '"')
		b = appendEscaped(b, f.Key)
		b = append(b, '"', ':', '"')
		b = appendEscaped(b, f.Value)
		b = append(b, '"')
	}
	return b
}

// appendEntry appends e as one JSON line, newline included, byte for byte
// what slog.NewJSONHandler(w, nil).WithAttrs(fields) writes for an INFO
// record "request" carrying e's attributes. fields is the output of
// appendFields.
func appendEntry(b, fields []byte, e *Entry) []byte {
	b = append(b, '{')
	if !e.Time.IsZero() {
		b = append(b, `"time":"`...)
		b = e.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"', ',')
	}
	b = append(b, `"level":"INFO","msg":"request"`...)
	b = append(b, fields...)
	b = appendStringField(b, `,"tenant":"`, e.Tenant)
	b = appendStringField(b, `,"host":"`, e.Host)
	b = appendStringField(b, `,"method":"`, e.Method)
	b = appendStringField(b, `,"path":"`, e.Path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"origin_ms":`...)
	b = appendMillis(b, e.Origin)
	b = append(b, `,"total_ms":`...)
	b = appendMillis(b, e.Total)
	b = append(b, `,"duration_ms":`...)
	b = appendMillis(b, e.Duration)
	b = appendStringField(b, `,"proto":"`, e.Proto)
	b = appendStringField(b, `,"cache":"`, e.Cache)
	b = appendStringField(b, `,"request_id":"`, e.RequestID)
	b = appendStringField(b, `,"client_ip":"`, e.ClientIP)
	b = appendStringField(b, `,"user_agent":"`, e.UserAgent)
	if e.Error != "" {
		b = appendStringField(b, `,"error":"`, e.Error)
	}
	return append(b, '}', '\n')
}

// appendStringField appends key (`,"name":"`), s escaped, and the closing
// quote.
func appendStringField(b []byte, key, s string) []byte {
	b = append(b, key...)
	b = appendEscaped(b, s)
	return append(b, '"')
}

// maxExactMicros bounds the durations appendMillis formats from integers:
// below 10^12 µs (about 11.6 days) a double's spacing is far under
// 0.0005 ms, so the exact decimal µs/1000 is also the shortest string that
// reads back as float64(µs)/1000, which is what encoding/json writes.
const maxExactMicros = 1e12

// appendMillis appends float64(d.Microseconds())/1000 the way
// encoding/json (and so slog) formats a float64: the integer part, then
// up to three decimals without trailing zeros. Formatting integers avoids
// three shortest-float conversions per line.
func appendMillis(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	if us <= -maxExactMicros || us >= maxExactMicros {
		return appendJSONFloat(b, float64(us)/1000)
	}
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1000, 10)
	f := us % 1000
	if f == 0 {
		return b
	}
	b = append(b, '.', byte('0'+f/100))
	if f%100 == 0 {
		return b
	}
	b = append(b, byte('0'+f/10%10))
	if f%10 == 0 {
		return b
	}
	return append(b, byte('0'+f%10))
}

// appendJSONFloat is encoding/json's float64 encoding (exponent form
// outside [1e-6, 1e21), with "e-09" shortened to "e-9"). Only durations
// of days take this path.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends s as the inside of a JSON string, exactly as
// log/slog's JSON handler escapes it: `"` and `\`, control characters
// (\n, \r, \t or \u00XX), each invalid UTF-8 byte as \ufffd, and U+2028
// and U+2029. <, > and & are left alone (slog does not HTML-escape).
// Hosts and paths come from clients, so this is what keeps a hostile
// request from forging fields or lines.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// safe marks the ASCII bytes that need no escaping: everything from space
// up, DEL included, except `"` and `\`.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()
