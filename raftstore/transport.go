package raftstore

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeproxy/edge/raftstore/peertls"
	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds how long an accepted raft connection may take to
// present its credential; a peer that connects and says nothing is cut.
const handshakeTimeout = 5 * time.Second

// streamLayer is raft's stream layer: mutual TLS 1.3 (peertls) over TCP,
// with an advertised address that may be a DNS name. hashicorp/raft's own
// TCP transport insists on an IP; a StatefulSet pod keeps its name across
// restarts but not its IP, so peers are stored by name and resolved on
// every dial.
//
// Accepted connections complete their handshake on a goroutine of their
// own before raft's NetworkTransport sees them: a peer without the
// cluster credential never reaches raft's decoder, so none of its bytes is
// read as an RPC, and a slow one cannot hold up the accept loop.
type streamLayer struct {
	ln        net.Listener
	advertise string
	creds     *peertls.Credentials
	logger    *slog.Logger

	conns    chan net.Conn
	done     chan struct{}
	once     sync.Once
	rejected atomic.Uint64
	// lastRefusalLog is when a refusal was last logged (Unix ns).
	lastRefusalLog atomic.Int64
}

func newStreamLayer(ln net.Listener, advertise string, creds *peertls.Credentials, logger *slog.Logger) *streamLayer {
	s := &streamLayer{
		ln:        ln,
		advertise: advertise,
		creds:     creds,
		logger:    logger,
		conns:     make(chan net.Conn),
		done:      make(chan struct{}),
	}
	go s.acceptLoop()
	return s
}

type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

func (s *streamLayer) Addr() net.Addr { return advertiseAddr(s.advertise) }

// Accept returns the next connection whose peer proved it holds the
// cluster credential.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *streamLayer) Close() error {
	s.once.Do(func() { close(s.done) })
	return s.ln.Close()
}

func (s *streamLayer) acceptLoop() {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A temporary failure (EMFILE): back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go s.handshake(c)
	}
}

func (s *streamLayer) handshake(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	tc := tls.Server(c, s.creds.ServerConfig())
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		n := s.rejected.Add(1)
		// One line a second at most: whoever floods the port must not
		// flood the logs too (the counter has every refusal).
		now := time.Now().UnixNano()
		if last := s.lastRefusalLog.Load(); now-last >= int64(time.Second) && s.lastRefusalLog.CompareAndSwap(last, now) {
			s.logger.Warn("raft peer refused: no valid cluster credential", "remote", c.RemoteAddr().String(), "err", err, "refused_total", n)
		}
		c.Close()
		return
	}
	select {
	case s.conns <- tc:
	case <-s.done:
		tc.Close()
	}
}

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := tls.Dialer{
		NetDialer: &net.Dialer{Timeout: timeout},
		Config:    s.creds.ClientConfig(string(address)),
	}
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*tls.Conn).NetConn().(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}

// guardedTransport is raft's NetworkTransport with one change: Close
// waits for heartbeats being handled. raft handles a heartbeat on the
// transport's connection goroutine, not its own, so raft.Shutdown does not
// wait for one already past its shutdown check; closing the log store
// under it made raft panic ("failed to save current term: database not
// open"). After stopHeartbeats, a heartbeat is refused instead.
type guardedTransport struct {
	*raft.NetworkTransport
	mu      sync.RWMutex
	stopped bool
}

var errShuttingDown = errors.New("raftstore: shutting down")

// SetHeartbeatHandler wraps raft's handler with the guard.
func (g *guardedTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		g.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	g.NetworkTransport.SetHeartbeatHandler(func(rpc raft.RPC) {
		g.mu.RLock()
		defer g.mu.RUnlock()
		if g.stopped {
			rpc.Respond(nil, errShuttingDown)
			return
		}
		cb(rpc)
	})
}

// stopHeartbeats returns once no heartbeat is being handled, and refuses
// every later one.
func (g *guardedTransport) stopHeartbeats() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
}
