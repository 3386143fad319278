package logship

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/loki-client-go/loki"
	"github.com/grafana/loki-client-go/pkg/backoff"
	"github.com/grafana/loki-client-go/pkg/urlutil"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultBatchWait        = time.Second
	DefaultBatchBytes       = 1 << 20
	DefaultQueueSize        = 4096
	DefaultMaxBufferedBytes = 4 << 20
	DefaultTimeout          = 5 * time.Second
	DefaultMaxRetries       = 3
	DefaultMinBackoff       = 250 * time.Millisecond
	DefaultMaxBackoff       = 2 * time.Second
)

// LevelLabel is the stream label that carries the record's level. It is
// reserved: Config.Labels may not set it.
const LevelLabel = "level"

// Config configures a Shipper. Zero values take the Default* constants.
type Config struct {
	// URL is Loki's push endpoint, e.g.
	// http://127.0.0.1:3100/loki/api/v1/push. User info in the URL is sent
	// as HTTP basic auth.
	URL string
	// Labels are attached to every stream, e.g. job=edge, node=<id>. Keep
	// them per-process: per-request values belong in the line.
	Labels map[string]string

	// BatchWait is how long the client collects lines before a push.
	BatchWait time.Duration
	// BatchBytes caps the line bytes in one push. Lines longer than this
	// are dropped (reason "too_large").
	BatchBytes int
	// QueueSize caps the lines waiting in front of the client.
	QueueSize int
	// MaxBufferedBytes caps the line bytes waiting in front of the client.
	MaxBufferedBytes int

	// Timeout bounds one push attempt.
	Timeout time.Duration
	// MaxRetries is the number of push attempts per batch before the batch
	// is dropped (reason "push_failed"); never unlimited.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the wait between attempts.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// Registerer receives the edge_log_* metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// Logger receives the shipper's and the client's own errors. It must not
	// route back through Shipper.Handler (that would only add noise: it
	// cannot deadlock, since shipping never blocks). Nil discards.
	Logger *slog.Logger
}

// Drop reasons, the values of edge_log_lines_dropped_total's reason label.
const (
	reasonQueueFull  = iota // the queue was at QueueSize or MaxBufferedBytes
	reasonPushFailed        // the client gave up on a batch after MaxRetries
	reasonTooLarge          // the line alone is bigger than BatchBytes
	reasonClosed            // logged after Close, or abandoned when Close's ctx ended
	numReasons
)

var reasonNames = [numReasons]string{"queue_full", "push_failed", "too_large", "closed"}

// Levels, indexes into Shipper.labels.
const (
	levelDebug = iota
	levelInfo
	levelWarn
	levelError
	numLevels
)

var levelNames = [numLevels]string{"debug", "info", "warn", "error"}

type entry struct {
	t     time.Time
	level uint8
	line  string
}

// Shipper queues log lines and hands them to a loki-client-go client.
type Shipper struct {
	client     *loki.Client
	logger     *slog.Logger
	labels     [numLevels]model.LabelSet
	batchBytes int
	maxBytes   int64

	// mu guards closed and the close of queue; senders hold it shared, so
	// no line is sent on a closed channel and Close's drain sees every line.
	mu          sync.RWMutex
	closed      bool
	closedFlag  atomic.Bool // fast path for Handle: skip formatting after Close
	queue       chan entry
	queuedBytes atomic.Int64
	abandoned   atomic.Bool // Close's ctx ended: drop instead of forwarding
	done        chan struct{}

	dropped [numReasons]atomic.Uint64
	handed  atomic.Uint64 // lines handed to the client
	client0 clientCounters
}

