// Package testsvc starts the real external services that Edge's tests run
// against — redis-server and the versitygw S3 gateway — on free loopback
// ports, and stops them when the test ends.
//
// A missing binary skips the test with a clear message, except when the
// environment variable CI is "true": there a missing service is a broken
// machine, and the test fails.
package testsvc
