package testkit

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RedisServer is a redis-server child process on a fixed loopback port. It
// can be stopped and started again on the same port, to simulate an outage.
type RedisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	// conf, when set, is written to dir/redis.conf and passed first;
	// args follow the defaults (cluster and sentinel starters use them).
	conf string
	args []string

	mu   sync.Mutex
	proc *proc
}

// Redis starts a redis-server without persistence on a free loopback port
// and returns its address and a function that stops it early (the server
// is stopped in t.Cleanup in any case).
func Redis(t testing.TB) (addr string, stop func()) {
	t.Helper()
	s := StartRedis(t)
	return s.Addr(), s.Stop
}

// StartRedis starts a redis-server without persistence on a free loopback
// port, waits until it answers PING, and stops it in t.Cleanup.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	return startRedis(t, "", nil)
}

// startRedis starts redis-server with an optional config file body
// (port, bind and dir come after it, so it must not set them) and extra
// arguments.
func startRedis(t testing.TB, conf string, args []string) *RedisServer {
	t.Helper()
	s := &RedisServer{t: t, bin: redisServerBin(t), dir: t.TempDir(), port: FreePort(t), conf: conf, args: args}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func redisServerBin(t testing.TB) string {
	t.Helper()
	bin, ok := lookPath("redis-server", "/usr/bin", "/usr/local/bin")
	if !ok {
		missing(t, "redis-server", "install the Debian package redis-server")
	}
	return bin
}

// Addr is the server's host:port.
func (s *RedisServer) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Stop kills the server; it is a no-op when the server is not running.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
}

// Start starts the server on its port (again) and waits until it answers
// PING. It is a no-op when the server is running.
func (s *RedisServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return
	}
	// On the first start, a port taken meanwhile by another test process
	// (the port was only reserved, not held) is retried with a new one; a
	// restart keeps its port because tests reconnect to it.
	for attempt := 0; ; attempt++ {
		err := s.startOnce()
		if err == nil {
			return
		}
		if s.proc != nil || attempt == 2 || !strings.Contains(err.Error(), "in use") {
			s.t.Fatal(err)
		}
		s.port = FreePort(s.t)
	}
}

func (s *RedisServer) startOnce() error {
	var args []string
	if s.conf != "" {
		conf := filepath.Join(s.dir, "redis.conf")
		if _, err := os.Stat(conf); err != nil { // a restart keeps what the server rewrote
			if err := os.WriteFile(conf, []byte(s.conf), 0o600); err != nil {
				return fmt.Errorf("testkit: redis config: %w", err)
			}
		}
		args = append(args, conf)
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	p, err := startProc(cmd)
	if err != nil {
		return fmt.Errorf("testkit: start redis-server: %w", err)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		if p.exited() {
			return fmt.Errorf("testkit: redis-server on %s exited: %s", s.Addr(), p.out.String())
		}
		if err := ping(s.Addr()); err == nil {
			s.proc = p
			return nil
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("testkit: redis-server on %s did not answer PING within %s: %s", s.Addr(), startTimeout, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ping sends a RESP PING and expects +PONG.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}