// New validates cfg, starts the loki-client-go client and the goroutine that
// feeds it, and registers the edge_log_* metrics.
func New(cfg Config) (*Shipper, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("logship: loki url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("logship: loki url %q: want http(s)://host[:port]/loki/api/v1/push", u.Redacted())
	}
	base, err := baseLabels(cfg.Labels)
	if err != nil {
		return nil, err
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	logger = logger.With("component", "logship")

	s := &Shipper{
		logger:     logger,
		batchBytes: cfg.BatchBytes,
		maxBytes:   int64(cfg.MaxBufferedBytes),
		queue:      make(chan entry, cfg.QueueSize),
		done:       make(chan struct{}),
	}
	for i := range s.labels {
		ls := base.Clone()
		ls[LevelLabel] = model.LabelValue(levelNames[i])
		s.labels[i] = ls
	}

	s.client0 = lookupClientCounters(u.Host)
	if !s.client0.ok {
		logger.Warn("loki client metrics not found; edge_log_lines_shipped_total counts lines handed to the client")
	}

	s.client, err = loki.NewWithLogger(loki.Config{
		URL:       urlutil.URLValue{URL: u},
		BatchWait: cfg.BatchWait,
		BatchSize: cfg.BatchBytes,
		BackoffConfig: backoff.BackoffConfig{
			MinBackoff: cfg.MinBackoff,
			MaxBackoff: cfg.MaxBackoff,
			MaxRetries: cfg.MaxRetries,
		},
		Timeout: cfg.Timeout,
	}, kitLogger{logger})
	if err != nil {
		return nil, fmt.Errorf("logship: loki client for %s: %w", u.Redacted(), err)
	}

	if cfg.Registerer != nil {
		if err := s.register(cfg.Registerer); err != nil {
			s.client.Stop()
			return nil, err
		}
	}

	go s.run()
	return s, nil
}

func (c *Config) defaults() error {
	if c.URL == "" {
		return errors.New("logship: loki url is required")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"batch wait", &c.BatchWait, DefaultBatchWait},
		{"timeout", &c.Timeout, DefaultTimeout},
		{"min backoff", &c.MinBackoff, DefaultMinBackoff},
		{"max backoff", &c.MaxBackoff, DefaultMaxBackoff},
	} {
		if *d.v < 0 {
			return fmt.Errorf("logship: %s %v is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, d := range []struct {
		name string
		v    *int
		def  int
	}{
		{"batch bytes", &c.BatchBytes, DefaultBatchBytes},
		{"queue size", &c.QueueSize, DefaultQueueSize},
		{"max buffered bytes", &c.MaxBufferedBytes, DefaultMaxBufferedBytes},
		{"max retries", &c.MaxRetries, DefaultMaxRetries},
	} {
		if *d.v < 0 {
			return fmt.Errorf("logship: %s %d is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("logship: max backoff %v is below min backoff %v", c.MaxBackoff, c.MinBackoff)
	}
	return nil
}

// baseLabels validates the configured labels against Loki's rules: legacy
// Prometheus label names, non-empty values, no reserved names.
func baseLabels(in map[string]string) (model.LabelSet, error) {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ls := make(model.LabelSet, len(in)+1)
	for _, k := range keys {
		v := in[k]
		switch {
		case !validLabelName(k):
			return nil, fmt.Errorf("logship: label name %q: want [a-zA-Z_][a-zA-Z0-9_]*", k)
		case k == LevelLabel:
			return nil, fmt.Errorf("logship: label %q is reserved for the record level", k)
		case len(k) >= 2 && k[:2] == "__":
			return nil, fmt.Errorf("logship: label name %q: names starting with __ are reserved", k)
		case v == "":
			return nil, fmt.Errorf("logship: label %q has an empty value", k)
		case !model.LabelValue(v).IsValid():
			return nil, fmt.Errorf("logship: label %q: value is not valid UTF-8", k)
		}
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls, nil
}

func validLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i, b := range []byte(s) {
		if b == '_' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (i > 0 && b >= '0' && b <= '9') {
			continue
		}
		return false
	}
	return true
}

// enqueue offers one formatted line to the queue; it never blocks. p is only
// read during the call.
func (s *Shipper) enqueue(level uint8, p []byte) {
	if len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	if len(p) > s.batchBytes {
		s.dropped[reasonTooLarge].Add(1)
		return
	}
	if len(s.queue) == cap(s.queue) { // full: skip the copy below
		s.dropped[reasonQueueFull].Add(1)
		return
	}
	n := int64(len(p))
	if s.queuedBytes.Add(n) > s.maxBytes {
		s.queuedBytes.Add(-n)
		s.dropped[reasonQueueFull].Add(1)
		return
	}
	e := entry{t: time.Now(), level: level, line: string(p)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		s.queuedBytes.Add(-n)
		s.dropped[reasonClosed].Add(1)
		return
	}
	select {
	case s.queue <- e:
		s.mu.RUnlock()
	default:
		s.mu.RUnlock()
		s.queuedBytes.Add(-n)
		s.dropped[reasonQueueFull].Add(1)
	}
}

// run feeds the client until Close closes the queue, then stops the client,
// which pushes its last batch (within its retry budget).
func (s *Shipper) run() {
	defer close(s.done)
	for e := range s.queue {
		s.queuedBytes.Add(-int64(len(e.line)))
		if s.abandoned.Load() {
			s.dropped[reasonClosed].Add(1)
			continue
		}
		// Handle blocks while the client is pushing (including its retries
		// and backoff); that is why the queue sits in front of it.
		_ = s.client.Handle(s.labels[e.level], e.t, e.line)
		s.handed.Add(1)
	}
	s.client.Stop()
}

// Close stops accepting lines, hands the queued ones to the client and
// waits for its final push, as long as ctx allows. When ctx ends first, the
// lines still queued are dropped (reason "closed"), Close returns ctx's
// error, and the client's last push finishes in the background within its
// retry budget (MaxRetries × (Timeout + MaxBackoff)). Close is idempotent;
// records logged after it still reach the next handler but are not shipped.
func (s *Shipper) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.closedFlag.Store(true)
		close(s.queue)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.abandoned.Store(true)
		return fmt.Errorf("logship: close: lines not yet pushed are dropped: %w", ctx.Err())
	}
}

// dropCount reports the lines dropped so far for one reason.
func (s *Shipper) dropCount(reason int) float64 {
	if reason == reasonPushFailed {
		return s.client0.dropped()
	}
	return float64(s.dropped[reason].Load())
}

func (s *Shipper) shipped() float64 {
	if s.client0.ok {
		return s.client0.sent()
	}
	return float64(s.handed.Load())
}

func (s *Shipper) register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "edge_log_lines_shipped_total",
			Help: "Log lines pushed to Loki.",
		}, s.shipped),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edge_log_queue_lines",
			Help: "Log lines waiting in front of the Loki client.",
		}, func() float64 { return float64(len(s.queue)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edge_log_queue_bytes",
			Help: "Bytes of log lines waiting in front of the Loki client.",
		}, func() float64 { return float64(s.queuedBytes.Load()) }),
	}
	for r := range numReasons {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "edge_log_lines_dropped_total",
			Help:        "Log lines not shipped to Loki, by reason (queue_full, push_failed, too_large, closed).",
			ConstLabels: prometheus.Labels{"reason": reasonNames[r]},
		}, func() float64 { return s.dropCount(r) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs {
				if done == c {
					break
				}
				reg.Unregister(done)
			}
			return fmt.Errorf("logship: register metrics: %w", err)
		}
	}
	return nil
}
