package conf

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

// TestDefaultsMatchSpec checks every default against the key table of
// SPEC.md "Configuration (R7)" (R7.4–R7.6).
func TestDefaultsMatchSpec(t *testing.T) {
	spec := map[string]any{
		"listen_addr":                  "0.0.0.0",
		"listen_port":                  8080,
		"metrics_enabled":              true,
		"metrics_listen":               "",
		"max_message_size":             int64(65536),
		"max_queue_length":             100,
		"message_ttl_seconds":          300,
		"eviction_interval_seconds":    30,
		"idle_mailbox_timeout_seconds": 3600,
		"max_mailboxes":                10000,
		"memory_limit_mb":              64,
		"long_poll_default_ms":         30000,
		"long_poll_max_ms":             60000,
		"rate_limit_posts_per_minute":  60,
		"rate_limit_gets_per_minute":   120,
		"rate_limit_window_seconds":    60,
		"rate_limit_ipv6_prefix":       64,
		"rate_limit_max_sources":       100000,
		"ip_allowlist":                 []string{},
		"ip_blocklist":                 []string{},
		"trusted_proxies":              []string{},
		"auth_mode":                    "disabled",
		"auth_tokens":                  []string{},
		"mailbox_tokens_file":          "",
		"tls_cert_path":                "",
		"tls_key_path":                 "",
		"max_connections":              10000,
		"max_waiting_per_source":       100,
		"shutdown_timeout_seconds":     30,
		"state_file":                   "",
		"max_connections_per_source":   256,
		"store":                        "memory",
		"redis_url":                    "",
		"redis_mode":                   "standalone",
		"redis_master_name":            "",
		"redis_key_prefix":             "zrc:",
		"redis_timeout_ms":             1000,
		"redis_lease_ms":               15000,
		"redis_require_noeviction":     true,
		"redis_wait_replicas":          0,
		"redis_shared_rate_limits":     true,
		"runtime_memory_limit_mb":      0,
		"log_level":                    "info",
		"log_format":                   "json",
	}
	if got, want := len(KeyNames()), len(spec); got != want {
		t.Fatalf("got %d keys; want %d", got, want)
	}
	def := Defaults()
	parsed := mustParse(t, nil, env(nil))
	for _, key := range KeyNames() {
		t.Run(key, func(t *testing.T) {
			want, ok := spec[key]
			if !ok {
				t.Fatalf("got key %q; want it in the spec table", key)
			}
			if got := byKey[key].get(&def); !reflect.DeepEqual(got, want) {
				t.Errorf("Defaults().%s: got %#v; want %#v", key, got, want)
			}
			if got := byKey[key].get(&parsed.Config); !reflect.DeepEqual(got, want) {
				t.Errorf("Parse(nil).%s: got %#v; want %#v", key, got, want)
			}
			if got := parsed.Sources[key]; got != "default" {
				t.Errorf("source of %s: got %q; want %q", key, got, "default")
			}
		})
	}
	if err := def.Validate(); err != nil {
		t.Errorf("Defaults().Validate(): got %v; want nil", err)
	}
	if parsed.ConfigPath != "" || parsed.Help || parsed.Version || parsed.CheckConfig {
		t.Errorf("got %+v; want no file and no switches", parsed)
	}
}

// TestFieldsMatchConfig keeps the key table, the Config struct tags and
// their order (the spec order) in step. The koanf tag is a field's only
// tag: all else about a key is in the table.
func TestFieldsMatchConfig(t *testing.T) {
	typ := reflect.TypeFor[Config]()
	var tags []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if got, want := string(f.Tag), `koanf:"`+f.Tag.Get("koanf")+`"`; got != want {
			t.Errorf("field %s: got tags %s; want only %s", f.Name, got, want)
		}
		tags = append(tags, f.Tag.Get("koanf"))
	}
	if got, want := KeyNames(), tags; !slices.Equal(got, want) {
		t.Errorf("KeyNames():\ngot  %q\nwant %q", got, want)
	}
}

func TestDefaultsFreshSlices(t *testing.T) {
	a := Defaults()
	a.IPAllowlist = append(a.IPAllowlist, "10.0.0.1")
	if got := Defaults().IPAllowlist; len(got) != 0 {
		t.Errorf("got %q after changing another Defaults(); want []", got)
	}
}

func TestDurations(t *testing.T) {
	c := Config{
		MessageTTLSeconds:         5,
		EvictionIntervalSeconds:   6,
		IdleMailboxTimeoutSeconds: 7,
		LongPollDefaultMS:         8,
		LongPollMaxMS:             9,
		RateLimitWindowSeconds:    10,
		ShutdownTimeoutSeconds:    11,
		MemoryLimitMB:             3,
	}
	tests := []struct {
		name string
		got  time.Duration
		want time.Duration
	}{
		{"MessageTTL", c.MessageTTL(), 5 * time.Second},
		{"EvictionInterval", c.EvictionInterval(), 6 * time.Second},
		{"IdleMailboxTimeout", c.IdleMailboxTimeout(), 7 * time.Second},
		{"LongPollDefault", c.LongPollDefault(), 8 * time.Millisecond},
		{"LongPollMax", c.LongPollMax(), 9 * time.Millisecond},
		{"RateLimitWindow", c.RateLimitWindow(), 10 * time.Second},
		{"ShutdownTimeout", c.ShutdownTimeout(), 11 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %v; want %v", tt.got, tt.want)
			}
		})
	}
	if got, want := c.MemoryLimitBytes(), int64(3<<20); got != want {
		t.Errorf("MemoryLimitBytes: got %d; want %d", got, want)
	}
}

func TestChangedKeys(t *testing.T) {
	a := Defaults()
	b := Defaults()
	if got := ChangedKeys(a, b); len(got) != 0 {
		t.Fatalf("ChangedKeys(defaults, defaults) = %v; want none", got)
	}
	b.ListenPort = 9000
	b.AuthTokens = []string{"x"}
	b.LogLevel = "debug"
	got := ChangedKeys(a, b)
	want := []string{"listen_port", "auth_tokens", "log_level"}
	if !slices.Equal(got, want) {
		t.Fatalf("ChangedKeys = %v; want %v", got, want)
	}
	CopyKeys(&a, b, []string{"auth_tokens", "log_level"})
	if got := ChangedKeys(a, b); !slices.Equal(got, []string{"listen_port"}) {
		t.Fatalf("after CopyKeys, ChangedKeys = %v; want [listen_port]", got)
	}
}
