package conf

import (
	"strings"
	"testing"
)

const hex64 = "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef"

// TestValidationRules has a failing case for every rule of R7.7, each
// asserting the one problem it causes: key, source and message.
func TestValidationRules(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want wantProblem
	}{
		// listen_port 0–65535
		{name: "listen_port not a number", env: map[string]string{"ZRC_LISTEN_PORT": "abc"},
			want: wantProblem{"listen_port", "env ZRC_LISTEN_PORT", `must be an integer from 0 to 65535, got "abc"`}},
		{name: "listen_port too large", args: []string{"--listen-port", "65536"},
			want: wantProblem{"listen_port", "flag --listen-port", "must be an integer from 0 to 65535, got 65536"}},
		{name: "listen_port negative", args: []string{"--listen-port=-1"},
			want: wantProblem{"listen_port", "flag --listen-port", "must be an integer from 0 to 65535, got -1"}},
		{name: "listen_port overflow", env: map[string]string{"ZRC_LISTEN_PORT": "99999999999999999999"},
			want: wantProblem{"listen_port", "env ZRC_LISTEN_PORT", "must be an integer from 0 to 65535"}},

		{name: "metrics_enabled not a bool", env: map[string]string{"ZRC_METRICS_ENABLED": "yes please"},
			want: wantProblem{"metrics_enabled", "env ZRC_METRICS_ENABLED", `must be true or false, got "yes please"`}},

		// metrics_listen "" or host:port
		{name: "metrics_listen no port", args: []string{"--metrics-listen", "localhost"},
			want: wantProblem{"metrics_listen", "flag --metrics-listen", `must be "" or host:port`}},
		{name: "metrics_listen bad port", args: []string{"--metrics-listen", "localhost:70000"},
			want: wantProblem{"metrics_listen", "flag --metrics-listen", `got "localhost:70000"`}},

		// max_message_size 1..memory_limit_mb MiB
		{name: "max_message_size zero", args: []string{"--max-message-size", "0"},
			want: wantProblem{"max_message_size", "flag --max-message-size", "must be an integer from 1 to memory_limit_mb MiB, got 0"}},
		{name: "max_message_size above memory limit", args: []string{"--max-message-size", "2097153", "--memory-limit-mb", "2"},
			want: wantProblem{"max_message_size", "flag --max-message-size", "(memory_limit_mb from flag --memory-limit-mb = 2097152 bytes), got 2097153"}},

		{name: "max_queue_length zero", args: []string{"--max-queue-length", "0"},
			want: wantProblem{"max_queue_length", "flag --max-queue-length", "must be an integer of at least 1, got 0"}},
		{name: "message_ttl_seconds zero", args: []string{"--message-ttl-seconds", "0"},
			want: wantProblem{"message_ttl_seconds", "flag --message-ttl-seconds", "must be an integer from 1 to 9223372036, got 0"}},
		{name: "message_ttl_seconds overflows a duration", args: []string{"--message-ttl-seconds", "9223372037"},
			want: wantProblem{"message_ttl_seconds", "flag --message-ttl-seconds", "must be an integer from 1 to 9223372036"}},
		{name: "eviction_interval_seconds zero", args: []string{"--eviction-interval-seconds", "0"},
			want: wantProblem{"eviction_interval_seconds", "flag --eviction-interval-seconds", "must be an integer from 1 to"}},
		{name: "idle_mailbox_timeout_seconds zero", args: []string{"--idle-mailbox-timeout-seconds", "0"},
			want: wantProblem{"idle_mailbox_timeout_seconds", "flag --idle-mailbox-timeout-seconds", "must be an integer from 1 to"}},
		{name: "max_mailboxes zero", args: []string{"--max-mailboxes", "0"},
			want: wantProblem{"max_mailboxes", "flag --max-mailboxes", "must be an integer of at least 1"}},
		{name: "memory_limit_mb zero", args: []string{"--memory-limit-mb", "0"},
			want: wantProblem{"memory_limit_mb", "flag --memory-limit-mb", "must be an integer from 1 to"}},

		// long_poll_max_ms >= 0, long_poll_default_ms 0..long_poll_max_ms
		{name: "long_poll_max_ms negative", args: []string{"--long-poll-max-ms=-1", "--long-poll-default-ms", "0"},
			want: wantProblem{"long_poll_max_ms", "flag --long-poll-max-ms", "must be an integer from 0 to"}},
		{name: "long_poll_default_ms negative", args: []string{"--long-poll-default-ms=-1"},
			want: wantProblem{"long_poll_default_ms", "flag --long-poll-default-ms", "must be an integer from 0 to long_poll_max_ms, got -1"}},
		{name: "long_poll_default_ms above max", args: []string{"--long-poll-max-ms", "1000"},
			want: wantProblem{"long_poll_default_ms", "default", "(long_poll_max_ms from flag --long-poll-max-ms = 1000), got 30000"}},

		// rate limits
		{name: "rate_limit_posts_per_minute zero", args: []string{"--rate-limit-posts-per-minute", "0"},
			want: wantProblem{"rate_limit_posts_per_minute", "flag --rate-limit-posts-per-minute", "must be an integer of at least 1"}},
		{name: "rate_limit_gets_per_minute zero", env: map[string]string{"ZRC_RATE_LIMIT_GETS_PER_MINUTE": "0"},
			want: wantProblem{"rate_limit_gets_per_minute", "env ZRC_RATE_LIMIT_GETS_PER_MINUTE", "must be an integer of at least 1"}},
		{name: "rate_limit_window_seconds zero", args: []string{"--rate-limit-window-seconds", "0"},
			want: wantProblem{"rate_limit_window_seconds", "flag --rate-limit-window-seconds", "must be an integer from 1 to"}},
		{name: "rate_limit_ipv6_prefix zero", args: []string{"--rate-limit-ipv6-prefix", "0"},
			want: wantProblem{"rate_limit_ipv6_prefix", "flag --rate-limit-ipv6-prefix", "must be an integer from 1 to 128, got 0"}},
		{name: "rate_limit_ipv6_prefix too large", args: []string{"--rate-limit-ipv6-prefix", "129"},
			want: wantProblem{"rate_limit_ipv6_prefix", "flag --rate-limit-ipv6-prefix", "must be an integer from 1 to 128, got 129"}},
		{name: "rate_limit_max_sources zero", args: []string{"--rate-limit-max-sources", "0"},
			want: wantProblem{"rate_limit_max_sources", "flag --rate-limit-max-sources", "must be an integer of at least 1"}},

		{name: "max_waiting_per_source beyond the guard's counters", args: []string{"--max-waiting-per-source", "1073741825"},
			want: wantProblem{"max_waiting_per_source", "flag --max-waiting-per-source", "must be an integer of at least 1 and at most 1073741824, got 1073741825"}},

		// IP lists
		{name: "ip_allowlist bad CIDR", args: []string{"--ip-allowlist", "10.0.0.0/33"},
			want: wantProblem{"ip_allowlist", "flag --ip-allowlist", `entry 1 "10.0.0.0/33" is not an IP address or CIDR prefix`}},
		{name: "ip_allowlist empty entry", env: map[string]string{"ZRC_IP_ALLOWLIST": "10.0.0.1,,::1"},
			want: wantProblem{"ip_allowlist", "env ZRC_IP_ALLOWLIST", "entry 2 is empty"}},
		{name: "ip_blocklist not an IP", args: []string{"--ip-blocklist", "::1,example.com"},
			want: wantProblem{"ip_blocklist", "flag --ip-blocklist", `entry 2 "example.com" is not an IP address or CIDR prefix; must be a list of IP addresses or CIDR prefixes`}},
		{name: "trusted_proxies zone", args: []string{"--trusted-proxies", "fe80::1%eth0"},
			want: wantProblem{"trusted_proxies", "flag --trusted-proxies", `entry 1 "fe80::1%eth0" is not an IP address or CIDR prefix`}},

		// auth
		{name: "auth_mode unknown", args: []string{"--auth-mode", "open"},
			want: wantProblem{"auth_mode", "flag --auth-mode", `must be one of disabled, server_wide, per_mailbox, signature, got "open"`}},
		{name: "auth_tokens empty entry", args: []string{"--auth-tokens", "a,,b"},
			want: wantProblem{"auth_tokens", "flag --auth-tokens", "entry 2 is empty"}},
		{name: "auth_tokens short sha256", args: []string{"--auth-tokens", "sha256:abcd"},
			want: wantProblem{"auth_tokens", "flag --auth-tokens", "entry 1 starts with sha256: but is not followed by exactly 64 hex characters"}},
		{name: "auth_tokens non-hex sha256", args: []string{"--auth-tokens", "ok,sha256:" + strings.Repeat("g", 64)},
			want: wantProblem{"auth_tokens", "flag --auth-tokens", "entry 2 starts with sha256:"}},
		{name: "auth_tokens long sha256", args: []string{"--auth-tokens", "sha256:" + hex64 + "0"},
			want: wantProblem{"auth_tokens", "flag --auth-tokens", "exactly 64 hex characters"}},
		{name: "auth_tokens whitespace", args: []string{"--auth-tokens", "to ken"},
			want: wantProblem{"auth_tokens", "flag --auth-tokens", "entry 1 holds characters a Bearer token cannot carry"}},
		// The guard refuses these at start; so must --check-config (R5.1).
		{name: "auth_tokens non-ASCII", env: map[string]string{"ZRC_AUTH_TOKENS": "ok,pässwort"},
			want: wantProblem{"auth_tokens", "env ZRC_AUTH_TOKENS", "entry 2 holds characters a Bearer token cannot carry (spaces, control or non-ASCII characters); must be a list of tokens, each plain (visible ASCII characters, no spaces) or sha256:<64 hex characters>"}},
		{name: "auth_tokens DEL", args: []string{"--auth-tokens", "tok\x7f"},
			want: wantProblem{"auth_tokens", "flag --auth-tokens", "entry 1 holds characters a Bearer token cannot carry"}},
		{name: "server_wide without tokens", args: []string{"--auth-mode", "server_wide"},
			want: wantProblem{"auth_tokens", "default", "must hold at least one token when auth_mode is server_wide (auth_mode from flag --auth-mode)"}},
		{name: "per_mailbox without file", env: map[string]string{"ZRC_AUTH_MODE": "per_mailbox"},
			want: wantProblem{"mailbox_tokens_file", "default", "must name the token file when auth_mode is per_mailbox (auth_mode from env ZRC_AUTH_MODE)"}},

		// TLS pair: the problem names the missing key
		{name: "tls cert without key", args: []string{"--tls-cert-path", "/etc/zrc/cert.pem"},
			want: wantProblem{"tls_key_path", "default", "must be set when tls_cert_path is set (tls_cert_path from flag --tls-cert-path); set both or neither"}},
		{name: "tls key without cert", env: map[string]string{"ZRC_TLS_KEY_PATH": "/etc/zrc/key.pem"},
			want: wantProblem{"tls_cert_path", "default", "must be set when tls_key_path is set (tls_key_path from env ZRC_TLS_KEY_PATH)"}},

		{name: "max_connections zero", args: []string{"--max-connections", "0"},
			want: wantProblem{"max_connections", "flag --max-connections", "must be an integer of at least 1"}},
		{name: "max_waiting_per_source zero", args: []string{"--max-waiting-per-source", "0"},
			want: wantProblem{"max_waiting_per_source", "flag --max-waiting-per-source", "must be an integer of at least 1"}},
		{name: "max_connections_per_source zero", args: []string{"--max-connections-per-source", "0"},
			want: wantProblem{"max_connections_per_source", "flag --max-connections-per-source", "must be an integer of at least 1"}},
		{name: "shutdown_timeout_seconds negative", args: []string{"--shutdown-timeout-seconds=-1"},
			want: wantProblem{"shutdown_timeout_seconds", "flag --shutdown-timeout-seconds", "must be an integer from 0 to 60, got -1"}},
		{name: "shutdown_timeout_seconds past the unit's stop timeout", env: map[string]string{"ZRC_SHUTDOWN_TIMEOUT_SECONDS": "61"},
			want: wantProblem{"shutdown_timeout_seconds", "env ZRC_SHUTDOWN_TIMEOUT_SECONDS", "must be an integer from 0 to 60, got 61"}},

		// store
		{name: "store unknown", args: []string{"--store", "disk"},
			want: wantProblem{"store", "flag --store", `must be one of memory, redis, got "disk"`}},
		{name: "redis mode unknown", args: []string{"--redis-mode", "ring"},
			want: wantProblem{"redis_mode", "flag --redis-mode", `must be one of standalone, cluster, sentinel, got "ring"`}},
		{name: "redis cluster on a database other than 0", args: []string{"--redis-mode", "cluster", "--redis-url", "redis://:secret@127.0.0.1:7000/3"},
			want: wantProblem{"redis_url", "flag --redis-url", `must name database 0 or none when redis_mode is cluster (redis_mode from flag --redis-mode), got database "3"`}},
		{name: "sentinel without a master name", args: []string{"--redis-mode", "sentinel"},
			want: wantProblem{"redis_master_name", "default", "must name the master the sentinels watch when redis_mode is sentinel (redis_mode from flag --redis-mode)"}},
		{name: "redis key prefix empty", args: []string{"--redis-key-prefix", ""},
			want: wantProblem{"redis_key_prefix", "flag --redis-key-prefix", `must be 1 to 64 printable ASCII characters without spaces, { or }, got ""`}},
		{name: "redis key prefix with a hash tag", args: []string{"--redis-key-prefix", "a{b}:"},
			want: wantProblem{"redis_key_prefix", "flag --redis-key-prefix", `must be 1 to 64 printable ASCII characters without spaces, { or }, got "a{b}:"`}},
		{name: "redis timeout too small", args: []string{"--redis-timeout-ms", "5"},
			want: wantProblem{"redis_timeout_ms", "flag --redis-timeout-ms", "must be an integer from 10 to 60000, got 5"}},
		{name: "redis lease too small", args: []string{"--redis-lease-ms", "999"},
			want: wantProblem{"redis_lease_ms", "flag --redis-lease-ms", "must be an integer from 1000 to 3600000, got 999"}},
		{name: "redis wait replicas too many", args: []string{"--redis-wait-replicas", "17"},
			want: wantProblem{"redis_wait_replicas", "flag --redis-wait-replicas", "must be an integer from 0 to 16, got 17"}},
		{name: "state file with the redis store", args: []string{"--store", "redis", "--redis-url", "redis://127.0.0.1:6379/0", "--state-file", "/var/lib/zrc/state"},
			want: wantProblem{"state_file", "flag --state-file", "must be empty when store is redis (store from flag --store): Redis keeps the queued messages"}},
		{name: "redis_url wrong scheme", args: []string{"--redis-url", "http://127.0.0.1:6379"},
			want: wantProblem{"redis_url", "flag --redis-url", "must be a redis:// or rediss:// URL"}},
		{name: "redis_url no host", env: map[string]string{"ZRC_REDIS_URL": "redis:///0"},
			want: wantProblem{"redis_url", "env ZRC_REDIS_URL", "must be a redis:// or rediss:// URL with a host"}},
		{name: "redis_url unparsable", args: []string{"--redis-url", "redis://u:p@[::1"},
			want: wantProblem{"redis_url", "flag --redis-url", "must be a redis:// or rediss:// URL"}},

		{name: "runtime_memory_limit_mb negative", args: []string{"--runtime-memory-limit-mb=-1"},
			want: wantProblem{"runtime_memory_limit_mb", "flag --runtime-memory-limit-mb", "must be an integer from 0 to"}},
		{name: "log_level unknown", env: map[string]string{"ZRC_LOG_LEVEL": "trace"},
			want: wantProblem{"log_level", "env ZRC_LOG_LEVEL", `must be one of debug, info, warn, error, got "trace"`}},
		{name: "not UTF-8", env: map[string]string{"ZRC_STATE_FILE": "/var/\xb0"},
			want: wantProblem{"state_file", "env ZRC_STATE_FILE", "must be a string, got a value that is not valid UTF-8"}},
		{name: "log_format unknown", args: []string{"--log-format", "text"},
			want: wantProblem{"log_format", "flag --log-format", `must be one of json, console, got "text"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.args, env(tt.env))
			probs := problems(t, err)
			if len(probs) != 1 {
				t.Errorf("got %d problems:\n%v\nwant 1", len(probs), err)
			}
			hasProblem(t, probs, tt.want)
		})
	}
}

// TestValidEdges checks values at the edges of what is allowed.
func TestValidEdges(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"free port", []string{"--listen-port", "0"}},
		{"top port", []string{"--listen-port", "65535"}},
		{"metrics any host", []string{"--metrics-listen", ":9090"}},
		{"metrics v6", []string{"--metrics-listen", "[::1]:9090"}},
		{"message as large as memory", []string{"--memory-limit-mb", "1", "--max-message-size", "1048576"}},
		{"long poll zero", []string{"--long-poll-max-ms", "0", "--long-poll-default-ms", "0"}},
		{"long poll default at max", []string{"--long-poll-max-ms", "5", "--long-poll-default-ms", "5"}},
		{"ipv6 prefix 128", []string{"--rate-limit-ipv6-prefix", "128"}},
		{"ip lists", []string{"--ip-allowlist", "10.0.0.1,10.0.0.0/8", "--ip-blocklist", "2001:db8::/32,::ffff:1.2.3.4", "--trusted-proxies", "127.0.0.1"}},
		{"server_wide with sha256 token", []string{"--auth-mode", "server_wide", "--auth-tokens", "plain,sha256:" + hex64}},
		{"per_mailbox with file", []string{"--auth-mode", "per_mailbox", "--mailbox-tokens-file", "/etc/zrc/tokens.toml"}},
		{"signature", []string{"--auth-mode", "signature"}},
		{"tls pair", []string{"--tls-cert-path", "c.pem", "--tls-key-path", "k.pem"}},
		{"no drain", []string{"--shutdown-timeout-seconds", "0"}},
		{"longest drain", []string{"--shutdown-timeout-seconds", "60"}},
		{"redis_url kept as config surface", []string{"--redis-url", "redis://127.0.0.1:6379/0"}},
		{"rediss with password", []string{"--redis-url", "rediss://user:pw@cache:6380"}},
		{"runtime limit auto", []string{"--runtime-memory-limit-mb", "0"}},
		{"console debug", []string{"--log-format", "console", "--log-level", "debug"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustParse(t, tt.args, env(nil))
		})
	}
}

// TestProblemsHideSecrets checks that no problem echoes a token or a redis
// password (R5, Z6).
func TestProblemsHideSecrets(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		secret string
	}{
		{"bad sha256 token", []string{"--auth-tokens", "sha256:hunter2hunter2"}, "hunter2"},
		{"token with space", []string{"--auth-tokens", "hunter2 hunter2"}, "hunter2"},
		{"redis wrong scheme", []string{"--redis-url", "http://u:hunter2@h:1"}, "hunter2"},
		{"redis unparsable", []string{"--redis-url", "redis://u:hunter2@[::1"}, "hunter2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.args, env(nil))
			probs := problems(t, err)
			if msg := err.Error(); strings.Contains(msg, tt.secret) {
				t.Errorf("got %q; want no %q in it", msg, tt.secret)
			}
			if len(probs) == 0 {
				t.Errorf("got no problems; want one")
			}
		})
	}
	t.Run("file token of the wrong type", func(t *testing.T) {
		path := writeConfig(t, "auth_tokens = \"hunter2\"\nredis_url = [\"redis://:hunter2@h\"]\n")
		_, err := Parse([]string{"--config", path}, env(nil))
		if n := len(problems(t, err)); n != 2 {
			t.Errorf("got %d problems:\n%v\nwant 2", n, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("got %q; want no secret in it", err)
		}
	})
}

func TestValidateMethod(t *testing.T) {
	c := Defaults()
	c.ListenPort = -5
	c.TLSKeyPath = "k.pem"
	err := c.Validate()
	probs := problems(t, err)
	if len(probs) != 2 {
		t.Errorf("got %d problems:\n%v\nwant 2", len(probs), err)
	}
	hasProblem(t, probs, wantProblem{"listen_port", "config value", "must be an integer from 0 to 65535, got -5"})
	hasProblem(t, probs, wantProblem{"tls_cert_path", "config value", "must be set when tls_key_path is set"})
}

// TestRedisStoreRefused checks that store = "redis" stops a build without
// the Redis store (Z13) with a line that says so, rather than running in
// memory, and that the redis_url rule still holds beside it.
func TestRedisStoreNeedsURL(t *testing.T) {
	path := writeConfig(t, "store = \"redis\"\n")
	_, err := Parse([]string{"--config", path}, env(nil))
	want := "config: redis_url (default): must be a redis:// or rediss:// URL with a host (e.g. redis://127.0.0.1:6379/0), needed when store is redis (store from file " + path + ")"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	res, err := Parse([]string{"--config", path, "--redis-url", "redis://:pw@127.0.0.1:6379/0"}, env(nil))
	if err != nil || res.Config.Store != "redis" {
		t.Fatalf("store = redis with a URL: %v, store %q; want accepted", err, res.Config.Store)
	}
}
