package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor"
)

// newServer serves the real handler and supervisor over loopback, with
// a guard in auth mode if mode is not Disabled.
func newServer(t *testing.T, mode guard.Mode, tokens ...string) string {
	t.Helper()
	set := metrics.NewSet()
	sup := supervisor.New(supervisor.Options{MaxQueueLength: 100, TTL: 5 * time.Minute, IdleTimeout: time.Hour,
		EvictionInterval: time.Hour, MaxMailboxes: 1000, MemoryLimit: 16 << 20, Metrics: set})
	g, err := guard.New(guard.Options{PostsPerWindow: 100000, GetsPerWindow: 100000, Window: time.Minute,
		IPv6Prefix: 64, MaxSources: 100, MaxWaitingPerSource: 1000, Mode: mode, ServerTokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Deps{Mailboxes: sup, Guard: g, Metrics: set, Options: httpapi.Options{
		MaxMessageSize: 4096, LongPollDefault: time.Second, LongPollMax: 10 * time.Second,
		ServeMetrics: true}}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		sup.Close()
	})
	return srv.URL
}

// result is one in-process run of a subcommand.
type result struct {
	stdout, stderr string
	err            error
}

// run runs subcommand name with args; ZRC_URL is url.
func run(t *testing.T, ctx context.Context, url, stdin, name string, args ...string) result {
	t.Helper()
	return runEnv(t, ctx, Env{Stdin: strings.NewReader(stdin), Getenv: getenv(map[string]string{"ZRC_URL": url})}, name, args...)
}

func runEnv(t *testing.T, ctx context.Context, env Env, name string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	if env.Stdout == nil {
		env.Stdout = &out
	}
	env.Stderr = &errOut
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	cmd, ok := Commands[name]
	if !ok {
		t.Fatalf("no subcommand %q", name)
	}
	err := cmd.Run(ctx, env, args)
	return result{out.String(), errOut.String(), err}
}

func getenv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func rid(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := errors.AsType[*ExitError](err); ok {
		return e.Code
	}
	return 1
}

