package node

import (
	"io"
	"strings"
	"testing"

	"github.com/edgeproxy/edge/proxy/cache"
)

// TestRedisFlags: --redis-addr, --redis-mode and --redis-master-name (and
// their EDGE_ variables) become the L2's cache.RedisConfig; a plain
// --redis-addr keeps meaning one Redis, and a list, a missing master
// name or an unknown mode is refused before the node starts.
func TestRedisFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want *cache.RedisConfig
		err  string
	}{
		{args: nil, want: nil},
		{args: []string{"--redis-addr", "r:6379"}, want: &cache.RedisConfig{Addr: "r:6379", Mode: cache.RedisSingle}},
		{args: []string{"--redis-addr", "a:7000,b:7000", "--redis-mode", "cluster"}, want: &cache.RedisConfig{Addr: "a:7000,b:7000", Mode: cache.RedisCluster}},
		{env: map[string]string{"EDGE_REDIS_ADDR": "s1:26379,s2:26379,s3:26379", "EDGE_REDIS_MODE": "sentinel", "EDGE_REDIS_MASTER_NAME": "edge"},
			want: &cache.RedisConfig{Addr: "s1:26379,s2:26379,s3:26379", Mode: cache.RedisSentinel, MasterName: "edge"}},
		{args: []string{"--redis-addr", "a:1,b:2"}, err: "single mode"},
		{args: []string{"--redis-addr", "s:26379", "--redis-mode", "sentinel"}, err: "--redis-master-name"},
		{args: []string{"--redis-addr", "a:1", "--redis-mode", "ring"}, err: "want single, cluster or sentinel"},
		{args: []string{"--redis-mode", "cluster"}, err: "need --redis-addr"},
	} {
		c, err := ParseFlags(append([]string{"--id", "x", "--data-dir", t.TempDir(), "--dev"}, tc.args...), func(k string) string { return tc.env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := c.ProxyOptions.redisConfig()
		if err == nil {
			err = c.validate()
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v %v: error %v, want %q", tc.args, tc.env, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v %v: %v", tc.args, tc.env, err)
			continue
		}
		if (rc == nil) != (tc.want == nil) || rc != nil && *rc != *tc.want {
			t.Errorf("%v %v: %+v, want %+v", tc.args, tc.env, rc, tc.want)
		}
	}
}
