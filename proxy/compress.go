package proxy

import (
	"fmt"
	"net/http"

	"github.com/edgeproxy/edge/proxy/compress"
)

// CompressWriter adapts a *compress.Compressor to Config.WrapWriter: an
// origin response already compressed in a coding the client accepts
// passes through, one the client cannot read is decoded, and the rest is
// compressed by Accept-Encoding (br, zstd, gzip) when eligible.
func CompressWriter(c *compress.Compressor) func(http.ResponseWriter, *http.Request, *http.Response) (http.ResponseWriter, func() error, error) {
	return func(w http.ResponseWriter, r *http.Request, resp *http.Response) (http.ResponseWriter, func() error, error) {
		if _, err := c.Decode(resp, r.Header.Get("Accept-Encoding")); err != nil {
			return nil, nil, fmt.Errorf("decode origin body: %w", err)
		}
		cw := c.Wrap(w, r)
		return cw, cw.Close, nil
	}
}
