package cache

import "time"

// parseHTTPDate parses an HTTP-date (RFC 9110 section 5.6.7) strictly:
// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), the obsolete RFC 850
// form ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6
// 08:49:37 1994"), each to the letter of the grammar: fixed widths, single
// spaces, two-digit hours, a real calendar date, GMT as the only zone, and
// nothing before or after. Names (day, month, GMT) are matched without
// regard to case, as RFC 9111 section 4.2 asks of caches; the day name
// must be one but is not checked against the date. A two-digit RFC 850
// year more than 50 years after now is taken as the century before
// (RFC 9110 section 5.6.7).
//
// net/http.ParseTime is not used because it accepts what the grammar
// does not (a one-digit hour, "GMT" replaced by another zone in the RFC
// 850 layout) and so turns a malformed Expires, which a cache must treat
// as already expired, into a freshness lifetime. It does not allocate.
func parseHTTPDate(s string, now time.Time) (time.Time, bool) {
	switch {
	case len(s) == len("Sun, 06 Nov 1994 08:49:37 GMT") && s[3] == ',':
		return parseIMFFixdate(s)
	case len(s) == len("Sun Nov  6 08:49:37 1994") && s[3] == ' ':
		return parseAsctime(s)
	}
	return parseRFC850(s, now)
}

// parseIMFFixdate parses "Sun, 06 Nov 1994 08:49:37 GMT".
func parseIMFFixdate(s string) (time.Time, bool) {
	if dayName(s[:3]) < 0 || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[25] != ' ' ||
		!foldEq(s[26:], "GMT") {
		return time.Time{}, false
	}
	day, ok1 := digits(s[5:7])
	mon := monthName(s[8:11])
	year, ok2 := digits(s[12:16])
	if !ok1 || !ok2 || mon < 0 {
		return time.Time{}, false
	}
	return dateTime(year, mon, day, s[17:25])
}

// parseAsctime parses "Sun Nov  6 08:49:37 1994" (a one-digit day is
// preceded by a space) and "Sun Nov 06 08:49:37 1994".
func parseAsctime(s string) (time.Time, bool) {
	if dayName(s[:3]) < 0 || s[7] != ' ' || s[10] != ' ' || s[19] != ' ' {
		return time.Time{}, false
	}
	mon := monthName(s[4:7])
	d := s[8:10]
	if d[0] == ' ' {
		d = d[1:]
	}
	day, ok1 := digits(d)
	year, ok2 := digits(s[20:24])
	if !ok1 || !ok2 || mon < 0 {
		return time.Time{}, false
	}
	return dateTime(year, mon, day, s[11:19])
}

// parseRFC850 parses "Sunday, 06-Nov-94 08:49:37 GMT".
func parseRFC850(s string, now time.Time) (time.Time, bool) {
	const tail = len(", 06-Nov-94 08:49:37 GMT")
	if len(s) < tail+6 || len(s) > tail+9 {
		return time.Time{}, false
	}
	name, rest := s[:len(s)-tail], s[len(s)-tail:]
	if longDayName(name) < 0 || rest[0] != ',' || rest[1] != ' ' || rest[4] != '-' || rest[8] != '-' ||
		rest[11] != ' ' || rest[20] != ' ' || !foldEq(rest[21:], "GMT") {
		return time.Time{}, false
	}
	day, ok1 := digits(rest[2:4])
	mon := monthName(rest[5:8])
	yy, ok2 := digits(rest[9:11])
	if !ok1 || !ok2 || mon < 0 {
		return time.Time{}, false
	}
	year := now.Year()/100*100 + yy
	if year > now.Year()+50 {
		year -= 100
	}
	return dateTime(year, mon, day, rest[12:20])
}

// dateTime checks a calendar date and an "hh:mm:ss" time-of-day and
// builds the time in UTC. Second 60 (a leap second) is allowed by the
// grammar and lands on the next minute.
func dateTime(year int, mon time.Month, day int, tod string) (time.Time, bool) {
	if tod[2] != ':' || tod[5] != ':' {
		return time.Time{}, false
	}
	hh, ok1 := digits(tod[0:2])
	mm, ok2 := digits(tod[3:5])
	ss, ok3 := digits(tod[6:8])
	if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 60 {
		return time.Time{}, false
	}
	if day < 1 || day > daysIn(year, mon) {
		return time.Time{}, false
	}
	return time.Date(year, mon, day, hh, mm, ss, 0, time.UTC), true
}

func daysIn(year int, m time.Month) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// digits parses a fixed-width run of ASCII digits.
func digits(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

var (
	dayNames     = [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	longDayNames = [...]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	monthNames   = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
)

func dayName(s string) int {
	for i, n := range dayNames {
		if foldEq(s, n) {
			return i
		}
	}
	return -1
}

func longDayName(s string) int {
	for i, n := range longDayNames {
		if foldEq(s, n) {
			return i
		}
	}
	return -1
}

func monthName(s string) time.Month {
	for i, n := range monthNames {
		if foldEq(s, n) {
			return time.Month(i + 1)
		}
	}
	return -1
}

// foldEq is ASCII case-insensitive equality.
func foldEq(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
