package proxy

import (
	"bufio"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The direct path writes the timing fields as bytes; they must read back
// exactly as the header map setTimingHeaders fills.
func TestAppendTimingFieldsMatchesHeaders(t *testing.T) {
	for _, tc := range []struct{ origin, total time.Duration }{
		{0, 0},
		{1234 * time.Microsecond, 1567 * time.Microsecond},
		{12_344_999, 2 * time.Second},
		{-time.Millisecond, time.Hour},
	} {
		want := http.Header{}
		var vals [3]string
		setTimingHeaders(want, tc.origin, tc.total, &vals)

		b := appendTimingFields(nil, tc.origin, tc.total)
		got, err := textproto.NewReader(bufio.NewReader(strings.NewReader(string(b) + "\r\n"))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("%v: fields do not parse: %v\n%s", tc, err, b)
		}
		if !reflect.DeepEqual(http.Header(got), want) {
			t.Errorf("%v:\n got %v\nwant %v", tc, got, want)
		}
	}
}
