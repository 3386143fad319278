package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// errNotFound is what a remote store returns for a missing key.
var errNotFound = errors.New("cache: not found")

// remoteStore is a shared tier below L1 (Redis, S3). Implementations must
// honour ctx deadlines.
type remoteStore interface {
	get(ctx context.Context, key string) ([]byte, error)
	put(ctx context.Context, key string, val []byte, ttl time.Duration) error
	del(ctx context.Context, keys []string) error
	close() error
}

// retryAfter is how long a tier is skipped (its breaker open) after a
// failure before the next request probes it again.
const retryAfter = time.Second

// tier wraps a remote store with tight timeouts, a failure breaker that logs
// once per outage, and a bounded queue of asynchronous writes.
type tier struct {
	name         string
	store        remoteStore
	getTimeout   time.Duration
	writeTimeout time.Duration
	log          *slog.Logger
	now          func() time.Time
	st           *tierStats

	downUntil atomic.Int64 // unix nanos; requests skip the tier until then
	down      atomic.Bool

	queue chan writeJob
	wg    sync.WaitGroup
}

type writeJob struct {
	keys []string // delete these when obj is nil
	key  string
	obj  *object
	ttl  time.Duration
}

func newTier(name string, s remoteStore, getTimeout, writeTimeout time.Duration, queue, workers int, log *slog.Logger, now func() time.Time, st *tierStats) *tier {
	t := &tier{
		name: name, store: s, getTimeout: getTimeout, writeTimeout: writeTimeout,
		log: log.With("tier", name), now: now, st: st,
		queue: make(chan writeJob, queue),
	}
	for range workers {
		t.wg.Add(1)
		go t.worker()
	}
	return t
}

// remoteKey maps a cache key to a fixed-size, charset-safe store key.
func remoteKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func (t *tier) available() bool {
	return t.now().UnixNano() >= t.downUntil.Load()
}

func (t *tier) failed(op string, err error) {
	t.st.errors.Add(1)
	t.downUntil.Store(t.now().Add(retryAfter).UnixNano())
	if !t.down.Swap(true) {
		t.log.Warn("cache tier unavailable; serving without it until it answers again", "op", op, "err", err)
	}
}

func (t *tier) succeeded() {
	if t.down.Load() && t.down.Swap(false) {
		t.log.Info("cache tier available again")
	}
}

// get looks key up within the tier's timeout. Failures are misses.
func (t *tier) get(ctx context.Context, key string) *object {
	if !t.available() {
		t.st.misses.Add(1)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.getTimeout)
	defer cancel()
	b, err := t.store.get(ctx, remoteKey(key))
	switch {
	case errors.Is(err, errNotFound):
		t.succeeded()
		t.st.misses.Add(1)
		return nil
	case err != nil:
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			return nil // the client went away; says nothing about the tier
		}
		t.failed("get", err)
		t.st.misses.Add(1)
		return nil
	}
	t.succeeded()
	o, err := decodeObject(b)
	if err != nil {
		t.st.errors.Add(1)
		t.st.misses.Add(1)
		return nil
	}
	t.st.hits.Add(1)
	return o
}

// putAsync queues a write; it never blocks the request.
func (t *tier) putAsync(key string, o *object, ttl time.Duration) {
	t.enqueue(writeJob{key: key, obj: o, ttl: ttl})
}

// delAsync queues a delete.
func (t *tier) delAsync(keys []string) {
	if len(keys) > 0 {
		t.enqueue(writeJob{keys: keys})
	}
}

func (t *tier) enqueue(j writeJob) {
	if !t.available() {
		t.st.dropped.Add(1)
		return
	}
	select {
	case t.queue <- j:
	default:
		t.st.dropped.Add(1)
	}
}

func (t *tier) worker() {
	defer t.wg.Done()
	for j := range t.queue {
		if !t.available() {
			t.st.dropped.Add(1)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), t.writeTimeout)
		var err error
		if j.obj == nil {
			keys := make([]string, len(j.keys))
			for i, k := range j.keys {
				keys[i] = remoteKey(k)
			}
			err = t.store.del(ctx, keys)
		} else {
			err = t.store.put(ctx, remoteKey(j.key), j.obj.encode(), j.ttl)
			if err == nil {
				t.st.stores.Add(1)
			}
		}
		cancel()
		if err != nil {
			t.failed("write", err)
			continue
		}
		t.succeeded()
	}
}

// close drains the queue and closes the store.
func (t *tier) close() error {
	close(t.queue)
	t.wg.Wait()
	return t.store.close()
}
