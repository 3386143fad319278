package cache

// Encodings: the br and zstd variants stored next to gzip (derived once,
// in the background, after an object is stored or promoted from L2/L3),
// the origin's own br and zstd bodies (stored as received, decoded once
// for the gzip and identity forms), and the bytes each coding saved.

import (
	"bytes"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/maypok86/otter/v2"

	"github.com/edgeproxy/edge/proxy/compress"
)

// variantQueue bounds the objects waiting for their br and zstd forms; a
// fill that finds it full leaves its object with gzip alone (counted in
// variantsDropped) until its next store or promotion.
const variantQueue = 256

// codecs compresses and decodes the variants. The zstd encoder and
// decoder are safe for concurrent EncodeAll/DecodeAll.
type codecs struct {
	brQuality int
	zenc      *zstd.Encoder
	zdec      *zstd.Decoder
}

func newCodecs(brQuality int, maxObject int64) (*codecs, error) {
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	// A frame that claims more than an object may hold fails before
	// anything that size is allocated.
	zdec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20),
		zstd.WithDecoderMaxMemory(uint64(maxObject)))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &codecs{brQuality: brQuality, zenc: zenc, zdec: zdec}, nil
}

func (k *codecs) close() {
	_ = k.zenc.Close()
	k.zdec.Close()
}

func (k *codecs) brotli(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(b)/4 + 64)
	// The window fits the body (16 to 22 bits): an encoder's tables
	// grow with it, and a small body does not need 4 MiB of them.
	lgwin := min(max(bits.Len(uint(len(b))), 16), 22)
	bw := brotli.NewWriterOptions(&buf, brotli.WriterOptions{Quality: k.brQuality, LGWin: lgwin})
	if _, err := bw.Write(b); err != nil {
		return nil, err
	}
	if err := bw.Close(); err != nil {
		return nil, err
	}
	return slices.Clip(buf.Bytes()), nil
}

func (k *codecs) zstd(b []byte) []byte {
	return slices.Clip(k.zenc.EncodeAll(b, make([]byte, 0, len(b)/4+64)))
}

// decode returns the identity body of an origin body in coding ce (br or
// zstd), at most limit bytes (MaxObjectBytes: a small body must not
// expand into gigabytes in the cache's memory).
func (k *codecs) decode(ce string, b []byte, limit int64) ([]byte, error) {
	var r io.Reader
	switch {
	case strings.EqualFold(ce, "br"):
		r = brotli.NewReader(bytes.NewReader(b))
	case strings.EqualFold(ce, "zstd"):
		out, err := k.zdec.DecodeAll(b, nil) // safe for concurrent fills
		if err != nil {
			return nil, err
		}
		if int64(len(out)) > limit {
			return nil, fmt.Errorf("decodes to more than %d bytes", limit)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("coding %q", ce)
	}
	out, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("decodes to more than %d bytes", limit)
	}
	return out, nil
}

// variantJob is an object that wants its br and zstd forms, and the L1
// key it lives under.
type variantJob struct {
	key string
	o   *object
}

// wantsVariants reports whether o is worth a background pass: a
// compressible representation (the fill compressed it, or the origin
// did) that lacks br or zstd.
func (o *object) wantsVariants() bool {
	if o.marker || o.hitForMiss || o.identLen < minCompress || !o.compressed() {
		return false
	}
	return o.br == nil || o.zst == nil
}

// compressed reports whether o has a stored content coding and may be
// transformed (no no-transform, a compressible type).
func (o *object) compressed() bool {
	return (o.gzipped || o.br != nil || o.zst != nil) && compressible(o.header, int(o.identLen))
}

// queueVariants hands o to the variant worker without blocking.
func (c *Cache) queueVariants(key string, o *object) {
	if c.variants == nil || !o.wantsVariants() {
		return
	}
	select {
	case c.variants <- variantJob{key: key, o: o}:
	default:
		c.stats.variantsDropped.Add(1)
	}
}

// variantWorker derives the missing br and zstd forms of queued objects,
// one at a time (they are compressed at high levels: one core at most).
func (c *Cache) variantWorker() {
	defer c.bg.Done()
	for {
		select {
		case <-c.closed:
			return
		case j := <-c.variants:
			c.addVariants(j.key, j.o)
		}
	}
}

// addVariants builds a copy of o with its br and zstd forms and puts it
// in L1 in o's place, only if o is still there: a purge, a refresh or an
// eviction meanwhile wins. L2 and L3 keep the gzip form (docs/cache.md,
// "Encodings").
func (c *Cache) addVariants(key string, o *object) {
	ident, err := c.identityOf(o)
	if err != nil {
		c.log.Warn("cache: no br/zstd variants", "host", o.host, "path", o.pathQuery, "err", err)
		return
	}
	n := *o
	if n.br == nil {
		if b, err := c.codecs.brotli(ident); err == nil && len(b) < len(ident) {
			n.br = b
		}
	}
	if n.zst == nil {
		if z := c.codecs.zstd(ident); len(z) < len(ident) {
			n.zst = z
		}
	}
	if n.br == nil && n.zst == nil {
		return
	}
	n.finish()
	c.l1.Compute(key, func(old *object, found bool) (*object, otter.ComputeOp) {
		if !found || old != o {
			return old, otter.CancelOp
		}
		return &n, otter.WriteOp
	})
}

// identityOf is the identity body of o: body is gzip or identity (an
// origin's br or zstd body is kept beside it, never in it).
func (c *Cache) identityOf(o *object) ([]byte, error) {
	return c.gz.identity(o)
}

// savedBytes counts, per content coding, the body bytes a hit did not
// send because a stored compressed variant was sent instead
// (edge_compress_saved_bytes_total{encoding}).
type savedBytes [4]atomic.Int64

var encodingNames = [...]compress.Encoding{compress.Gzip, compress.Brotli, compress.Zstd}
