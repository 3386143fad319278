// Package compress compresses proxy responses for the client.
//
// Negotiate picks br, zstd or gzip from the request's Accept-Encoding by
// q-value; Compressible says which media types are worth it. A Compressor
// holds pooled encoders and decoders (klauspost/compress gzip and zstd,
// andybalholm/brotli) at fast levels, and wraps a handler's
// http.ResponseWriter:
//
//	cw := comp.Wrap(w, r)
//	defer cw.Close()
//	// write headers and body to cw as to w
//
// The wrapper decides at WriteHeader: it compresses a response whose type is
// compressible, that carries no Content-Encoding, whose status is not
// 1xx/204/206/304, that has no Cache-Control: no-transform, and whose
// Content-Length is unknown or at least MinSize. For a response of unknown
// length it holds the first MinSize bytes before deciding, so a short body is
// sent as is. Compressing sets Content-Encoding, removes Content-Length and
// Accept-Ranges, weakens a strong ETag, and adds Vary: Accept-Encoding (which
// is added to every eligible response, compressed or not, so shared caches
// keep the variants apart). Flush streams what was written so far.
//
// Before copying an origin response, Decode handles one that is already
// compressed: if the client accepts its encoding it passes through
// unchanged; otherwise it is decoded (so an identity-only client gets plain
// bytes, and the wrapper may then re-encode for a client that accepts a
// different coding).
package compress
