package node

import (
	"context"
	"log/slog"
)

// closers is a node's lifecycle in one place: New pushes the release of
// each thing right after opening it, so the stack always holds exactly
// what is open. A New that fails part way unwinds it before returning,
// and shutdown unwinds the same stack, last opened first released. The
// open order therefore also fixes the shutdown order, and New is written
// with that in mind (the proxy drains before the metrics listener goes,
// the cache closes before the origin pools its revalidations use, the
// raft store closes once everything that reads it has stopped).
//
// This is the shape of Caddy's provision/cleanup and of a defer stack,
// without a second list of the same things in the error paths.
type closers struct {
	stack []closer
}

type closer struct {
	what string
	// release frees the resource. ctx bounds the drains of the servers
	// (shutdown gives it the node's ShutdownGrace; a failed New, which
	// has nothing in flight, none); a release with its own bound says so.
	release func(ctx context.Context) error
}

// push records how to release what was just opened.
func (c *closers) push(what string, release func(ctx context.Context) error) {
	c.stack = append(c.stack, closer{what: what, release: release})
}

// unwind releases everything on the stack, most recent first, each once,
// and logs the failures: a release that fails must not keep the others
// from running.
func (c *closers) unwind(ctx context.Context, log *slog.Logger) {
	for i := len(c.stack) - 1; i >= 0; i-- {
		cl := c.stack[i]
		c.stack = c.stack[:i]
		if err := cl.release(ctx); err != nil {
			log.Warn("releasing "+cl.what, "err", err)
		}
	}
}
