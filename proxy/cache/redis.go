package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisConfig configures the optional shared L2.
type RedisConfig struct {
	Addr     string // host:port (--redis-addr)
	Username string
	Password string
	DB       int

	// Timeout bounds a lookup on the request path (default 5 ms): a slow
	// Redis costs a request at most this much.
	Timeout time.Duration
	// WriteTimeout bounds an asynchronous write (default 250 ms).
	WriteTimeout time.Duration
	// DialTimeout bounds a connection attempt (default 50 ms).
	DialTimeout time.Duration
	// QueueSize bounds pending writes; more are dropped (default 1024).
	QueueSize int
	// Workers write the queue (default 4).
	Workers int
	// KeyPrefix is prepended to every key (default "edge:c:").
	KeyPrefix string
}

func (c *RedisConfig) withDefaults() RedisConfig {
	d := *c
	if d.Timeout <= 0 {
		d.Timeout = 5 * time.Millisecond
	}
	if d.WriteTimeout <= 0 {
		d.WriteTimeout = 250 * time.Millisecond
	}
	if d.DialTimeout <= 0 {
		d.DialTimeout = 50 * time.Millisecond
	}
	if d.QueueSize <= 0 {
		d.QueueSize = 1024
	}
	if d.Workers <= 0 {
		d.Workers = 4
	}
	if d.KeyPrefix == "" {
		d.KeyPrefix = "edge:c:"
	}
	return d
}

// redisStore is the L2 store. go-redis keeps a pool and redials on its
// own; the tier's breaker keeps requests off it while it is down.
type redisStore struct {
	client *redis.Client
	prefix string
}

func newRedisStore(cfg RedisConfig) *redisStore {
	return &redisStore{
		prefix: cfg.KeyPrefix,
		client: redis.NewClient(&redis.Options{
			Addr:                  cfg.Addr,
			Username:              cfg.Username,
			Password:              cfg.Password,
			DB:                    cfg.DB,
			DialTimeout:           cfg.DialTimeout,
			ReadTimeout:           cfg.WriteTimeout,
			WriteTimeout:          cfg.WriteTimeout,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
			PoolTimeout:           cfg.Timeout,
			DisableIdentity:       true,
			Protocol:              2,
			MaintNotificationsConfig: &maintnotifications.Config{
				Mode: maintnotifications.ModeDisabled,
			},
		}),
	}
}

func (s *redisStore) get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.client.Get(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("redis get: %w", err)
	}
	return b, nil
}

func (s *redisStore) put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := s.client.Set(ctx, s.prefix+key, val, max(ttl, time.Second)).Err(); err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	return nil
}

func (s *redisStore) del(ctx context.Context, keys []string) error {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.prefix + k
	}
	if err := s.client.Del(ctx, full...).Err(); err != nil {
		return fmt.Errorf("redis del: %w", err)
	}
	return nil
}

func (s *redisStore) close() error { return s.client.Close() }
