package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload/tlstest"
)

// watchFiles calls changed once per poll that sees a file change, appear
// or go, and idle once per other poll.
func TestWatchFilesPollsModTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		a, b := filepath.Join(dir, "config.toml"), filepath.Join(dir, "tokens.toml")
		os.WriteFile(a, []byte("x"), 0o600)
		files := []string{a, b} // b does not exist yet
		var calls, idles atomic.Int32
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			watchFiles(ctx, time.Second, func() []string { return files }, func() { calls.Add(1) }, func() { idles.Add(1) })
		}()
		step := func(what string, want, wantIdle int32) {
			t.Helper()
			time.Sleep(time.Second)
			synctest.Wait()
			if got, idle := calls.Load(), idles.Load(); got != want || idle != wantIdle {
				t.Fatalf("after %s: %d reloads, %d idle polls; want %d, %d", what, got, idle, want, wantIdle)
			}
		}
		step("nothing", 0, 1)
		os.Chtimes(a, time.Time{}, time.Unix(1700000000, 0))
		step("a new mtime", 1, 1)
		step("nothing again", 1, 2)
		os.WriteFile(b, []byte("[mailboxes]\n"), 0o600)
		step("the token file appearing", 2, 2)
		os.WriteFile(b, []byte("[mailboxes]\n# longer\n"), 0o600)
		os.Chtimes(b, time.Time{}, time.Unix(1700000000, 0))
		step("a new size", 3, 2)
		os.Remove(a)
		step("the config file going", 4, 2)
		cancel()
		<-done
	})
}

// The guard's hook reads the token file and the live keys at prepare
// time, refuses a broken file without touching the running state, and
// never logs a token.
func TestGuardHookAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.toml")
	id := strings.Repeat("ab", 32)
	os.WriteFile(tokens, []byte("[mailboxes]\n"+id+" = [\"first-secret\"]\n"), 0o600)
	base := conf.Defaults()
	base.AuthMode, base.MailboxTokensFile = "per_mailbox", tokens
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	g, err := newGuard(base, log, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	hook := guardHook(g, base, log)

	next := base
	next.AuthMode = "disabled" // needs a restart: ignored by the hook
	next.RateLimitPostsPerMinute = 7
	os.WriteFile(tokens, []byte("[mailboxes]\n"+id+" = [\"second secret\"]\n"), 0o600)
	if _, err := hook(next); err == nil || strings.Contains(err.Error(), "second secret") {
		t.Fatalf("broken token file: %v; want an error without the token", err)
	}
	if g.Mode() != guard.PerMailbox {
		t.Fatal("the mode changed")
	}
	os.WriteFile(tokens, []byte("[mailboxes]\n"+id+" = [\"second-secret\"]\n"), 0o600)
	commit, err := hook(next)
	if err != nil {
		t.Fatal(err)
	}
	commit()
	if g.Mode() != guard.PerMailbox {
		t.Fatal("auth_mode was applied live; it needs a restart")
	}
	for _, e := range logs.All() {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, "secret") {
			t.Errorf("log line carries a token: %s", line)
		}
	}
}