func TestPostAndGet(t *testing.T) {
	url := newServer(t, guard.Disabled)
	ctx := context.Background()
	id := rid("cli")

	r := run(t, ctx, url, "from stdin\x00\xff", "post", id)
	if r.err != nil || !strings.HasPrefix(r.stderr, "sequence=") || !strings.Contains(r.stderr, "queue_length=1") || r.stdout != "" {
		t.Fatalf("post from stdin: %+v; want sequence and queue_length 1 on stderr", r)
	}
	file := filepath.Join(t.TempDir(), "envelope.bin")
	if err := os.WriteFile(file, []byte("from a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Flags may follow the positional arguments.
	if r := run(t, ctx, "http://127.0.0.1:1", "", "post", id, file, "--url", url); r.err != nil || !strings.Contains(r.stderr, "queue_length=2") {
		t.Fatalf("post from a file: %+v", r)
	}

	r = run(t, ctx, url, "", "get", strings.ToUpper(id), "--wait", "0")
	if r.err != nil || r.stdout != "from stdin\x00\xff" || !strings.Contains(r.stderr, "queue_length=1") {
		t.Fatalf("get: %+v; want the first body raw on stdout", r)
	}
	if r = run(t, ctx, url, "", "get", "--wait=0s", id); r.err != nil || r.stdout != "from a file" {
		t.Fatalf("second get: %+v", r)
	}
	r = run(t, ctx, url, "", "get", id, "--wait", "50ms")
	if exitCode(r.err) != 3 || r.stdout != "" {
		t.Fatalf("get on an empty mailbox: %+v, exit %d; want exit 3 and nothing on stdout", r, exitCode(r.err))
	}

	r = run(t, ctx, url, "", "post", id)
	if r.err == nil || !strings.Contains(r.err.Error(), "empty_message") {
		t.Fatalf("post of nothing: %v; want the server's empty_message", r.err)
	}
}

// syncBuffer is a Buffer that tells when it holds n bytes.
type syncBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	n    int
	full chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	if s.b.Len() >= s.n && s.full != nil {
		close(s.full)
		s.full = nil
	}
	return len(p), nil
}

func TestGetFollow(t *testing.T) {
	url := newServer(t, guard.Disabled)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id := rid("follow")
	full := make(chan struct{})
	out := &syncBuffer{n: len("onetwothree"), full: full}
	done := make(chan result, 1)
	go func() {
		done <- runEnv(t, ctx, Env{Stdout: out, Getenv: getenv(map[string]string{"ZRC_URL": url})},
			"get", id, "--follow", "--wait", "100ms")
	}()
	for _, body := range []string{"one", "two", "three"} {
		if r := run(t, context.Background(), url, body, "post", id); r.err != nil {
			t.Fatal(r.err)
		}
	}
	select {
	case <-full:
	case <-time.After(10 * time.Second):
		t.Fatal("--follow did not write the three bodies within 10s")
	}
	cancel()
	r := <-done
	if r.err != nil || out.b.String() != "onetwothree" || strings.Count(r.stderr, "sequence=") != 3 {
		t.Fatalf("get --follow: %+v, stdout %q; want the three bodies in order and a nil error on interrupt", r, out.b.String())
	}
}

func TestKeygenAndSignedGet(t *testing.T) {
	r := run(t, context.Background(), "", "", "keygen")
	if r.err != nil {
		t.Fatal(r.err)
	}
	fields := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(r.stdout), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("keygen line %q; want name and value", line)
		}
		fields[f[0]] = f[1]
	}
	pub, _ := hex.DecodeString(fields["public_key"])
	sum := sha256.Sum256(pub)
	if len(pub) != ed25519.PublicKeySize || fields["recipient_id"] != hex.EncodeToString(sum[:]) || len(fields["private_key"]) != 128 {
		t.Fatalf("keygen printed %v; want a 64-byte private key, a public key and its SHA-256", fields)
	}
	key, err := parseKey([]byte(r.stdout))
	if err != nil || !bytes.Equal(key.Public().(ed25519.PublicKey), pub) {
		t.Fatalf("keygen's output read back: %v; want the same key", err)
	}

	url := newServer(t, guard.Signature)
	ctx := context.Background()
	keyFile := filepath.Join(t.TempDir(), "me.key")
	r = run(t, ctx, url, "", "keygen", "--out", keyFile)
	if r.err != nil || strings.Contains(r.stdout, "private_key") || !strings.Contains(r.stdout, "recipient_id") {
		t.Fatalf("keygen --out: %+v; want only the public lines on stdout", r)
	}
	if fi, err := os.Stat(keyFile); err != nil || (fi.Mode().Perm()&0o077 != 0 && os.PathSeparator == '/') {
		t.Fatalf("key file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if r := run(t, ctx, url, "", "keygen", "--out", keyFile); r.err == nil {
		t.Fatal("keygen --out overwrote an existing file")
	}
	id := strings.Fields(strings.Split(r.stdout, "\n")[1])[1]
	if r := run(t, ctx, url, "for the key holder", "post", id); r.err != nil {
		t.Fatal(r.err)
	}
	if r := run(t, ctx, url, "", "get", id, "--wait", "0"); exitCode(r.err) != 1 || !strings.Contains(r.err.Error(), "unauthorized") {
		t.Fatalf("unsigned get: %v; want 401 unauthorized", r.err)
	}
	r = run(t, ctx, url, "", "get", "--key-file", keyFile, "--wait", "0")
	if r.err != nil || r.stdout != "for the key holder" {
		t.Fatalf("signed get of the key's own mailbox: %+v", r)
	}
}

func TestBearerToken(t *testing.T) {
	url := newServer(t, guard.ServerWide, "s3cret")
	ctx := context.Background()
	if r := run(t, ctx, url, "x", "post", rid("t")); r.err == nil || !strings.Contains(r.err.Error(), "unauthorized") {
		t.Fatalf("post without the token: %v; want unauthorized", r.err)
	}
	if r := run(t, ctx, url, "x", "post", rid("t"), "--token", "s3cret"); r.err != nil {
		t.Fatal(r.err)
	}
	env := Env{Getenv: getenv(map[string]string{"ZRC_URL": url, "ZRC_TOKEN": "s3cret"})}
	if r := runEnv(t, ctx, env, "get", rid("t"), "--wait", "0"); r.err != nil || r.stdout != "x" {
		t.Fatalf("get with $ZRC_TOKEN: %+v", r)
	}
}

