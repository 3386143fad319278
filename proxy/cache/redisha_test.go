package cache

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgeproxy/edge/scripts/testkit"
)

func TestRedisConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg RedisConfig
		err string
	}{
		{RedisConfig{Addr: "r:6379"}, ""},
		{RedisConfig{Addr: "r:6379", Mode: RedisSingle}, ""},
		{RedisConfig{Addr: "a:1, b:2,c:3", Mode: RedisCluster}, ""},
		{RedisConfig{Addr: "a:26379,b:26379", Mode: RedisSentinel, MasterName: "m", DB: 2}, ""},
		{RedisConfig{Addr: "a:1,b:2"}, "single mode"},
		{RedisConfig{Addr: " , ", Mode: RedisCluster}, "no address"},
		{RedisConfig{Addr: "a:1", Mode: RedisSentinel}, "master name"},
		{RedisConfig{Addr: "a:1", Mode: RedisCluster, MasterName: "m"}, "sentinel mode"},
		{RedisConfig{Addr: "a:1", Mode: RedisCluster, DB: 1}, "database 0"},
		{RedisConfig{Addr: "a:1", Mode: "ring"}, "want single, cluster or sentinel"},
	} {
		err := tc.cfg.Validate()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: Validate() = %v, want %q", tc.cfg, err, tc.err)
		}
	}
	if _, err := New(Config{Redis: &RedisConfig{Addr: "a:1,b:2"}}); err == nil {
		t.Fatal("New accepted two addresses in single mode")
	}
}

// TestRedisClusterL2Failover runs two caches on a real 3+3 Redis Cluster:
// a fill on one is an L2 hit on the other, the keys land on every
// primary, and a SIGKILLed primary costs clients nothing while its
// replica takes over (L2 misses only); the objects it held are then
// read from the promoted replica.
func TestRedisClusterL2Failover(t *testing.T) {
	cl := testkit.StartRedisCluster(t, 3, 1)
	rc := &RedisConfig{Addr: strings.Join(cl.Addrs(), ","), Mode: RedisCluster, Timeout: 100 * time.Millisecond}
	direct := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { _ = direct.Close() })

	run := newFailoverRun(t, rc)

	// Keys spread over the slots of every primary.
	ctx := context.Background()
	var mu sync.Mutex
	perMaster := map[string]int64{}
	must(t, direct.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		mu.Lock()
		perMaster[c.Options().Addr] = n
		mu.Unlock()
		return err
	}))
	victim, most := "", int64(0)
	for a, n := range perMaster {
		if n > most {
			victim, most = a, n
		}
	}
	if len(perMaster) != 3 || most == int64(run.warm) {
		t.Fatalf("keys per primary %v: not spread", perMaster)
	}
	for a, n := range perMaster {
		if n == 0 {
			t.Fatalf("keys per primary %v: none on %s", perMaster, a)
		}
	}
	m, err := cl.Masters()
	must(t, err)
	if len(m[victim]) == 0 {
		t.Fatalf("primary %s has no replica: %v", victim, m)
	}
	replica := m[victim][0]
	testkit.EventuallyNil(t, 10*time.Second, func() error { return sameSize(victim, replica) })

	res := run.failover(func() { cl.Node(victim).Stop() }, func() error {
		m, err := cl.Masters()
		if err != nil {
			return err
		}
		if _, ok := m[replica]; !ok || len(m) != 3 {
			return fmt.Errorf("replica %s not promoted yet: %v", replica, m)
		}
		return nil
	})
	t.Logf("cluster: keys per primary %v; killed %s, replica %s promoted: %s", perMaster, victim, replica, res)
}

// TestRedisSentinelL2Failover does the same behind Sentinel: a primary,
// a replica and three sentinels; the primary is SIGKILLed and the
// sentinels promote the replica.
func TestRedisSentinelL2Failover(t *testing.T) {
	g := testkit.StartRedisSentinel(t)
	rc := &RedisConfig{Addr: strings.Join(g.SentinelAddrs(), ","), Mode: RedisSentinel, MasterName: g.MasterName, Timeout: 100 * time.Millisecond}
	run := newFailoverRun(t, rc)
	testkit.EventuallyNil(t, 10*time.Second, func() error { return sameSize(g.Primary.Addr(), g.Replica.Addr()) })
	res := run.failover(g.Primary.Stop, func() error {
		a, err := g.MasterAddr()
		if err == nil && a != g.Replica.Addr() {
			err = fmt.Errorf("sentinels still name %s", a)
		}
		return err
	})
	t.Logf("sentinel: killed %s, replica %s promoted: %s", g.Primary.Addr(), g.Replica.Addr(), res)
}

// failoverRun is two caches (fronts a and b) sharing one L2, with warm
// objects filled through a and read as L2 hits through b.
type failoverRun struct {
	t    *testing.T
	rc   *RedisConfig
	o    *origin
	a, b *front
	warm int
}

