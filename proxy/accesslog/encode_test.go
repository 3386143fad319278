package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

var testFields = []Field{{"node", "n1"}, {"component", "proxy"}}

// slogLine is what the proxy's slog path writes for e: a JSON handler
// with the static fields added by With, and the attributes record() adds.
func slogLine(t testing.TB, fields []Field, e *Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var h slog.Handler = slog.NewJSONHandler(&buf, nil)
	if len(fields) > 0 {
		var as []slog.Attr
		for _, f := range fields {
			as = append(as, slog.String(f.Key, f.Value))
		}
		h = h.WithAttrs(as)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r := slog.NewRecord(e.Time, slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.String("tenant", e.Tenant),
		slog.String("host", e.Host),
		slog.String("method", e.Method),
		slog.String("path", e.Path),
		slog.Int("status", e.Status),
		slog.Int64("bytes", e.Bytes),
		slog.Float64("origin_ms", ms(e.Origin)),
		slog.Float64("total_ms", ms(e.Total)),
		slog.Float64("duration_ms", ms(e.Duration)),
		slog.String("proto", e.Proto),
		slog.String("cache", e.Cache),
		slog.String("request_id", e.RequestID),
		slog.String("client_ip", e.ClientIP),
		slog.String("user_agent", e.UserAgent),
	)
	if e.Error != "" {
		r.AddAttrs(slog.String("error", e.Error))
	}
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decoded is an access line read back with encoding/json.
type decoded struct {
	Time       string  `json:"time"`
	Level      string  `json:"level"`
	Msg        string  `json:"msg"`
	Node       string  `json:"node"`
	Component  string  `json:"component"`
	Tenant     string  `json:"tenant"`
	Host       string  `json:"host"`
	Method     string  `json:"method"`
	Path       string  `json:"path"`
	Status     int     `json:"status"`
	Bytes      int64   `json:"bytes"`
	OriginMS   float64 `json:"origin_ms"`
	TotalMS    float64 `json:"total_ms"`
	DurationMS float64 `json:"duration_ms"`
	Proto      string  `json:"proto"`
	Cache      string  `json:"cache"`
	RequestID  string  `json:"request_id"`
	ClientIP   string  `json:"client_ip"`
	UserAgent  string  `json:"user_agent"`
	Error      *string `json:"error"`
}

// checkRoundTrip decodes line strictly and compares every field with e;
// invalid UTF-8 reads back as one U+FFFD per bad byte.
func checkRoundTrip(t testing.TB, line []byte, e *Entry) {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' || bytes.IndexByte(line, '\n') != len(line)-1 {
		t.Fatalf("not exactly one line: %q", line)
	}
	if !json.Valid(line) {
		t.Fatalf("invalid JSON: %q", line)
	}
	var d decoded
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decode %q: %v", line, err)
	}
	valid := func(s string) string { return string([]rune(s)) }
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	want := decoded{
		Level: "INFO", Msg: "request", Node: "n1", Component: "proxy",
		Tenant: valid(e.Tenant), Host: valid(e.Host), Method: valid(e.Method), Path: valid(e.Path),
		Status: e.Status, Bytes: e.Bytes,
		OriginMS: ms(e.Origin), TotalMS: ms(e.Total), DurationMS: ms(e.Duration),
		Proto: valid(e.Proto), Cache: valid(e.Cache),
		RequestID: valid(e.RequestID), ClientIP: valid(e.ClientIP), UserAgent: valid(e.UserAgent),
	}
	if !e.Time.IsZero() {
		want.Time = e.Time.Format(time.RFC3339Nano)
		got, err := time.Parse(time.RFC3339Nano, d.Time)
		if err != nil || !got.Equal(e.Time) {
			t.Errorf("time %q reads back as %v (%v), want %v", d.Time, got, err, e.Time)
		}
	}
	if e.Error != "" {
		s := valid(e.Error)
		want.Error = &s
	}
	gotErr, wantErr := d.Error, want.Error
	d.Error, want.Error = nil, nil
	if d != want {
		t.Errorf("line %q\n got %+v\nwant %+v", line, d, want)
	}
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && *gotErr != *wantErr) {
		t.Errorf("error field: got %v, want %v", gotErr, wantErr)
	}
}