func TestParseKey(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	want := ed25519.NewKeyFromSeed(seed)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	mismatched := append(append([]byte{}, want[:32]...), other[32:]...)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"seed", hex.EncodeToString(seed) + "\n", true},
		{"64-byte key", hex.EncodeToString(want), true},
		{"keygen output", "private_key  " + hex.EncodeToString(want) + "\npublic_key   aa\nrecipient_id bb\n", true},
		{"public half does not match", hex.EncodeToString(mismatched), false},
		{"wrong length", "abcd", false},
		{"not hex", "zz", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := parseKey([]byte(tt.in))
			if tt.ok && (err != nil || !bytes.Equal(key, want)) {
				t.Fatalf("got %x, %v; want the key", key, err)
			}
			if !tt.ok && err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		cmd  string
		args []string
		code int
	}{
		{"post without an id", "post", nil, 2},
		{"post with two files", "post", []string{rid("a"), "f1", "f2"}, 2},
		{"get with two ids", "get", []string{rid("a"), rid("b")}, 2},
		{"get without an id or key", "get", nil, 2},
		{"negative wait", "get", []string{rid("a"), "--wait", "-1s"}, 2},
		{"unknown flag", "get", []string{"--nope"}, 2},
		{"keygen with an argument", "keygen", []string{"x"}, 2},
		{"loadtest with a bad setting", "loadtest", []string{"--mailboxes", "0"}, 2},
		{"loadtest with a bad source address", "loadtest", []string{"--source-addrs", "localhost"}, 2},
		{"help flag", "post", []string{"-h"}, 0},
		{"help", "help", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, ctx, "http://127.0.0.1:1", "", tt.cmd, tt.args...)
			if got := exitCode(r.err); got != tt.code {
				t.Fatalf("exit %d (%v); want %d", got, r.err, tt.code)
			}
		})
	}
	r := run(t, ctx, "", "", "help")
	for name := range Commands {
		if !strings.Contains(r.stdout, name) {
			t.Fatalf("help does not list %s:\n%s", name, r.stdout)
		}
	}
}

func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		wait time.Duration
	}{
		{[]string{"a", "--wait", "5s", "b"}, []string{"a", "b"}, 5 * time.Second},
		{[]string{"--wait=2s", "a"}, []string{"a"}, 2 * time.Second},
		{[]string{"a", "--", "--wait", "b"}, []string{"a", "--wait", "b"}, 0},
		{[]string{"-", "--wait", "1s"}, []string{"-"}, time.Second},
	}
	for _, tt := range tests {
		env := Env{Stderr: &bytes.Buffer{}}
		fs := newFlagSet(env, "x", "x", "x")
		wait := fs.Duration("wait", 0, "")
		pos, err := parse(fs, tt.args)
		if err != nil || !slices.Equal(pos, tt.pos) || *wait != tt.wait {
			t.Fatalf("parse(%q) = %q, wait %v, %v; want %q, wait %v", tt.args, pos, *wait, err, tt.pos, tt.wait)
		}
	}
}

func TestSourceAddrs(t *testing.T) {
	got, err := sourceAddrs("3")
	if err != nil || !slices.Equal(got, []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}) {
		t.Fatalf("count 3: %v, %v", got, err)
	}
	got, err = sourceAddrs("127.0.0.5, ::1")
	if err != nil || !slices.Equal(got, []string{"127.0.0.5", "::1"}) {
		t.Fatalf("list: %v, %v", got, err)
	}
	for _, bad := range []string{"0", "255", "127.0.0.1,host"} {
		if _, err := sourceAddrs(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestLoadtestCommand(t *testing.T) {
	url := newServer(t, guard.Disabled)
	ctx := context.Background()
	html := filepath.Join(t.TempDir(), "report.html")
	args := []string{"--mailboxes", "3", "--pollers", "2", "--posters", "2", "--rate", "100", "--size", "128",
		"--duration", "500ms", "--warmup", "100ms", "--drain", "5s", "--wait", "2s"}

	r := run(t, ctx, url, "", "loadtest", append(args, "--json", "--html", html)...)
	if r.err != nil {
		t.Fatalf("loadtest: %v\n%s", r.err, r.stderr)
	}
	if strings.Contains(r.stdout, "\r") {
		t.Fatal("progress written although stdout is not a terminal")
	}
	var rep struct {
		Verification struct{ Accepted, Delivered, Lost, Duplicated int64 }
		Server       struct{ Actors *int64 }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, r.stdout)
	}
	v := rep.Verification
	if v.Accepted == 0 || v.Delivered != v.Accepted || v.Lost != 0 || v.Duplicated != 0 || rep.Server.Actors == nil || *rep.Server.Actors != 3 {
		t.Fatalf("report %+v, actors %v", v, rep.Server.Actors)
	}
	page, err := os.ReadFile(html)
	if err != nil || !bytes.Contains(page, []byte("<svg")) {
		t.Fatalf("--html: %v; want a page with inline SVG", err)
	}

	// On a terminal the progress line shows, and the report is a table.
	r = runEnv(t, ctx, Env{Terminal: true, Getenv: getenv(map[string]string{"ZRC_URL": url})}, "loadtest", args...)
	if r.err != nil || !strings.Contains(r.stdout, "\r\033[K") || !strings.Contains(r.stdout, "verification (whole run): OK") {
		t.Fatalf("loadtest on a terminal: %v\n%q", r.err, r.stdout)
	}
}
