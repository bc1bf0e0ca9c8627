// Package redistest starts real redis-server processes for tests: each on
// a free loopback port, in a directory of the test's own, stopped by PID
// when the test ends. Tests never use a Redis that happens to run on the
// machine.
//
// Without redis-server on PATH a test skips with one line naming the
// Debian package to install; under CI=true it fails instead, so that a CI
// machine cannot pass by skipping.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process started by a test.
type Server struct {
	port int
	dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd // nil while stopped
}

// Start starts redis-server on a free port with persistence off (--save ”
// --appendonly no); args come after those, so they can turn it on. The
// server is stopped when t ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing(t, "redis-server not found on PATH: install the Debian package redis-server to run the Redis store tests")
	}
	s := &Server{dir: t.TempDir(), args: args}
	var err error
	for range 5 {
		if s.port, err = freePort(); err != nil {
			continue
		}
		if err = s.start(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("starting redis-server: %v", err)
	return nil
}

// missing skips t for a tool that is not installed, or fails it under
// CI=true, so that a CI machine cannot pass by skipping.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartSentinel starts a Redis Sentinel on a free port that watches the
// master at masterAddr under name, with a quorum of quorum and a master
// declared down after 1 s, so that tests see a failover within seconds.
// It is stopped when t ends.
func StartSentinel(t testing.TB, name, masterAddr string, quorum int) *Server {
	t.Helper()
	host, port, _ := strings.Cut(masterAddr, ":")
	dir := t.TempDir()
	conf := dir + "/sentinel.conf" // Sentinel rewrites its config file: one of its own
	err := os.WriteFile(conf, []byte(fmt.Sprintf(
		"sentinel monitor %[1]s %[2]s %[3]s %[4]d\nsentinel down-after-milliseconds %[1]s 1000\nsentinel failover-timeout %[1]s 5000\n",
		name, host, port, quorum)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return Start(t, conf, "--sentinel")
}

// start runs the process and waits until it answers PING.
func (s *Server) start() error {
	a := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir, "--daemonize", "no", "--logfile", ""}
	args := s.args
	if len(args) > 0 && !strings.HasPrefix(args[0], "--") {
		a = append([]string{args[0]}, a...) // a config file comes first
		args = args[1:]
	}
	if !slices.Contains(args, "--sentinel") {
		a = append(a, "--save", "", "--appendonly", "no")
	}
	a = append(a, args...)
	cmd := exec.Command("redis-server", a...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited (%v): %s", err, out.String())
		default:
		}
		// NOAUTH: a server started with --requirepass answers, too.
		if reply, err := s.do("PING"); err == nil && (reply == "PONG" || strings.HasPrefix(reply, "NOAUTH")) {
			s.mu.Lock()
			s.cmd = cmd
			s.mu.Unlock()
			go func() { <-exited }() // reaped once it ends; Stop waits through waitGone
			return nil
		}
	}
	cmd.Process.Kill()
	<-exited
	return errors.New("redis-server did not answer PING within 10s")
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the redis:// URL of database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// PID is the running process's id; 0 while stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop ends the process (SIGTERM, which writes the AOF when it is on;
// SIGKILL after 5 s) and waits until it is gone. Stopping a stopped
// server does nothing.
func (s *Server) Stop() { s.end(syscall.SIGTERM) }

// Kill ends the process with SIGKILL, as a crash would.
func (s *Server) Kill() { s.end(syscall.SIGKILL) }

func (s *Server) end(sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	if !waitGone(cmd.Process.Pid, 5*time.Second) {
		cmd.Process.Kill()
		waitGone(cmd.Process.Pid, 5*time.Second)
	}
}

// waitGone waits until pid has exited and been reaped.
func waitGone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); errors.Is(err, os.ErrNotExist) {
			return true
		}
	}
	return false
}

// Restart stops the server if it runs and starts it again on the same
// port, in the same directory, with the same arguments: with the AOF on,
// it comes back with its data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("restarting redis-server: %v", err)
	}
}

// Do sends one command and returns its reply: a simple string, an error
// ("ERR …"), an integer or a bulk string as text; "(nil)" for a nil bulk
// string; an array's elements one per line.
func (s *Server) Do(t testing.TB, args ...string) string {
	t.Helper()
	reply, err := s.do(args...)
	if err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	return reply
}

func (s *Server) do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(c))
}

// readReply reads one RESP2 reply; an array's elements come one per line.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', '-', ':':
		return line[1:], nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		elems := make([]string, 0, max(n, 0))
		for range n {
			e, err := readReply(r)
			if err != nil {
				return "", err
			}
			elems = append(elems, e)
		}
		return strings.Join(elems, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}