func newFailoverRun(t *testing.T, rc *RedisConfig) *failoverRun {
	t.Helper()
	r := &failoverRun{t: t, rc: rc, o: countingOrigin(t), warm: 30}
	r.a = newFront(t, newCache(t, Config{Redis: rc}), r.o.srv.URL, Request{Tenant: "t"})
	r.b = newFront(t, newCache(t, Config{Redis: rc}), r.o.srv.URL, Request{Tenant: "t"})
	for i := range r.warm {
		wantStatus(t, r.a.get(t, fmt.Sprintf("/warm/%d", i)), 200, "edge; fwd=miss; stored")
	}
	testkit.Eventually(t, 10*time.Second, "L2 writes", func() bool { return r.a.c.Stats().L2.Stores >= int64(r.warm) })
	for i := range r.warm {
		wantStatus(t, r.b.get(t, fmt.Sprintf("/warm/%d", i)), 200, "edge; hit")
		if tier := r.b.last.Load().Tier; tier != "l2" {
			t.Fatalf("/warm/%d on the second cache: tier %q, want l2", i, tier)
		}
	}
	return r
}

type failoverResult struct {
	requests, errors int64
	l2Misses         int64         // b's reads of a's objects that missed L2
	edgeFailover     time.Duration // kill → b's last L2 miss: what Edge saw
	promoted         time.Duration // kill → the Redis side says it is done
}

func (r failoverResult) String() string {
	return fmt.Sprintf("%d requests, %d errors, %d L2 misses, failover seen by Edge %s (Redis promotion %s)",
		r.requests, r.errors, r.l2Misses, r.edgeFailover.Round(time.Millisecond), r.promoted.Round(time.Millisecond))
}

// failover streams requests through both caches, kills a primary, waits
// until promoted says the Redis side recovered and b has read 2 s of
// a's new objects from L2 without a miss, then checks that every
// response was a 200 and that a fresh cache reads the warm objects from
// L2 (they survived on the promoted replica).
func (r *failoverRun) failover(kill func(), promoted func() error) failoverResult {
	t := r.t
	t.Helper()
	var (
		res       failoverResult
		killedAt  atomic.Int64
		lastMiss  atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		errMu     sync.Mutex
		firstErrs []string
		written   atomic.Int64 // a has served /s/0 … /s/written-1
	)
	fail := func(format string, args ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		res.errors++
		if len(firstErrs) < 5 {
			firstErrs = append(firstErrs, fmt.Sprintf(format, args...))
		}
	}
	get := func(f *front, path string) (string, bool) {
		resp, err := f.client.Do(frontRequest(t, f.srv.URL, http.MethodGet, path))
		if err != nil {
			fail("%s: %v", path, err)
			return "", false
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			fail("%s: status %d, %v", path, resp.StatusCode, err)
			return "", false
		}
		return resp.Header.Get("Cache-Status"), true
	}
	var requests atomic.Int64
	wg.Add(2)
	go func() { // a fills a new object every 5 ms
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			get(r.a, fmt.Sprintf("/s/%d", i))
			requests.Add(1)
			written.Store(int64(i + 1))
		}
	}()
	go func() { // b reads what a filled 20 requests (≥ 100 ms) ago
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			n := written.Load() - 20
			if n < 0 {
				continue
			}
			cs, ok := get(r.b, fmt.Sprintf("/s/%d", n))
			requests.Add(1)
			if ok && strings.HasPrefix(cs, "edge; fwd=miss") {
				if k := killedAt.Load(); k != 0 {
					lastMiss.Store(time.Now().UnixNano())
					errMu.Lock()
					res.l2Misses++
					errMu.Unlock()
				}
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // a steady stream before the kill
	start := time.Now()
	killedAt.Store(start.UnixNano())
	kill()
	testkit.EventuallyNil(t, 25*time.Second, promoted)
	res.promoted = time.Since(start)
	// b reads 2 s of a's objects from L2 without a miss.
	testkit.Eventually(t, 20*time.Second, "L2 hits on the second cache again", func() bool {
		last := max(lastMiss.Load(), start.UnixNano())
		return time.Since(time.Unix(0, last)) > 2*time.Second
	})
	close(stop)
	wg.Wait()
	res.requests = requests.Load()
	if lm := lastMiss.Load(); lm != 0 {
		res.edgeFailover = time.Unix(0, lm).Sub(start)
	}
	if res.errors != 0 {
		t.Fatalf("%s; first: %v", res, firstErrs)
	}

	// The warm objects written before the kill are L2 hits on a new cache:
	// the promoted replica has them and the new client finds it.
	// (A generous lookup timeout: this checks where the data is, not
	// the latency of a loaded test machine.)
	rc := *r.rc
	rc.Timeout = time.Second
	logs := &logBuffer{}
	c := newFront(t, newCache(t, Config{Redis: &rc, Logger: slog.New(slog.NewTextHandler(logs, nil))}), r.o.srv.URL, Request{Tenant: "t"})
	for i := range r.warm {
		resp := c.get(t, fmt.Sprintf("/warm/%d", i))
		if tier := c.last.Load().Tier; resp.code != 200 || tier != "l2" {
			t.Fatalf("/warm/%d after the failover: %d %q from tier %q, want an L2 hit; L2 %+v; log: %s", i, resp.code, resp.header.Get("Cache-Status"), tier, c.c.Stats().L2, logs.buf.String())
		}
	}
	return res
}

// sameSize waits for a replica to hold as many keys as its primary.
func sameSize(primary, replica string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var n [2]int64
	for i, a := range []string{primary, replica} {
		c := redis.NewClient(&redis.Options{Addr: a, DisableIdentity: true, Protocol: 2})
		v, err := c.DBSize(ctx).Result()
		c.Close()
		if err != nil {
			return err
		}
		n[i] = v
	}
	if n[0] != n[1] || n[0] == 0 {
		return fmt.Errorf("primary %s holds %d keys, replica %s %d", primary, n[0], replica, n[1])
	}
	return nil
}
