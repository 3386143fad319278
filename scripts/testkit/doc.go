// Package testkit is the scaffolding every Edge test shares, so that no
// package carries its own copy:
//
//   - the real external services tests run against — redis-server, the
//     versitygw S3 gateway and the Pebble ACME CA — started on free
//     loopback ports and stopped when the test ends (Redis, S3, Pebble),
//     and Redis's highly available shapes: a Redis Cluster created by
//     redis-cli (StartRedisCluster) and a primary, a replica and three
//     sentinels (StartRedisSentinel);
//   - the edged and edgectl binaries, built once per test process with
//     the flags `make build` uses and removed when it exits (Binaries, Main);
//   - polling for a condition with a deadline (Eventually, EventuallyNil);
//   - free loopback addresses (FreeAddr, FreePort);
//   - a throwaway certificate authority for TLS tests (NewCA).
//
// A missing service binary skips the test with a clear message, except
// when the environment variable CI is "true": there a missing service is a
// broken machine, and the test fails.
//
// Only tests import this package; node's conventions test checks that no
// production package does.
package testkit
