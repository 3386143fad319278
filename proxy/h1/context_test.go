package h1

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/edgeproxy/edge/scripts/testkit"
)

// TestRequestContextMadeOnDemand: a handler that never asks for Done gets
// a context that behaves as a cancelable one all the same: cancelled with
// errHandlerDone once the handler returns (seen through Err, Cause, Done
// and children made then), and cancelled with ErrClientGone when the
// client leaves while the handler only polls Err.
func TestRequestContextMadeOnDemand(t *testing.T) {
	ctxs := make(chan context.Context, 4)
	errs := make(chan error, 4)
	mux := http.NewServeMux()
	mux.HandleFunc("/untouched", func(w http.ResponseWriter, r *http.Request) {
		errs <- r.Context().Err()
		ctxs <- r.Context()
	})
	mux.HandleFunc("/child", func(w http.ResponseWriter, r *http.Request) {
		child, cancel := context.WithTimeout(r.Context(), time.Minute)
		t.Cleanup(cancel)
		errs <- child.Err()
		ctxs <- child
	})
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		reg := ctx.(interface {
			RegisterAfter(f func()) (uint64, bool)
			StopAfter(n uint64) bool
		})
		n, _ := reg.RegisterAfter(func() {}) // arms the watch, as the upstream client does
		reg.StopAfter(n)
		ctxs <- ctx
		deadline := time.Now().Add(3 * time.Second)
		for ctx.Err() == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		errs <- context.Cause(ctx)
	})
	ts := startH1(t, mux)

	done := func(t *testing.T, ctx context.Context, wantCause error) {
		t.Helper()
		select {
		case <-ctx.Done():
		case <-time.After(3 * time.Second):
			t.Fatal("Done not closed")
		}
		if !errors.Is(ctx.Err(), context.Canceled) || !errors.Is(context.Cause(ctx), wantCause) {
			t.Fatalf("Err %v, Cause %v; want Canceled, %v", ctx.Err(), context.Cause(ctx), wantCause)
		}
	}

	t.Run("cancelled when the handler returns", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/untouched"))
		c.read("GET")
		if err := <-errs; err != nil {
			t.Fatalf("Err while the handler ran: %v", err)
		}
		ctx := <-ctxs
		testkit.Eventually(t, 3*time.Second, "Err after the handler returned", func() bool { return ctx.Err() != nil })
		done(t, ctx, errHandlerDone)
		later, cancel := context.WithCancel(ctx)
		defer cancel()
		done(t, later, errHandlerDone)
	})
	t.Run("child made while the handler ran", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/child"))
		c.read("GET")
		if err := <-errs; err != nil {
			t.Fatalf("child Err while the handler ran: %v", err)
		}
		done(t, <-ctxs, errHandlerDone)
	})
	t.Run("client gone, seen through Err", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send(get("/poll"))
		ctx := <-ctxs
		waitWatching(t, ts)
		c.Close()
		if cause := <-errs; !errors.Is(cause, ErrClientGone) {
			t.Fatalf("cause %v, want ErrClientGone", cause)
		}
		done(t, ctx, ErrClientGone)
	})
}
