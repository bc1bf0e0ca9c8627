package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// healthEpoch is /health's "epoch" (Z9).
func healthEpoch(t *testing.T, s *server) string {
	t.Helper()
	resp, err := http.Get(s.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var hb struct{ Epoch string }
	if err := json.NewDecoder(resp.Body).Decode(&hb); err != nil {
		t.Fatal(err)
	}
	return hb.Epoch
}

// postEpoch posts body to rid, fails t unless it is accepted, and returns
// the answer's X-Mailbox-Epoch.
func postEpoch(t *testing.T, s *server, body []byte) string {
	t.Helper()
	resp, err := http.Post(s.url+"/v1/mailbox/"+rid, "", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d; want 202", resp.StatusCode)
	}
	return resp.Header.Get("X-Mailbox-Epoch")
}

// Z9, Z12: the epoch survives a planned restart through the state file
// and changes when the state is lost (SIGKILL: no file written).
func TestProcessEpochFollowsTheState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.bin")
	s := startServer(t, nil, "--state-file", path)
	epoch := healthEpoch(t, s)
	if len(epoch) < 16 || len(epoch) > 64 {
		t.Fatalf("epoch %q; want 16 to 64 characters", epoch)
	}
	if got := postEpoch(t, s, []byte("one")); got != epoch {
		t.Fatalf("X-Mailbox-Epoch %q; /health says %q", got, epoch)
	}
	s.stop(t)

	s = startServer(t, nil, "--state-file", path)
	if got := postEpoch(t, s, []byte("two")); got != epoch {
		t.Fatalf("after a restart from the state file: epoch %q; want %q kept", got, epoch)
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()

	s = startServer(t, nil, "--state-file", path)
	if got := healthEpoch(t, s); got == epoch || len(got) < 16 {
		t.Fatalf("after SIGKILL: epoch %q; want a new one, not %q", got, epoch)
	}
}

// Z12: a state file that cannot be restored never stops the server: it is
// moved aside, an error line says why, and the server starts empty with a
// new epoch.
func TestProcessBadStateFileIsMovedAside(t *testing.T) {
	for name, data := range map[string]string{
		"foreign":         "this is not a state file, but someone's notes\n",
		"truncated":       "ZRCSTATE2\n\x16abc",
		"unknown version": "ZRCSTATE7\n" + strings.Repeat("\x00", 64),
		"empty":           "",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.bin")
			if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			s := startServer(t, nil, "--state-file", path)
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("the bad file is still at %s: %v", path, err)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("files moved aside: %v; want one %s.corrupt-<time>", aside, path)
			}
			stamp := strings.TrimPrefix(aside[0], path+".corrupt-")
			if _, err := time.Parse("20060102T150405Z", stamp); err != nil {
				t.Fatalf("moved aside as %s: %v; want a UTC yyyymmddThhmmssZ suffix", aside[0], err)
			}
			if got, _ := os.ReadFile(aside[0]); string(got) != data {
				t.Fatalf("the file moved aside holds %q; want the original %q", got, data)
			}
			var line struct {
				Level, Error string
				MovedTo      string `json:"moved_to"`
			}
			for _, l := range strings.Split(s.log(), "\n") {
				if strings.Contains(l, "moved aside") {
					json.Unmarshal([]byte(l), &line)
				}
			}
			if line.Level != "error" || line.MovedTo != aside[0] || !strings.Contains(line.Error, "state file is corrupt") {
				t.Fatalf("log line %+v; want an error naming the file moved aside and why:\n%s", line, s.log())
			}
			if healthEpoch(t, s) == "" {
				t.Fatal("no epoch")
			}
			// The server works, and the next shutdown writes a good file.
			postEpoch(t, s, []byte("after"))
			if code := s.stop(t); code != 0 {
				t.Fatalf("exit status %d; want 0", code)
			}
			if got, _ := os.ReadFile(path); !bytes.HasPrefix(got, []byte("ZRCSTATE2\n")) {
				t.Fatalf("state file after shutdown starts %.12q; want a version 2 file", got)
			}
		})
	}
}

// Z12: a state file that could not be written at shutdown is refused at
// start, exit status 2, naming the key.
func TestProcessUnwritableStateDirExits2(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"parent is a file":    filepath.Join(file, "state.bin"),
		"parent is missing":   filepath.Join(dir, "missing", "state.bin"),
		"path is a directory": dir,
	} {
		t.Run(name, func(t *testing.T) {
			// A server that starts anyway is stopped by the deadline, and
			// the test fails rather than waits.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, "--listen-addr", "127.0.0.1", "--listen-port", "0", "--state-file", path)
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v; want status 2\n%s", err, out)
			}
			if want := "config: state_file (flag --state-file): "; !strings.Contains(string(out), want) {
				t.Fatalf("output lacks %q:\n%s", want, out)
			}
			if strings.Contains(string(out), `"msg":"ready"`) {
				t.Fatalf("the server got ready:\n%s", out)
			}
		})
	}
}

// Z12: a GET whose answer is still being written when the drain limit
// ends (its client reads nothing) has its write fail when the server
// closes the connection; the message it puts back must be in the state
// file, not lost to the supervisor's close.
func TestProcessShutdownKeepsMessagePutBackByFailedWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.bin")
	const size = 8 << 20 // far more than the socket buffers hold
	args := []string{"--state-file", path, "--shutdown-timeout-seconds", "0",
		"--max-message-size", "16777216", "--memory-limit-mb", "64"}
	s := startServer(t, nil, args...)
	big := bytes.Repeat([]byte("z"), size)
	postEpoch(t, s, big)
	c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(c, "GET /v1/mailbox/"+rid+"?wait_ms=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	// The answer has begun once its headers arrive; the client then reads
	// nothing more, and the server's write blocks.
	var head [12]byte
	if _, err := io.ReadFull(c, head[:]); err != nil || string(head[:]) != "HTTP/1.1 200" {
		t.Fatalf("answer began %q, %v; want HTTP/1.1 200", head, err)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit status %d; want 0", code)
	}
	if logs := s.log(); strings.Contains(logs, "message lost") || !strings.Contains(logs, `"messages":1`) {
		t.Fatalf("the message put back is not in the state file:\n%s", logs)
	}
	c.Close()
	s = startServer(t, nil, args...)
	resp, err := http.Get(s.url + "/v1/mailbox/" + rid + "?wait_ms=0")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, big) {
		t.Fatalf("after restart: %d with %d bytes; want 200 with the %d-byte message", resp.StatusCode, len(got), size)
	}
}
