package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// watchFlags are --watch and --interval, for the reads worth keeping an
// eye on during an incident or a rollout (cluster status, cert get,
// tenant get).
type watchFlags struct {
	on       bool
	interval time.Duration
}

func (w *watchFlags) register(c *cobra.Command) {
	c.Flags().BoolVarP(&w.on, "watch", "w", false, "keep asking every --interval and print again when the answer changes (-o json: one compact document a line); Ctrl-C ends it with exit 0; --timeout applies to each ask")
	c.Flags().DurationVar(&w.interval, "interval", 2*time.Second, "with --watch, how often to ask")
}

// run calls show once, or with --watch until ctx ends or Ctrl-C. show
// fetches and prints through g.print. There is no server stream to follow:
// polling a leader-confirmed read every 2s costs the cluster one
// heartbeat round, and works against every server version.
//
// While watching, an answer is printed only when it differs from the last
// one printed. A failed ask is reported on stderr (once, until the
// failure changes) and the watch goes on: losing the leader or a node is
// what a watch during an incident is for. Only a first ask that prints
// nothing ends it with its error (a tenant that does not exist, a typo in
// --server).
func (w *watchFlags) run(ctx context.Context, g *globals, show func(ctx context.Context) error) error {
	if !w.on {
		return show(ctx)
	}
	if w.interval <= 0 {
		return usagef("--interval must be positive")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := g.stdout
	defer func() { g.stdout = out }()
	var last []byte
	lastErr := ""
	first := true
	for {
		var buf bytes.Buffer
		g.stdout = &buf
		err := show(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && first && buf.Len() == 0 {
			return err
		}
		first = false
		if buf.Len() > 0 {
			doc := buf.Bytes()
			if g.output == "json" {
				// One document a line, for `| jq -c` and line readers.
				var c bytes.Buffer
				if json.Compact(&c, doc) == nil {
					doc = append(c.Bytes(), '\n')
				}
			}
			// A reprint after a failure shows the state again even if it
			// did not change: the failure was the last thing on screen.
			if !bytes.Equal(doc, last) || lastErr != "" && err == nil {
				if err := w.printChange(out, g.output, doc, last == nil); err != nil {
					return err
				}
				last = append(last[:0], doc...)
			}
		}
		switch {
		case err != nil && err.Error() != lastErr:
			fmt.Fprintln(g.stderr, "edgectl: "+oneLine(err.Error()))
			lastErr = err.Error()
		case err == nil:
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(w.interval):
		}
	}
}

// printChange writes one answer: JSON as it is (a line), YAML as one
// document of a stream, a table under the time it was seen.
func (w *watchFlags) printChange(out io.Writer, format string, doc []byte, first bool) error {
	var err error
	switch format {
	case "json":
		_, err = out.Write(doc)
	case "yaml":
		_, err = fmt.Fprintf(out, "---\n%s", doc)
	default:
		if !first {
			fmt.Fprintln(out)
		}
		_, err = fmt.Fprintf(out, "# %s\n%s", time.Now().UTC().Format(time.RFC3339), doc)
	}
	return err
}