func TestEncodeMatchesSlogByteForByte(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		paris = time.FixedZone("CET", 3600)
	}
	base := Entry{
		Time: time.Date(2026, 3, 4, 5, 6, 7, 891234567, time.UTC), Tenant: "shop.example",
		Host: "shop.example", Method: "GET", Path: "/a/b.css", Status: 200, Bytes: 1024,
		Origin: 1234 * time.Microsecond, Total: 2500 * time.Microsecond, Duration: 3 * time.Millisecond,
		Proto: "HTTP/1.1", Cache: "hit",
		RequestID: "3k9x2m7q1v0a8b4c6d5e", ClientIP: "203.0.113.7", UserAgent: "curl/8.5.0",
	}
	cases := map[string]func(e *Entry){
		"plain":                 func(e *Entry) {},
		"no time":               func(e *Entry) { e.Time = time.Time{} },
		"whole second":          func(e *Entry) { e.Time = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) },
		"millisecond time":      func(e *Entry) { e.Time = time.Date(2026, 1, 1, 0, 0, 0, 120e6, time.UTC) },
		"zone offset":           func(e *Entry) { e.Time = e.Time.In(paris) },
		"monotonic clock":       func(e *Entry) { e.Time = time.Now() },
		"error":                 func(e *Entry) { e.Status, e.Error = 502, `dial tcp 10.0.0.1:443: connect: connection refused` },
		"client gone":           func(e *Entry) { e.Status, e.Bytes, e.Cache = 499, 0, "" },
		"quote and backslash":   func(e *Entry) { e.Path = `/a"b\c` },
		"forged field":          func(e *Entry) { e.Host = `x","status":200,"evil":"` },
		"newline forged line":   func(e *Entry) { e.Path = "/a\n{\"msg\":\"fake\"}\r\n" },
		"control chars":         func(e *Entry) { e.Path = "/\x00\x01\x08\x0b\x0c\x1f\x7f\t" },
		"html":                  func(e *Entry) { e.Path = "/<script>&amp;</script>" },
		"invalid utf8":          func(e *Entry) { e.Host = "a\xffb\xc3(\xed\xa0\x80z" },
		"truncated utf8 at end": func(e *Entry) { e.Path = "/caf\xc3" },
		"unicode":               func(e *Entry) { e.Host, e.Path = "bücher.example", "/日本語/😀" },
		"hostile user agent":    func(e *Entry) { e.UserAgent = "Mozilla\",\"status\":200\n\xff" },
		"no request fields":     func(e *Entry) { e.RequestID, e.ClientIP, e.UserAgent = "", "", "" },
		"line separators":       func(e *Entry) { e.Path = "/a\u2028b\u2029c" },
		"empty strings":         func(e *Entry) { *e = Entry{Time: e.Time} },
		"sub-microsecond":       func(e *Entry) { e.Origin, e.Total, e.Duration = 999, 1000, 1001 },
		"round milliseconds":    func(e *Entry) { e.Origin, e.Total, e.Duration = 0, 10*time.Millisecond, 2*time.Second },
		"tenths and hundredths": func(e *Entry) { e.Origin, e.Total, e.Duration = 1100e3, 1230e3, 7e3 },
		"negative":              func(e *Entry) { e.Origin, e.Total = -1500*time.Microsecond, -3*time.Microsecond },
		"hours":                 func(e *Entry) { e.Duration = 5*time.Hour + 123456*time.Microsecond },
		"days (float path)":     func(e *Entry) { e.Duration = 40*24*time.Hour + 7*time.Microsecond },
		"max duration":          func(e *Entry) { e.Duration, e.Origin = math.MaxInt64, math.MinInt64 },
		"big numbers":           func(e *Entry) { e.Status, e.Bytes = -1, math.MaxInt64 },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			e := base
			mod(&e)
			got := appendEntry(nil, appendFields(nil, testFields), &e)
			if want := slogLine(t, testFields, &e); !bytes.Equal(got, want) {
				t.Fatalf("line differs from slog's\n got %s\nwant %s", got, want)
			}
			checkRoundTrip(t, got, &e)
		})
	}
}

