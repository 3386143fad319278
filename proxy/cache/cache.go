package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Cache. The zero value of every field has a default.
type Config struct {
	// MaxBytes bounds L1, in bytes (--cache-size; default 256 MiB).
	MaxBytes int64
	// MaxObjectBytes is the largest body stored (default MaxBytes/16,
	// at most 32 MiB). A larger response streams to the client unstored.
	MaxObjectBytes int64
	// GzipLevel compresses stored bodies (default gzip.BestSpeed).
	GzipLevel int
	// BrotliQuality is the quality of the br forms derived for stored
	// compressible objects, 0 to 11 (default 11: derived once, in the
	// background, so the smallest output is worth the CPU).
	BrotliQuality int
	// DisableVariants stores gzip alone (no br/zstd derived; an origin's
	// own br or zstd body is still stored as received).
	DisableVariants bool
	// MaxPurgeRecords bounds the purge records per tenant (default 1024);
	// past it the oldest half collapses into a purge of the whole tenant.
	MaxPurgeRecords int
	// RevalidateTimeout bounds a background revalidation (default 30 s).
	RevalidateTimeout time.Duration

	Redis *RedisConfig // optional L2
	S3    *S3Config    // optional L3

	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are not registered
	Now        func() time.Time      // nil: time.Now (tests inject a clock)
}

// Cache is the HTTP cache the proxy wraps around its origin fetch.
// It is safe for concurrent use.
type Cache struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	l1     *otter.Cache[string, *object]
	l2, l3 *tier
	purges purges
	gz     gzipPools
	codecs *codecs
	// variants queues objects for their br and zstd forms; nil with
	// Config.DisableVariants.
	variants chan variantJob
	stats    stats

	flightMu sync.Mutex
	flights  map[string]*flight

	bg     sync.WaitGroup // background revalidations
	closed chan struct{}
}

// New builds a Cache and connects its optional tiers (lazily: an
// unreachable Redis or S3 does not fail New).
func New(cfg Config) (*Cache, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 256 << 20
	}
	if cfg.MaxObjectBytes <= 0 {
		cfg.MaxObjectBytes = min(cfg.MaxBytes/16, 32<<20)
	}
	if cfg.GzipLevel == 0 {
		cfg.GzipLevel = gzip.BestSpeed
	}
	if cfg.GzipLevel < gzip.HuffmanOnly || cfg.GzipLevel > gzip.BestCompression {
		return nil, fmt.Errorf("cache: gzip level %d out of range", cfg.GzipLevel)
	}
	if cfg.BrotliQuality == 0 {
		cfg.BrotliQuality = 11
	}
	if cfg.BrotliQuality < 0 || cfg.BrotliQuality > 11 {
		return nil, fmt.Errorf("cache: brotli quality %d out of range 0-11", cfg.BrotliQuality)
	}
	codecs, err := newCodecs(cfg.BrotliQuality, cfg.MaxObjectBytes)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if cfg.MaxPurgeRecords <= 0 {
		cfg.MaxPurgeRecords = 1024
	}
	if cfg.RevalidateTimeout <= 0 {
		cfg.RevalidateTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Cache{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "cache"),
		now:     cfg.Now,
		gz:      gzipPools{level: cfg.GzipLevel},
		codecs:  codecs,
		flights: make(map[string]*flight),
		closed:  make(chan struct{}),
	}
	c.purges.limit = cfg.MaxPurgeRecords
	l1, err := otter.New(&otter.Options[string, *object]{
		MaximumWeight: uint64(cfg.MaxBytes),
		Weigher:       func(k string, o *object) uint32 { return o.weight + uint32(len(k)+allocSlack) },
		OnDeletion: func(e otter.DeletionEvent[string, *object]) {
			if e.Cause.IsEviction() {
				c.stats.evictions.Add(1)
			}
		},
		Logger: otterLogger{c.log},
	})
	if err != nil {
		return nil, fmt.Errorf("cache: l1: %w", err)
	}
	c.l1 = l1
	if cfg.Redis != nil && cfg.Redis.Addr != "" {
		rc := cfg.Redis.withDefaults()
		rs, err := newRedisStore(rc)
		if err != nil {
			return nil, fmt.Errorf("cache: l2: %w", err)
		}
		c.l2 = newTier("l2", rs, rc.Timeout, rc.WriteTimeout, rc.QueueSize, rc.Workers, c.log, c.now, &c.stats.tiers[tierL2])
	}
	if cfg.S3 != nil && cfg.S3.Bucket != "" {
		sc := cfg.S3.withDefaults()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := newS3Store(ctx, sc)
		cancel()
		if err != nil {
			c.closeTiers()
			return nil, fmt.Errorf("cache: l3: %w", err)
		}
		c.l3 = newTier("l3", st, sc.Timeout, sc.WriteTimeout, sc.QueueSize, sc.Workers, c.log, c.now, &c.stats.tiers[tierL3])
	}
	if cfg.Registerer != nil {
		if err := c.registerMetrics(cfg.Registerer); err != nil {
			c.closeTiers()
			return nil, fmt.Errorf("cache: metrics: %w", err)
		}
	}
	if !cfg.DisableVariants {
		c.variants = make(chan variantJob, variantQueue)
		c.bg.Add(1)
		go c.variantWorker()
	}
	return c, nil
}

// Close waits for background revalidations, flushes the write queues and
// closes the tiers.
func (c *Cache) Close() error {
	select {
	case <-c.closed:
		return nil
	default:
	}
	close(c.closed)
	c.bg.Wait()
	c.codecs.close()
	err := c.closeTiers()
	c.l1.StopAllGoroutines()
	return err
}

func (c *Cache) closeTiers() error {
	var errs []error
	for _, t := range []*tier{c.l2, c.l3} {
		if t != nil {
			if err := t.close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s: %w", t.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// otterLogger routes otter's rare warnings into the node's logger.
type otterLogger struct{ l *slog.Logger }

func (o otterLogger) Warn(ctx context.Context, msg string, err error) {
	o.l.WarnContext(ctx, msg, "err", err)
}

func (o otterLogger) Error(ctx context.Context, msg string, err error) {
	o.l.ErrorContext(ctx, msg, "err", err)
}
