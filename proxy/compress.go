package proxy

import (
	"fmt"
	"net/http"

	"github.com/edgeproxy/edge/proxy/compress"
)

// CompressWriter adapts a *compress.Compressor to Config.WrapWriter: an
// origin response already compressed in a coding the client accepts
// passes through, one the client cannot read is decoded, and the rest is
// compressed by Accept-Encoding (br, zstd, gzip) when eligible. On the
// cache path (resp nil) only the last applies: a response the cache sends
// with a Content-Encoding (a stored gzip, br or zstd form) passes through
// as is.
func CompressWriter(c *compress.Compressor) func(http.ResponseWriter, *http.Request, *http.Response) (http.ResponseWriter, error) {
	return func(w http.ResponseWriter, r *http.Request, resp *http.Response) (http.ResponseWriter, error) {
		if resp != nil {
			if _, err := c.Decode(resp, r.Header.Get("Accept-Encoding")); err != nil {
				return nil, fmt.Errorf("decode origin body: %w", err)
			}
		}
		return c.Wrap(w, r), nil // closed by the handler (io.Closer)
	}
}

// CompressDecoder adapts a *compress.Compressor to Config.DecodeOrigin: an
// origin response in a gzip, br or zstd coding that acceptEncoding does
// not admit is decoded.
func CompressDecoder(c *compress.Compressor) func(resp *http.Response, acceptEncoding string) error {
	return func(resp *http.Response, acceptEncoding string) error {
		if _, err := c.Decode(resp, acceptEncoding); err != nil {
			return fmt.Errorf("decode origin body: %w", err)
		}
		return nil
	}
}
