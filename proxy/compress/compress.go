package compress

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Config configures a Compressor. Zero fields take the defaults in their
// comments.
type Config struct {
	// MinSize is the smallest body worth compressing, in bytes (default 1024).
	MinSize int
	// GzipLevel is 1 (fastest) to 9 (default 5).
	GzipLevel int
	// ZstdLevel is a zstd.EncoderLevel (default zstd.SpeedDefault, zstd level 3).
	ZstdLevel zstd.EncoderLevel
	// BrotliLevel is 0 to 11 (default 1).
	BrotliLevel int
}

// Compressor holds the pooled encoders and decoders. It is safe for
// concurrent use; one per node.
type Compressor struct {
	cfg      Config
	encoders [4]sync.Pool // by Encoding
	decoders [4]sync.Pool
	writers  sync.Pool // *ResponseWriter
}

// encoder is what the three compressors have in common.
type encoder interface {
	io.WriteCloser
	Flush() error
	Reset(io.Writer)
}

// New returns a Compressor.
func New(cfg Config) (*Compressor, error) {
	if cfg.MinSize <= 0 {
		cfg.MinSize = 1024
	}
	if cfg.GzipLevel == 0 {
		cfg.GzipLevel = 5
	}
	if cfg.GzipLevel < gzip.BestSpeed || cfg.GzipLevel > gzip.BestCompression {
		return nil, fmt.Errorf("compress: gzip level %d out of range 1-9", cfg.GzipLevel)
	}
	if cfg.ZstdLevel == 0 {
		cfg.ZstdLevel = zstd.SpeedDefault
	}
	if cfg.ZstdLevel < zstd.SpeedFastest || cfg.ZstdLevel > zstd.SpeedBestCompression {
		return nil, fmt.Errorf("compress: zstd level %d out of range", cfg.ZstdLevel)
	}
	if cfg.BrotliLevel == 0 {
		cfg.BrotliLevel = 1
	}
	if cfg.BrotliLevel < 0 || cfg.BrotliLevel > 11 {
		return nil, fmt.Errorf("compress: brotli level %d out of range 0-11", cfg.BrotliLevel)
	}
	c := &Compressor{cfg: cfg}
	c.encoders[Gzip].New = func() any {
		w, _ := gzip.NewWriterLevel(io.Discard, cfg.GzipLevel) // level checked above
		return encoder(w)
	}
	c.encoders[Zstd].New = func() any {
		w, _ := zstd.NewWriter(io.Discard,
			zstd.WithEncoderLevel(cfg.ZstdLevel),
			zstd.WithEncoderConcurrency(1), // synchronous: no goroutine per stream
			zstd.WithWindowSize(1<<20),     // 1 MiB: pages fit; browsers cap at 8 MiB
			zstd.WithLowerEncoderMem(true))
		return encoder(w)
	}
	c.encoders[Brotli].New = func() any {
		return encoder(brotli.NewWriterOptions(io.Discard, brotli.WriterOptions{Quality: cfg.BrotliLevel, LGWin: 20}))
	}
	c.decoders[Gzip].New = func() any { return new(gzip.Reader) }
	c.decoders[Zstd].New = func() any {
		d, _ := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(8<<20), // what browsers accept (RFC 8878 §3.1.1.1.2)
			zstd.WithDecoderLowmem(true))
		return d
	}
	c.decoders[Brotli].New = func() any { return brotli.NewReader(nil) }
	c.writers.New = func() any { return new(ResponseWriter) }
	return c, nil
}

func (c *Compressor) getEncoder(e Encoding, w io.Writer) encoder {
	enc := c.encoders[e].Get().(encoder)
	enc.Reset(w)
	return enc
}

func (c *Compressor) putEncoder(e Encoding, enc encoder) {
	enc.Reset(io.Discard) // drop the reference to the client connection
	c.encoders[e].Put(enc)
}

// parseEncoding maps a Content-Encoding value to an Encoding it can decode.
func parseEncoding(ce string) (Encoding, bool) {
	ce = strings.TrimSpace(ce)
	switch {
	case strings.EqualFold(ce, "gzip"), strings.EqualFold(ce, "x-gzip"):
		return Gzip, true
	case strings.EqualFold(ce, "zstd"):
		return Zstd, true
	case strings.EqualFold(ce, "br"):
		return Brotli, true
	}
	return Identity, false
}

// Decode prepares an origin response that is already compressed for a
// client that sent acceptEncoding:
//   - if the client accepts the response's Content-Encoding, or there is
//     none, the response is left as is (pass-through) and Decode returns false;
//   - if not and the coding is gzip, zstd or br, resp.Body is replaced by a
//     decoding reader (pooled, released by Close), Content-Encoding and
//     Content-Length are removed, a strong ETag is weakened, and Decode
//     returns true;
//   - other codings (deflate, compress, stacked codings) pass through.
//
// Vary: Accept-Encoding is added whenever the response is encoded. A
// malformed body surfaces as an error from Read, or from Decode when the
// gzip header is already bad.
func (c *Compressor) Decode(resp *http.Response, acceptEncoding string) (bool, error) {
	ce := hget(resp.Header, "Content-Encoding")
	if ce == "" || strings.EqualFold(ce, "identity") {
		return false, nil
	}
	addVary(resp.Header)
	e, ok := parseEncoding(ce)
	if !ok || Accepts(acceptEncoding, ce) {
		return false, nil
	}
	body := &decodedBody{c: c, enc: e, src: resp.Body}
	switch e {
	case Gzip:
		zr := c.decoders[Gzip].Get().(*gzip.Reader)
		if err := zr.Reset(resp.Body); err != nil {
			c.decoders[Gzip].Put(zr)
			return false, fmt.Errorf("compress: decode gzip response: %w", err)
		}
		body.r, body.dec = zr, zr
	case Zstd:
		zr := c.decoders[Zstd].Get().(*zstd.Decoder)
		if err := zr.Reset(resp.Body); err != nil {
			c.decoders[Zstd].Put(zr)
			return false, fmt.Errorf("compress: decode zstd response: %w", err)
		}
		body.r, body.dec = zr, zr
	case Brotli:
		br := c.decoders[Brotli].Get().(*brotli.Reader)
		if err := br.Reset(resp.Body); err != nil {
			c.decoders[Brotli].Put(br)
			return false, fmt.Errorf("compress: decode br response: %w", err)
		}
		body.r, body.dec = br, br
	}
	resp.Body = body
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	resp.Uncompressed = true
	weakenETag(resp.Header)
	return true, nil
}

