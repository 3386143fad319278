package transform

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// Applies reports whether a response with this Content-Type is rewritten:
// text/html or application/xhtml+xml, with no charset or a UTF-8 or
// ASCII-compatible one. Everything else passes through untouched.
func Applies(contentType string) bool {
	mt, params, _ := strings.Cut(contentType, ";")
	mt = strings.TrimSpace(mt)
	if !strings.EqualFold(mt, "text/html") && !strings.EqualFold(mt, "application/xhtml+xml") {
		return false
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "charset") {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"'`)
		switch strings.ToLower(v) {
		case "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1", "l1", "windows-1252", "cp1252":
			return true
		}
		return false
	}
	return true
}

// ErrUnsupportedEncoding is returned by Decoder for content codings it
// cannot undo; the response should then pass through untouched.
var ErrUnsupportedEncoding = errors.New("unsupported content encoding")

// zstdMaxWindow is what RFC 9659 asks HTTP decoders to support; a larger
// window is refused rather than allocated.
const zstdMaxWindow = 8 << 20

// Decoder returns a reader of body with the Content-Encoding undone:
// "" or identity, gzip (x-gzip), deflate, br or zstd. Closing it releases
// the decoder, not body.
func Decoder(body io.Reader, contentEncoding string) (io.ReadCloser, error) {
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "", "identity":
		return io.NopCloser(body), nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		return zr, nil
	case "deflate":
		zr, err := zlib.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("deflate body: %w", err)
		}
		return zr, nil
	case "br":
		return io.NopCloser(brotli.NewReader(body)), nil
	case "zstd":
		zr, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, fmt.Errorf("zstd body: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("content encoding %q: %w", contentEncoding, ErrUnsupportedEncoding)
}
