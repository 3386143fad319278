package proxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
)

// serveUpgrade splices a 101 Switching Protocols response (WebSocket and
// other Upgrade protocols): the client connection is hijacked, the 101 and
// its headers are written, and bytes are copied both ways until either
// side closes. It needs an HTTP/1.x client connection.
func (h *Handler) serveUpgrade(w *responseWriter, x *Exchange, resp *http.Response) {
	reqUp, respUp := x.upgrade, upgradeType(resp.Header)
	backConn, ok := resp.Body.(io.ReadWriteCloser)
	switch {
	case reqUp == "" || !strings.EqualFold(reqUp, respUp):
		resp.Body.Close()
		h.fail(w, x, fmt.Errorf("origin switched to protocol %q when %q was requested", respUp, reqUp))
		return
	case !ok:
		resp.Body.Close()
		h.fail(w, x, errors.New("origin 101 response body is not writable"))
		return
	}
	defer backConn.Close()

	conn, brw, err := w.hijack()
	if err != nil {
		h.plain(w, http.StatusInternalServerError, "edge: protocol switch needs HTTP/1.1\n", "")
		return
	}
	defer conn.Close()

	removeHopHeaders(resp.Header)
	resp.Header["Connection"] = connUpgrade
	resp.Header["Upgrade"] = []string{respUp}
	// The server's header map is not written after a hijack: build the
	// 101 from resp.Header plus the timing headers.
	w.rw = hijackedWriter{hdr: resp.Header}
	w.stamp(http.StatusSwitchingProtocols)
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	resp.Header.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		w.err = fmt.Errorf("write 101 to client: %w", err)
		return
	}

	var wg sync.WaitGroup
	done := make(chan struct{}, 2)
	splice := func(dst io.Writer, src io.Reader, n *int64) {
		defer wg.Done()
		bp := h.pool.Get()
		c, _ := io.CopyBuffer(dst, src, *bp)
		h.pool.Put(bp)
		*n = c
		done <- struct{}{}
	}
	var up, down int64
	wg.Add(2)
	go splice(backConn, brw.Reader, &up) // client → origin, incl. bytes already buffered
	go splice(conn, backConn, &down)     // origin → client
	<-done
	// One side ended: close both so the other copy ends too.
	conn.Close()
	backConn.Close()
	wg.Wait()
	w.bytes += down
	h.log.LogAttrs(x.Request.Context(), slog.LevelDebug, "upgrade closed",
		slog.String("tenant", x.Tenant.Domain), slog.String("protocol", respUp),
		slog.Int64("bytes_in", up), slog.Int64("bytes_out", down))
}

// hijackedWriter stands in for the server's ResponseWriter after a
// hijack so that stamp writes the timing headers into the 101's headers.
type hijackedWriter struct{ hdr http.Header }

func (h hijackedWriter) Header() http.Header       { return h.hdr }
func (hijackedWriter) Write(b []byte) (int, error) { return 0, http.ErrHijacked }
func (hijackedWriter) WriteHeader(int)             {}
