package cache

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseHTTPDate(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	want := time.Date(1994, 11, 6, 8, 49, 37, 0, time.UTC)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"Sun, 06 Nov 1994 08:49:37 GMT", true},   // IMF-fixdate
		{"Sunday, 06-Nov-94 08:49:37 GMT", true},  // RFC 850
		{"Sun Nov  6 08:49:37 1994", true},        // asctime
		{"Sun Nov 06 08:49:37 1994", true},        // asctime, 2DIGIT day
		{"sun, 06 nov 1994 08:49:37 gMT", true},   // names case-insensitive (RFC 9111 section 4.2)
		{"Mon, 06 Nov 1994 08:49:37 GMT", true},   // day name not checked against the date
		{"Sun, 06 Nov 1994 8:49:37 GMT", false},   // one-digit hour
		{"Sun, 06 Nov 1994  08:49:37 GMT", false}, // double space
		{"Sun,  6 Nov 1994 08:49:37 GMT", false},  // one-digit day
		{"Sun, 06 Nov 1994 08:49:37 UTC", false},  // not GMT
		{"Sun, 06 Nov 1994 08:49:37 +0000", false},
		{"Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT", false}, // two values
		{"Sun, 06 Nov 1994 08:49:37 GMT ", false},
		{" Sun, 06 Nov 1994 08:49:37 GMT", false},
		{"Sun, 31 Feb 1994 08:49:37 GMT", false}, // no such day
		{"Sun, 06 Nov 1994 24:00:00 GMT", false},
		{"Sun, 06 Nov 1994 08:60:00 GMT", false},
		{"Xyz, 06 Nov 1994 08:49:37 GMT", false},
		{"Sun, 06 Xyz 1994 08:49:37 GMT", false},
		{"Sunday, 06-Nov-94 08:49:37 UTC", false},
		{"Sun Nov  6 08:49:37 94", false},
		{"0", false},
		{"", false},
		{"-1", false},
	} {
		got, ok := parseHTTPDate(tc.in, now)
		if ok != tc.ok {
			t.Errorf("%q: ok = %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if ok && !got.Equal(want) {
			t.Errorf("%q = %v, want %v", tc.in, got, want)
		}
	}
	// Two-digit years: more than 50 years ahead is the century before.
	for in, year := range map[string]int{
		"Monday, 01-Jan-76 00:00:00 GMT":   2076,
		"Saturday, 01-Jan-77 00:00:00 GMT": 1977,
		"Friday, 01-Jan-99 00:00:00 GMT":   1999,
		"Monday, 01-Jan-00 00:00:00 GMT":   2000,
	} {
		got, ok := parseHTTPDate(in, now)
		if !ok || got.Year() != year {
			t.Errorf("%q = %v %v, want year %d", in, got, ok, year)
		}
	}
	if n := testing.AllocsPerRun(100, func() { parseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT", now) }); n != 0 {
		t.Errorf("parseHTTPDate allocates %v times", n)
	}
}

// FuzzParseHTTPDate checks the strict parser against its own output and
// against net/http: whatever it accepts formats back to an IMF-fixdate
// that it parses to the same instant, net/http agrees on every value both
// accept, and every canonical IMF-fixdate net/http accepts is accepted.
func FuzzParseHTTPDate(f *testing.F) {
	for _, s := range []string{
		"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
		"Sun, 06 Nov 1994 8:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 gMT", "Thu, 01 Jan 1970 00:00:00 GMT",
		"Wed, 31 Dec 9999 23:59:60 GMT", "Sat, 29 Feb 2000 12:00:00 GMT",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseHTTPDate(s, now)
		if ok {
			if got.Location() != time.UTC || got.Nanosecond() != 0 {
				t.Fatalf("%q: %v not whole seconds in UTC", s, got)
			}
			if got.Year() < 1000 || got.Year() > 9999 {
				return // four digits do not always survive a leap second's carry
			}
			back, ok2 := parseHTTPDate(got.Format(http.TimeFormat), now)
			if !ok2 || !back.Equal(got) {
				t.Fatalf("%q: %v does not round-trip (%v %v)", s, got, back, ok2)
			}
			if std, err := http.ParseTime(s); err == nil && !std.Equal(got) && !strings.Contains(s, ":60") {
				t.Fatalf("%q: strict %v, net/http %v", s, got, std)
			}
		}
		if std, err := http.ParseTime(s); err == nil && s == std.UTC().Format(http.TimeFormat) && !ok {
			t.Fatalf("%q: canonical IMF-fixdate rejected", s)
		}
	})
}