// decodedBody reads the decoded origin body and returns the decoder to its
// pool on Close.
type decodedBody struct {
	c   *Compressor
	enc Encoding
	src io.ReadCloser
	r   io.Reader
	dec any
}

func (b *decodedBody) Read(p []byte) (int, error) {
	if b.r == nil {
		return 0, io.ErrClosedPipe
	}
	return b.r.Read(p)
}

func (b *decodedBody) Close() error {
	if b.dec == nil {
		return nil
	}
	err := b.src.Close()
	switch d := b.dec.(type) {
	case *gzip.Reader:
		_ = d.Close()
	case *zstd.Decoder:
		_ = d.Reset(nil)
	case *brotli.Reader:
		_ = d.Reset(nil)
	}
	b.c.decoders[b.enc].Put(b.dec)
	b.dec, b.r = nil, nil
	return err
}

// addVary adds Accept-Encoding to the Vary header unless it (or "*") is
// already there, merging into the existing field value.
func addVary(h http.Header) {
	vals := h["Vary"]
	for _, v := range vals {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			tok = trimOWS(tok)
			if tok == "*" || strings.EqualFold(tok, "Accept-Encoding") {
				return
			}
		}
	}
	// Always assign a new slice: the header values may be shared with a
	// cached object, which must never change under its readers.
	switch len(vals) {
	case 0:
		h["Vary"] = []string{"Accept-Encoding"}
	case 1:
		if trimOWS(vals[0]) == "" {
			h["Vary"] = []string{"Accept-Encoding"}
		} else {
			h["Vary"] = []string{vals[0] + ", Accept-Encoding"}
		}
	default:
		h["Vary"] = append(vals[:len(vals):len(vals)], "Accept-Encoding")
	}
}

// weakenETag turns a strong ETag into a weak one: a transformed body is not
// byte-for-byte the origin's representation.
func weakenETag(h http.Header) {
	if et := hget(h, "Etag"); et != "" && !strings.HasPrefix(et, "W/") {
		h.Set("Etag", "W/"+et)
	}
}

// hasNoTransform reports whether Cache-Control forbids transforming the body.
func hasNoTransform(h http.Header) bool {
	for _, v := range h["Cache-Control"] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(trimOWS(tok), "no-transform") {
				return true
			}
		}
	}
	return false
}

// eligible reports whether a response with these headers and status would
// be compressed for a client that accepts an encoding.
func (c *Compressor) eligible(h http.Header, code int) bool {
	hd := Head{
		Code:            code,
		ContentType:     hget(h, "Content-Type"),
		ContentEncoding: hget(h, "Content-Encoding"),
		ContentRange:    hget(h, "Content-Range") != "",
		NoTransform:     hasNoTransform(h),
		ContentLength:   -1,
	}
	if cl := hget(h, "Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
			hd.ContentLength = max(n, 0) // a negative length is below MinSize
		}
	}
	return c.eligibleHead(&hd)
}

func (c *Compressor) eligibleHead(h *Head) bool {
	switch code := h.Code; {
	case code < 200, code == http.StatusNoContent, code == http.StatusPartialContent, code == http.StatusNotModified:
		return false
	}
	if ce := h.ContentEncoding; ce != "" && !strings.EqualFold(ce, "identity") {
		return false
	}
	if h.ContentRange || h.NoTransform || !Compressible(h.ContentType) {
		return false
	}
	return h.ContentLength < 0 || h.ContentLength >= int64(c.cfg.MinSize)
}

// Head is what the compression decisions read from a response, for a
// caller that relays the origin's header lines without an http.Header
// (the proxy's direct path).
type Head struct {
	Code            int
	ContentType     string // the first Content-Type value
	ContentEncoding string // the first Content-Encoding value
	ContentRange    bool   // a non-empty Content-Range is present
	NoTransform     bool   // Cache-Control has no-transform
	ContentLength   int64  // -1 when unknown
}

// Untouched reports whether Decode and the writer Wrap returns would send
// a response with head h to a client that sent acceptEncoding with its
// body and header as they are, apart from Accept-Encoding added to Vary
// (addVary) as addVary does. When untouched is false the response needs
// the full path (an encoder or a decoder).
func (c *Compressor) Untouched(acceptEncoding string, h *Head) (untouched, vary bool) {
	if ce := h.ContentEncoding; ce != "" && !strings.EqualFold(ce, "identity") {
		// Decode: a coding the client cannot read is decoded; any other
		// passes, and the writer leaves an encoded response alone.
		if _, ok := parseEncoding(ce); ok && !Accepts(acceptEncoding, ce) {
			return false, true
		}
		return true, true
	}
	if !c.eligibleHead(h) {
		return true, false
	}
	return Negotiate(acceptEncoding) == Identity, true
}

// hget reads a header by its canonical name without re-canonicalising it
// (http.Header.Get does, on every call; this runs on every cache hit).
func hget(h http.Header, canonicalKey string) string {
	if v := h[canonicalKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}