func TestStaticFieldsAreEscaped(t *testing.T) {
	fields := []Field{{"node", `n"1`}, {"k\n", "v\xff"}}
	e := Entry{Time: time.Unix(1, 0).UTC(), Path: "/"}
	got := appendEntry(nil, appendFields(nil, fields), &e)
	if want := slogLine(t, fields, &e); !bytes.Equal(got, want) {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

// TestMillisMatchesEncodingJSON covers every microsecond below 200 ms,
// both signs, a sample up to the edge of the integer path, and beyond.
func TestMillisMatchesEncodingJSON(t *testing.T) {
	check := func(us int64) {
		want, err := json.Marshal(float64(us) / 1000)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendMillis(nil, time.Duration(us)*time.Microsecond); string(got) != string(want) {
			t.Fatalf("%d µs: got %s, want %s", us, got, want)
		}
	}
	for us := int64(-200_000); us <= 200_000; us++ {
		check(us)
	}
	for us := int64(200_000); us < maxExactMicros; us = us*11/10 + 7 {
		check(us)
		check(-us)
	}
	for _, us := range []int64{maxExactMicros - 1, maxExactMicros, maxExactMicros + 1, -maxExactMicros + 1, -maxExactMicros,
		999_999_999_999, 123_456_789_012, math.MaxInt64 / 1000, math.MinInt64 / 1000} {
		check(us)
	}
}

func FuzzMillis(f *testing.F) {
	for _, d := range []int64{0, 1, 999, 1000, 1001, 1234567, -1500, math.MaxInt64, math.MinInt64} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, ns int64) {
		d := time.Duration(ns)
		want, _ := json.Marshal(float64(d.Microseconds()) / 1000)
		if got := appendMillis(nil, d); string(got) != string(want) {
			t.Fatalf("%v: got %s, want %s", d, got, want)
		}
	})
}

// FuzzEntry: whatever a client sends as host, path, method or proto, the
// line is one valid JSON object that reads back as the request, and it is
// the line slog would have written.
func FuzzEntry(f *testing.F) {
	f.Add("shop.example", "GET", "/", "HTTP/1.1", "hit", "", int64(1712345678123456789), 200, int64(1024), int64(1234567))
	f.Add(`x","a":"`, "G\x00T", "/\n\r\t\\\"", "HTTP/2.0", "miss", "boom\xff", int64(0), 502, int64(-1), int64(-5))
	f.Add("\xed\xa0\x80\xc3", "\u2028", "/\u2029<>&", "", "", "e", int64(-62135596800000000), 499, int64(0), int64(1e15))
	fields := appendFields(nil, testFields)
	f.Fuzz(func(t *testing.T, host, method, path, proto, cache, errMsg string, unixNano int64, status int, n int64, dur int64) {
		e := Entry{
			Time: time.Unix(0, unixNano).UTC(), Tenant: strings.ToLower(host), Host: host, Method: method,
			Path: path, Status: status, Bytes: n,
			Origin: time.Duration(dur), Total: time.Duration(dur / 3), Duration: time.Duration(-dur),
			Proto: proto, Cache: cache, Error: errMsg,
			RequestID: method + proto, ClientIP: cache, UserAgent: path + host,
		}
		got := appendEntry(nil, fields, &e)
		if want := slogLine(t, testFields, &e); !bytes.Equal(got, want) {
			t.Fatalf("line differs from slog's\n got %s\nwant %s", got, want)
		}
		checkRoundTrip(t, got, &e)
	})
}