// R5.6 through the real process: SIGHUP rotates the server tokens while a
// long-poll waits, and the long-poll still gets its message.
func TestProcessReloadRotatesTokensUnderLongPoll(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(file, []byte("auth_mode = \"server_wide\"\nauth_tokens = [\"old-token\"]\n"), 0o600)
	s := startServer(t, []string{"ZRC_CONFIG_PATH=" + file})
	do := func(method, token, query string, body io.Reader) *http.Response {
		t.Helper()
		r, _ := http.NewRequest(method, s.url+"/v1/mailbox/"+rid+query, body)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := do("GET", "", "?wait_ms=0", nil); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("no token: %d %q; want 401 Bearer", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	got := make(chan string, 1)
	go func() {
		resp := do("GET", "old-token", "?wait_ms=20000", nil)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	polltest.Until(t, "a long-poll waits", func() bool { return strings.Contains(metricsText(t, s), "zrc_rendezvous_waiting_long_polls 1") })

	os.WriteFile(file, []byte("auth_mode = \"server_wide\"\nauth_tokens = [\"new-token\"]\n"), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	polltest.Until(t, "the abuse controls are reloaded", func() bool { return strings.Contains(s.log(), `"msg":"abuse controls reloaded"`) })
	if resp := do("POST", "old-token", "", strings.NewReader("x")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("old token after the reload: %d; want 403", resp.StatusCode)
	}
	if resp := do("POST", "new-token", "", strings.NewReader("envelope")); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("new token: %d; want 202", resp.StatusCode)
	}
	if r := <-got; r != "200 envelope" {
		t.Fatalf("long-poll across the reload got %q; want 200 envelope", r)
	}
	if logs := s.log(); strings.Contains(logs, "old-token") || strings.Contains(logs, "new-token") {
		t.Fatalf("logs carry a token:\n%s", logs)
	}
}

// A mailbox token file that cannot be used stops the start with status 2,
// naming the key and never a token.
func TestProcessBadTokenFileExits2(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.toml")
	os.WriteFile(file, []byte("[mailboxes]\nnot-an-id = [\"secret-token\"]\n"), 0o600)
	cmd := exec.Command(binary, "--listen-port", "0", "--auth-mode", "per_mailbox", "--mailbox-tokens-file", file)
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v; want status 2\n%s", err, out)
	}
	if !strings.Contains(string(out), "mailbox_tokens_file") || strings.Contains(string(out), "secret-token") {
		t.Fatalf("output:\n%s\nwant the key named and no token", out)
	}
}

// --check-config refuses what the start refuses, with the same line (R7.7):
// a token the guard cannot use, the Redis store this build lacks, a token
// file that cannot be read, a state file that could not be written, a TLS
// pair that does not match.
func TestProcessCheckConfigRefusesWhatStartRefuses(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.toml")
	os.WriteFile(tokens, []byte("[mailboxes]\nnot-an-id = [\"secret-token\"]\n"), 0o600)
	a := tlstest.Write(t, dir, "a", time.Time{})
	b := tlstest.Write(t, dir, "b", time.Time{})
	tests := []struct {
		name string
		args []string
		want string // the last line of the output
	}{
		{"non-ASCII token", []string{"--auth-mode", "server_wide", "--auth-tokens", "pässwort"},
			"config: auth_tokens (flag --auth-tokens): entry 1 holds characters a Bearer token cannot carry (spaces, control or non-ASCII characters); must be a list of tokens, each plain (visible ASCII characters, no spaces) or sha256:<64 hex characters>"},
		{"waiting limit the guard cannot count", []string{"--max-waiting-per-source", "1073741825"},
			"config: max_waiting_per_source (flag --max-waiting-per-source): must be an integer of at least 1 and at most 1073741824, got 1073741825"},
		{"redis store with a state file", []string{"--store", "redis", "--redis-url", "redis://127.0.0.1:6379/0", "--state-file", filepath.Join(dir, "state.bin")},
			"config: state_file (flag --state-file): must be empty when store is redis (store from flag --store): Redis keeps the queued messages"},
		{"redis cluster on a database other than 0", []string{"--store", "redis", "--redis-url", "redis://127.0.0.1:6379/2", "--redis-mode", "cluster"},
			`config: redis_url (flag --redis-url): must name database 0 or none when redis_mode is cluster (redis_mode from flag --redis-mode), got database "2"`},
		{"token file", []string{"--auth-mode", "per_mailbox", "--mailbox-tokens-file", tokens},
			"mailbox_tokens_file " + tokens + ": [mailboxes] key 1 of 1 (sorted) is not a recipient id of 64 hex characters"},
		{"state_file directory missing", []string{"--state-file", filepath.Join(dir, "missing", "state.bin")},
			"config: state_file (flag --state-file): directory " + filepath.Join(dir, "missing") + " must exist and be writable, so the state can be written at shutdown: no such file or directory"},
		{"TLS pair", []string{"--tls-cert-path", a.CertPath, "--tls-key-path", b.KeyPath},
			"TLS pair tls_cert_path " + a.CertPath + ", tls_key_path " + b.KeyPath + ": tls: private key does not match public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, mode := range [][]string{{"--check-config"}, {"--listen-addr", "127.0.0.1", "--listen-port", "0"}} {
				out, err := exec.Command(binary, append(mode, tt.args...)...).CombinedOutput()
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
					t.Fatalf("%s: exit %v; want status 2\n%s", mode[0], err, out)
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if got := lines[len(lines)-1]; got != tt.want {
					t.Errorf("%s: last line\n%s\nwant\n%s", mode[0], got, tt.want)
				}
				if strings.Contains(string(out), "secret-token") || strings.Contains(string(out), "pässwort") {
					t.Errorf("%s: output carries a token:\n%s", mode[0], out)
				}
			}
		})
	}
}
