package conf

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestTOMLRoundTrip checks that --check-config output parses back as a
// config file into the same Config, secrets aside.
func TestTOMLRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"every key changed", []string{
			"--listen-addr", "127.0.0.1", "--listen-port", "0",
			"--metrics-enabled=false", "--metrics-listen", "127.0.0.1:9090",
			"--max-message-size", "1024", "--max-queue-length", "7",
			"--message-ttl-seconds", "60", "--eviction-interval-seconds", "5",
			"--idle-mailbox-timeout-seconds", "600", "--max-mailboxes", "20",
			"--memory-limit-mb", "8", "--long-poll-default-ms", "100", "--long-poll-max-ms", "200",
			"--rate-limit-posts-per-minute", "5", "--rate-limit-gets-per-minute", "6",
			"--rate-limit-window-seconds", "30", "--rate-limit-ipv6-prefix", "48",
			"--rate-limit-max-sources", "50",
			"--ip-allowlist", "10.0.0.0/8,::1", "--ip-blocklist", "192.0.2.1",
			"--trusted-proxies", "2001:db8::/32",
			"--auth-mode", "server_wide", "--auth-tokens", "tok-one,sha256:" + hex64,
			"--mailbox-tokens-file", `/etc/zrc/"odd" tokens.toml`,
			"--tls-cert-path", `C:\zrc\cert.pem`, "--tls-key-path", "/etc/zrc/key.pem",
			"--max-connections", "9", "--max-waiting-per-source", "3",
			"--shutdown-timeout-seconds", "0", "--state-file", "/var/lib/zrc/state\n",
			"--store", "memory", "--redis-url", "redis://cache:6379/2",
			"--runtime-memory-limit-mb", "256", "--log-level", "warn", "--log-format", "console",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := mustParse(t, tt.args, env(nil))
			out := first.Config.TOML()
			path := writeConfig(t, string(out))
			second := mustParse(t, []string{"--config", path}, env(nil))

			want := first.Config
			want.AuthTokens = make([]string, len(want.AuthTokens))
			for i := range want.AuthTokens {
				want.AuthTokens[i] = "<redacted>"
			}
			if !reflect.DeepEqual(second.Config, want) {
				t.Errorf("round trip:\ngot  %+v\nwant %+v\nTOML:\n%s", second.Config, want, out)
			}
			for _, key := range KeyNames() {
				if got, want := second.Sources[key], "file "+path; got != want {
					t.Errorf("source of %s: got %q; want %q (every key is written)", key, got, want)
				}
			}
		})
	}
}

func TestTOMLOrderAndSecrets(t *testing.T) {
	c := Defaults()
	c.AuthTokens = []string{"hunter2-token", "sha256:" + hex64}
	c.RedisURL = "redis://admin:hunter2-pw@cache:6379/0"
	out := string(c.TOML())

	t.Run("spec order", func(t *testing.T) {
		var keys []string
		for line := range strings.Lines(out) {
			if k, _, ok := strings.Cut(line, " = "); ok {
				keys = append(keys, k)
			}
		}
		if !slices.Equal(keys, KeyNames()) {
			t.Errorf("got keys %q; want %q", keys, KeyNames())
		}
	})
	t.Run("tokens redacted", func(t *testing.T) {
		for _, secret := range []string{"hunter2", hex64} {
			if strings.Contains(out, secret) {
				t.Errorf("got TOML containing %q:\n%s", secret, out)
			}
		}
		if want := "auth_tokens = ['<redacted>', '<redacted>']"; !strings.Contains(out, want) {
			t.Errorf("got:\n%s\nwant a line %q", out, want)
		}
	})
	t.Run("redis password redacted", func(t *testing.T) {
		if want := "redis_url = 'redis://admin:<redacted>@cache:6379/0'"; !strings.Contains(out, want) {
			t.Errorf("got:\n%s\nwant a line %q", out, want)
		}
	})
	t.Run("caller's Config untouched", func(t *testing.T) {
		if c.AuthTokens[0] != "hunter2-token" {
			t.Errorf("got %q; want the caller's tokens unchanged", c.AuthTokens)
		}
	})
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"redis://cache:6379/0", "redis://cache:6379/0"},
		{"redis://user@cache:6379", "redis://user@cache:6379"},
		{"redis://:pw@cache:6379/1", "redis://:<redacted>@cache:6379/1"},
		{"rediss://us%40er:p%3Aw@cache/0?dial_timeout=3s", "rediss://us%40er:<redacted>@cache/0?dial_timeout=3s"},
		{"redis://u:pw@[::1", "<redacted>"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := redactURL(tt.in); got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	var buf bytes.Buffer
	Usage(&buf)
	out := buf.String()
	want := []string{"--config PATH", "--check-config", "--version", "--help", "-h"}
	def := Defaults()
	for _, key := range KeyNames() {
		want = append(want, "--"+flagName(key))
		want = append(want, "(default "+defaultText(byKey[key], &def)+")")
	}
	for _, w := range want {
		t.Run(w, func(t *testing.T) {
			if !strings.Contains(out, w) {
				t.Errorf("got usage without %q:\n%s", w, out)
			}
		})
	}
	t.Run("one line per key", func(t *testing.T) {
		for _, key := range KeyNames() {
			found := false
			for line := range strings.Lines(out) {
				if strings.HasPrefix(strings.TrimSpace(line), "--"+flagName(key)+" ") ||
					strings.HasPrefix(strings.TrimSpace(line), "--"+flagName(key)+"[") {
					found = true
					if !strings.Contains(line, "(default ") {
						t.Errorf("got %q; want its default", line)
					}
				}
			}
			if !found {
				t.Errorf("got no line for --%s", flagName(key))
			}
		}
	})
}
