package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisConfig configures the optional shared L2.
type RedisConfig struct {
	// Addr is where Redis is (--redis-addr): one host:port for a single
	// Redis; for a cluster, a comma-separated list of seed nodes (any
	// one that answers gives the client the whole slot map); for
	// Sentinel, the comma-separated sentinels.
	Addr string
	// Mode is RedisSingle (the default), RedisCluster or RedisSentinel
	// (--redis-mode).
	Mode RedisMode
	// MasterName is the name the sentinels monitor the primary under
	// (--redis-master-name); required in RedisSentinel mode only.
	MasterName string
	// Username and Password authenticate to every Redis node (all
	// modes; with Sentinel, to the primary, not to the sentinels).
	Username string
	Password string
	// DB selects a database (single and sentinel only: a cluster has
	// just database 0).
	DB int

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

// RedisMode says what Addr points at.
type RedisMode string

const (
	RedisSingle   RedisMode = "single"   // one Redis (or a proxy in front of several)
	RedisCluster  RedisMode = "cluster"  // Redis Cluster: keys spread over the slots of its primaries
	RedisSentinel RedisMode = "sentinel" // a primary and replicas watched by Sentinel
)

// ParseRedisMode reads --redis-mode; the empty string is RedisSingle.
func ParseRedisMode(s string) (RedisMode, error) {
	switch m := RedisMode(s); m {
	case "":
		return RedisSingle, nil
	case RedisSingle, RedisCluster, RedisSentinel:
		return m, nil
	}
	return "", fmt.Errorf("redis mode %q: want single, cluster or sentinel", s)
}

// Addrs splits Addr's comma-separated list.
func (c *RedisConfig) Addrs() []string {
	var out []string
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Validate checks that Addr and MasterName fit Mode.
func (c *RedisConfig) Validate() error {
	mode, err := ParseRedisMode(string(c.Mode))
	if err != nil {
		return err
	}
	addrs := c.Addrs()
	switch {
	case len(addrs) == 0:
		return errors.New("redis: no address")
	case mode == RedisSingle && len(addrs) > 1:
		return fmt.Errorf("redis: %d addresses in single mode (a list is for --redis-mode cluster or sentinel)", len(addrs))
	case mode == RedisSentinel && c.MasterName == "":
		return errors.New("redis: sentinel mode needs the master name (--redis-master-name)")
	case mode != RedisSentinel && c.MasterName != "":
		return fmt.Errorf("redis: a master name is for sentinel mode, not %s", mode)
	case mode == RedisCluster && c.DB != 0:
		return errors.New("redis: a cluster has only database 0")
	}
	return nil
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
//
// In every mode a command names one key (GET, SET, DEL of one key), so
// no command crosses a cluster slot and no hash tag is needed: keys are
// SHA-256 names and spread evenly over the slots. A delete of several
// keys is a pipeline of single-key DELs, which the cluster client splits
// by node.
type redisStore struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // nil unless RedisCluster
	prefix  string
}

func newRedisStore(cfg RedisConfig) (*redisStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// One place for what every mode shares: fail fast, never retry on
	// the request path (the breaker and the origin are the fallback),
	// no client-side handshakes beyond AUTH.
	maint := func() *maintnotifications.Config {
		return &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	}
	s := &redisStore{prefix: cfg.KeyPrefix}
	switch mode, _ := ParseRedisMode(string(cfg.Mode)); mode {
	case RedisCluster:
		s.cluster = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                 cfg.Addrs(),
			Username:              cfg.Username,
			Password:              cfg.Password,
			DialTimeout:           cfg.DialTimeout,
			ReadTimeout:           cfg.WriteTimeout,
			WriteTimeout:          cfg.WriteTimeout,
			ContextTimeoutEnabled: true,
			// One redirect: a MOVED during a resharding or right after
			// a failover is followed once (the slot map is reloaded
			// in the background) instead of tripping the breaker.
			MaxRedirects:             1,
			MaxRetries:               -1,
			PoolTimeout:              cfg.Timeout,
			DisableIdentity:          true,
			Protocol:                 2,
			MaintNotificationsConfig: maint(),
		})
		s.client = s.cluster
		// Load the slot map now, in the background, so that the first
		// lookup does not spend its few milliseconds on CLUSTER SLOTS.
		s.cluster.ReloadState(context.Background())
	case RedisSentinel:
		s.client = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:            cfg.MasterName,
			SentinelAddrs:         cfg.Addrs(),
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
			// (go-redis turns maintenance notifications off for failover clients.)
		})
	default:
		s.client = redis.NewClient(&redis.Options{
			Addr:                     cfg.Addr,
			Username:                 cfg.Username,
			Password:                 cfg.Password,
			DB:                       cfg.DB,
			DialTimeout:              cfg.DialTimeout,
			ReadTimeout:              cfg.WriteTimeout,
			WriteTimeout:             cfg.WriteTimeout,
			ContextTimeoutEnabled:    true,
			MaxRetries:               -1,
			PoolTimeout:              cfg.Timeout,
			DisableIdentity:          true,
			Protocol:                 2,
			MaintNotificationsConfig: maint(),
		})
	}
	return s, nil
}

// failed is every command's error path. A cluster client learns a new
// slot map only from a MOVED answer or every minute; a primary that is
// gone answers nothing, so after its replica took over the client would
// keep dialling the dead address. Any error other than a missing key
// asks for a reload (go-redis runs one at a time, in the background, at
// most every 200 ms; the breaker makes it about once a second).
func (s *redisStore) failed(op string, err error) error {
	if s.cluster != nil {
		s.cluster.ReloadState(context.Background())
	}
	return fmt.Errorf("redis %s: %w", op, err)
}

func (s *redisStore) get(ctx context.Context, key string) ([]byte, error) {
	b, err := s.client.Get(ctx, s.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, s.failed("get", err)
	}
	return b, nil
}

func (s *redisStore) put(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := s.client.Set(ctx, s.prefix+key, val, max(ttl, time.Second)).Err(); err != nil {
		return s.failed("set", err)
	}
	return nil
}

func (s *redisStore) del(ctx context.Context, keys []string) error {
	var err error
	if len(keys) == 1 {
		err = s.client.Del(ctx, s.prefix+keys[0]).Err()
	} else {
		_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Del(ctx, s.prefix+k)
			}
			return nil
		})
	}
	if err != nil {
		return s.failed("del", err)
	}
	return nil
}

func (s *redisStore) close() error { return s.client.Close() }
