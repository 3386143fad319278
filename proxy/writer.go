package proxy

import (
	"bufio"
	"net"
	"net/http"
	"time"
)

// responseWriter sits directly on the server's ResponseWriter: it adds the
// timing headers when the status is written and counts what reaches the
// wire (after compression, when a WrapWriter is stacked on top).
type responseWriter struct {
	rw          http.ResponseWriter
	x           *Exchange
	start       time.Time
	total       time.Duration // start → WriteHeader
	status      int
	bytes       int64
	wroteHeader bool
	hijacked    bool
	clientGone  bool
	cache       cacheLabel
	err         error
	timing      [3]string
	reqID       []string // the X-Request-Id value, echoed in the response
	hints       hints    // Early Hints (hints.go): open until the final status
}

func (w *responseWriter) Header() http.Header { return w.rw.Header() }

// WriteHeader sets X-Origin-Time, X-Total-Time, Server-Timing and
// X-Request-Id, then writes the status. Informational statuses other than 101 pass through.
func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.rw.WriteHeader(code)
		return
	}
	w.stamp(code)
	w.rw.WriteHeader(code)
}

// stamp records the status and total time and sets the timing headers
// and X-Request-Id (replacing an origin's or a cached response's).
func (w *responseWriter) stamp(code int) {
	w.hints.close()
	w.wroteHeader = true
	w.status = code
	w.total = time.Since(w.start)
	hd := w.rw.Header()
	setTimingHeaders(hd, w.x.OriginTime, w.total, &w.timing)
	hd[headerRequestID] = w.reqID
}

// stampDirect is stamp for the direct path, which writes the timing
// and X-Request-Id fields itself (appendTimingFields): the header map is not sent.
func (w *responseWriter) stampDirect(code int) {
	w.hints.close()
	w.wroteHeader = true
	w.status = code
	w.total = time.Since(w.start)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.rw.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush sends buffered data to the client.
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.rw.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.rw }

// hijack takes over the client connection (HTTP/1 only).
func (w *responseWriter) hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hints.close()
	c, brw, err := http.NewResponseController(w.rw).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, brw, err
}
