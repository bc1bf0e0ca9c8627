package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
)

// binary is the server built once for the tests that run it as a real
// process; baselineBinary is cmd/zrc-baseline, the yardstick for memory.
var binary, baselineBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zrc-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "zrc-rendezvous")
	baselineBinary = filepath.Join(dir, "zrc-baseline")
	for out, pkg := range map[string]string{binary: ".", baselineBinary: "../zrc-baseline"} {
		// Built as releases are (Taskfile.yml, packaging/Containerfile):
		// memory budgets such as R10.2 are for the static binary that ships,
		// which maps no libc.
		build := exec.Command("go", "build", "-o", out, pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			panic("building " + pkg + ": " + err.Error())
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running server process.
type server struct {
	cmd      *exec.Cmd
	url      string
	baseline bool // cmd/zrc-baseline: no metrics, no log lines
	started  time.Time
	ready    time.Duration // from exec to the "ready" log line

	mu   sync.Mutex
	logs bytes.Buffer // stderr, all of it
	done chan struct{}
}

// loadFlags lift the per-source limits out of the way: these tests send
// thousands of requests, all from 127.0.0.1. The token buckets and the
// waiting count still run on every mailbox request, as with the defaults.
var loadFlags = []string{
	"--rate-limit-posts-per-minute", "100000000", "--rate-limit-gets-per-minute", "100000000",
	"--max-waiting-per-source", "1000000", "--max-connections-per-source", "1000000",
}

// startServer runs the binary on a free port with loadFlags and waits for
// its "ready" line; args come after, so they can override loadFlags.
func startServer(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	args = append(append([]string{"--listen-addr", "127.0.0.1", "--listen-port", "0"}, loadFlags...), args...)
	s := &server{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), env...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs.WriteString(line + "\n")
			s.mu.Unlock()
			var ev struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Msg == "ready" {
				addr <- ev.Addr
			}
		}
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	select {
	case a := <-addr:
		s.ready = time.Since(s.started)
		s.url = "http://" + a
	case <-s.done:
		t.Fatalf("server exited before ready:\n%s", s.log())
	case <-time.After(10 * time.Second):
		t.Fatalf("server not ready after 10s:\n%s", s.log())
	}
	return s
}

func (s *server) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// stop sends SIGTERM and returns the exit code once the process ended.
func (s *server) stop(t *testing.T) int {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.done
	err := s.cmd.Wait()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

const rid = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func TestProcessServesPostAndGet(t *testing.T) {
	s := startServer(t, nil)
	resp, err := http.Post(s.url+"/v1/mailbox/"+rid, "", strings.NewReader("envelope"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d; want 202", resp.StatusCode)
	}
	resp, err = http.Get(s.url + "/v1/mailbox/" + strings.ToUpper(rid) + "?wait_ms=0")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "envelope" {
		t.Fatalf("GET: %d %q; want 200 envelope", resp.StatusCode, body)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit status %d; want 0", code)
	}
	logs := s.log()
	if strings.Contains(logs, "envelope") || strings.Contains(logs, rid[:16]) {
		t.Fatalf("logs carry a body or a recipient id:\n%s", logs)
	}
	for _, want := range []string{`"msg":"stopped"`, `"posted":1`, `"delivered":1`, `"uptime"`} {
		if !strings.Contains(logs, want) {
			t.Fatalf("final log lacks %s:\n%s", want, logs)
		}
	}
}

// R9.1–R9.5: SIGTERM answers a waiting long-poll 503 at once and exits 0.
func TestProcessShutdownWakesLongPolls(t *testing.T) {
	s := startServer(t, nil)
	type result struct {
		status     int
		retryAfter string
		body       string
		took       time.Duration
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get(s.url + "/v1/mailbox/" + rid + "?wait_ms=60000")
		if err != nil {
			got <- result{status: -1, body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{resp.StatusCode, resp.Header.Get("Retry-After"), string(b), 0}
	}()
	polltest.Until(t, "a long-poll waits", func() bool { return strings.Contains(metricsText(t, s), "zrc_rendezvous_waiting_long_polls 1") })
	start := time.Now()
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit status %d; want 0", code)
	}
	r := <-got
	r.took = time.Since(start)
	if r.status != http.StatusServiceUnavailable || r.retryAfter != "1" ||
		!strings.Contains(r.body, `"error":"shutting_down"`) {
		t.Fatalf("waiting GET got %d Retry-After %q %s; want 503 shutting_down Retry-After 1", r.status, r.retryAfter, r.body)
	}
	if r.took > 5*time.Second {
		t.Fatalf("shutdown took %v with a parked long-poll; want at once", r.took)
	}
}

// R10.7: ready to serve well within a second.
func TestProcessStartsFast(t *testing.T) {
	s := startServer(t, nil)
	resp, err := http.Get(s.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	took := time.Since(s.started)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/health: %d", resp.StatusCode)
	}
	t.Logf("exec to first 200 on /health: %v (ready line after %v)", took, s.ready)
	// R10.7 asks for 1 s; issue 5's budget is 100 ms (measured: 7-13 ms).
	if took > 100*time.Millisecond {
		t.Fatalf("first 200 after %v; want under 100 ms", took)
	}
}

// State file: queued messages survive a planned restart, in order and with
// their sequences, and the file is consumed at start.
func TestProcessStateFileSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.bin")
	s := startServer(t, nil, "--state-file", path)
	var seqs []string
	for _, body := range []string{"one", "two"} {
		resp, err := http.Post(s.url+"/v1/mailbox/"+rid, "", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		seqs = append(seqs, resp.Header.Get("X-Message-Sequence"))
	}
	s.stop(t)
	if !strings.Contains(s.log(), `"msg":"wrote state file"`) {
		t.Fatalf("no state file written:\n%s", s.log())
	}
	// A start that fails after reading the file (a token file that is not
	// there, a port in use) must leave it as it was for the next start:
	// the stops of what had started do not write it (Z12).
	saved, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())
	for _, args := range [][]string{
		{"--listen-port", "0", "--auth-mode", "per_mailbox", "--mailbox-tokens-file", filepath.Join(t.TempDir(), "missing.toml")},
		{"--listen-port", busyPort},
	} {
		failed := exec.Command(binary, append([]string{"--listen-addr", "127.0.0.1", "--state-file", path}, args...)...)
		out, err := failed.CombinedOutput()
		if err == nil {
			t.Fatalf("start with %q succeeded:\n%s", args, out)
		}
		if strings.Contains(string(out), `"msg":"wrote state file"`) {
			t.Errorf("a failed start with %q wrote the state file:\n%s", args, out)
		}
		if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, saved) {
			t.Fatalf("a failed start with %q consumed or rewrote the state file: %v", args, err)
		}
	}
	s = startServer(t, nil, "--state-file", path)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("state file still there after start: %v", err)
	}
	for i, want := range []string{"one", "two"} {
		resp, err := http.Get(s.url + "/v1/mailbox/" + rid + "?wait_ms=0")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want || resp.Header.Get("X-Message-Sequence") != seqs[i] {
			t.Fatalf("after restart got %q seq %s; want %q seq %s", b, resp.Header.Get("X-Message-Sequence"), want, seqs[i])
		}
	}
}

func TestProcessConfigErrorsExit2(t *testing.T) {
	cmd := exec.Command(binary, "--listen-port", "70000", "--tls-cert-path", "/x.pem")
	cmd.Env = append(os.Environ(), "ZRC_MAX_QUEUE_LENGTH=zero")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v; want status 2\n%s", err, out)
	}
	for _, want := range []string{"listen_port", "flag --listen-port", "max_queue_length", "env ZRC_MAX_QUEUE_LENGTH", "tls_key_path"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestProcessVersionAndCheckConfig(t *testing.T) {
	out, err := exec.Command(binary, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "zrc-rendezvous dev (unknown, go") {
		t.Fatalf("--version: %q %v", out, err)
	}
	cmd := exec.Command(binary, "--check-config", "--auth-tokens", "s3cret-token")
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("--check-config: %v", err)
	}
	if strings.Contains(string(out), "s3cret-token") || !strings.Contains(string(out), "listen_port = 8080") {
		t.Fatalf("--check-config printed:\n%s", out)
	}
}

func metricsText(t *testing.T, s *server) string {
	t.Helper()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// The metrics listener has no authentication; its connections are capped
// (metricsMaxConnections) the way max_connections caps the main
// listener's: one past the cap is answered 503 overloaded and closed, and
// a place freed is taken again.
func TestProcessMetricsListenerIsCapped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	startServer(t, nil, "--metrics-listen", addr)
	held := make([]net.Conn, metricsMaxConnections)
	for i := range held {
		if held[i], err = net.Dial("tcp", addr); err != nil {
			t.Fatal(err)
		}
		defer held[i].Close()
	}
	scrape := func() (*http.Response, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n"); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp, err
	}
	// The server counts a connection once it has accepted it: wait for
	// all the held ones to count before the one past the cap.
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); ; {
		if resp, err = scrape(); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || time.Now().After(deadline) {
			break
		}
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"error":"overloaded"`) {
		t.Fatalf("scrape past the cap: %d %.200q; want 503 overloaded", resp.StatusCode, body)
	}
	held[0].Close()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if resp, err = scrape(); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrape after a connection closed: %d; want 200", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// max_connections_per_source: the server's own listener counts each
// source's connections from accept on. 127.0.0.2 is a second source (Linux
// routes all of 127/8 to lo).
func TestProcessConnectionsPerSource(t *testing.T) {
	s := startServer(t, nil, "--max-connections-per-source", "2")
	addr := strings.TrimPrefix(s.url, "http://")
	health := func(local string) (int, string) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for i := range 2 {
		if st, body := health("127.0.0.1"); st != 200 {
			t.Fatalf("connection %d: %d %s; want 200", i+1, st, body)
		}
	}
	want := `{"error":"overloaded","message":"too many open connections from this source"}`
	if st, body := health("127.0.0.1"); st != 503 || body != want {
		t.Fatalf("third connection of 127.0.0.1: %d %s; want 503 %s", st, body, want)
	}
	if st, body := health("127.0.0.2"); st != 200 {
		t.Fatalf("127.0.0.2 while 127.0.0.1 is at its cap: %d %s; want 200", st, body)
	}
}
