// Package conf loads, layers and validates the server configuration (R7).
//
// Values come from four layers, each overriding the one before (R7.1–R7.3):
// built-in defaults, a TOML file (--config or ZRC_CONFIG_PATH), environment
// variables ZRC_<KEY> and command-line flags --<key-with-dashes>. Every
// value is converted by this package, per key, before it reaches the
// Config struct, so a wrong value is reported with its key, its source and
// what is allowed instead of being coerced (R7.7).
//
// conf imports no package of this module but authtoken, the token rule it
// shares with the guard; cmd turns a Config into each package's own
// options.
package conf

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf/authtoken"
)

// Config is the effective server configuration. Field order is the spec
// order of the keys (SPEC.md "Configuration (R7)"); the koanf tag is the
// key name used in the file, and (upper-cased, prefixed ZRC_) in the
// environment.
type Config struct {
	ListenAddr string `koanf:"listen_addr" toml:"listen_addr"`
	ListenPort int    `koanf:"listen_port" toml:"listen_port"`

	MetricsEnabled bool   `koanf:"metrics_enabled" toml:"metrics_enabled"`
	MetricsListen  string `koanf:"metrics_listen" toml:"metrics_listen"`

	MaxMessageSize int64 `koanf:"max_message_size" toml:"max_message_size"`
	MaxQueueLength int   `koanf:"max_queue_length" toml:"max_queue_length"`

	MessageTTLSeconds         int `koanf:"message_ttl_seconds" toml:"message_ttl_seconds"`
	EvictionIntervalSeconds   int `koanf:"eviction_interval_seconds" toml:"eviction_interval_seconds"`
	IdleMailboxTimeoutSeconds int `koanf:"idle_mailbox_timeout_seconds" toml:"idle_mailbox_timeout_seconds"`

	MaxMailboxes  int `koanf:"max_mailboxes" toml:"max_mailboxes"`
	MemoryLimitMB int `koanf:"memory_limit_mb" toml:"memory_limit_mb"`

	LongPollDefaultMS int `koanf:"long_poll_default_ms" toml:"long_poll_default_ms"`
	LongPollMaxMS     int `koanf:"long_poll_max_ms" toml:"long_poll_max_ms"`

	RateLimitPostsPerMinute int `koanf:"rate_limit_posts_per_minute" toml:"rate_limit_posts_per_minute"`
	RateLimitGetsPerMinute  int `koanf:"rate_limit_gets_per_minute" toml:"rate_limit_gets_per_minute"`
	RateLimitWindowSeconds  int `koanf:"rate_limit_window_seconds" toml:"rate_limit_window_seconds"`
	RateLimitIPv6Prefix     int `koanf:"rate_limit_ipv6_prefix" toml:"rate_limit_ipv6_prefix"`
	RateLimitMaxSources     int `koanf:"rate_limit_max_sources" toml:"rate_limit_max_sources"`

	IPAllowlist    []string `koanf:"ip_allowlist" toml:"ip_allowlist"`
	IPBlocklist    []string `koanf:"ip_blocklist" toml:"ip_blocklist"`
	TrustedProxies []string `koanf:"trusted_proxies" toml:"trusted_proxies"`

	AuthMode          string   `koanf:"auth_mode" toml:"auth_mode"`
	AuthTokens        []string `koanf:"auth_tokens" toml:"auth_tokens"`
	MailboxTokensFile string   `koanf:"mailbox_tokens_file" toml:"mailbox_tokens_file"`

	TLSCertPath string `koanf:"tls_cert_path" toml:"tls_cert_path"`
	TLSKeyPath  string `koanf:"tls_key_path" toml:"tls_key_path"`

	MaxConnections      int `koanf:"max_connections" toml:"max_connections"`
	MaxWaitingPerSource int `koanf:"max_waiting_per_source" toml:"max_waiting_per_source"`

	ShutdownTimeoutSeconds int `koanf:"shutdown_timeout_seconds" toml:"shutdown_timeout_seconds"`

	StateFile string `koanf:"state_file" toml:"state_file"`

	MaxConnectionsPerSource int `koanf:"max_connections_per_source" toml:"max_connections_per_source"`

	Store    string `koanf:"store" toml:"store"`
	RedisURL string `koanf:"redis_url" toml:"redis_url"`

	RuntimeMemoryLimitMB int `koanf:"runtime_memory_limit_mb" toml:"runtime_memory_limit_mb"`

	LogLevel  string `koanf:"log_level" toml:"log_level"`
	LogFormat string `koanf:"log_format" toml:"log_format"`
}

// Defaults returns the built-in defaults of the spec's key table. List
// fields are empty, non-nil slices, so a Config read back from any layer
// compares equal with reflect.DeepEqual. Each call returns fresh slices.
func Defaults() Config {
	return Config{
		ListenAddr:                "0.0.0.0",
		ListenPort:                8080,
		MetricsEnabled:            true,
		MetricsListen:             "",
		MaxMessageSize:            65536,
		MaxQueueLength:            100,
		MessageTTLSeconds:         300,
		EvictionIntervalSeconds:   30,
		IdleMailboxTimeoutSeconds: 3600,
		MaxMailboxes:              10000,
		MemoryLimitMB:             64,
		LongPollDefaultMS:         30000,
		LongPollMaxMS:             60000,
		RateLimitPostsPerMinute:   60,
		RateLimitGetsPerMinute:    120,
		RateLimitWindowSeconds:    60,
		RateLimitIPv6Prefix:       64,
		RateLimitMaxSources:       100000,
		IPAllowlist:               []string{},
		IPBlocklist:               []string{},
		TrustedProxies:            []string{},
		AuthMode:                  "disabled",
		AuthTokens:                []string{},
		MailboxTokensFile:         "",
		TLSCertPath:               "",
		TLSKeyPath:                "",
		MaxConnections:            10000,
		MaxWaitingPerSource:       100,
		ShutdownTimeoutSeconds:    30,
		StateFile:                 "",
		MaxConnectionsPerSource:   256,
		Store:                     "memory",
		RedisURL:                  "",
		RuntimeMemoryLimitMB:      0,
		LogLevel:                  "info",
		LogFormat:                 "json",
	}
}

// MessageTTL is message_ttl_seconds as a duration (R3.1).
func (c Config) MessageTTL() time.Duration { return seconds(c.MessageTTLSeconds) }

// EvictionInterval is eviction_interval_seconds as a duration (R3.2).
func (c Config) EvictionInterval() time.Duration { return seconds(c.EvictionIntervalSeconds) }

// IdleMailboxTimeout is idle_mailbox_timeout_seconds as a duration (R3.3).
func (c Config) IdleMailboxTimeout() time.Duration {
	return seconds(c.IdleMailboxTimeoutSeconds)
}

// LongPollDefault is long_poll_default_ms as a duration (R2.2).
func (c Config) LongPollDefault() time.Duration { return millis(c.LongPollDefaultMS) }

// LongPollMax is long_poll_max_ms as a duration (R2.2).
func (c Config) LongPollMax() time.Duration { return millis(c.LongPollMaxMS) }

// RateLimitWindow is rate_limit_window_seconds as a duration (R4.7).
func (c Config) RateLimitWindow() time.Duration { return seconds(c.RateLimitWindowSeconds) }

// ShutdownTimeout is shutdown_timeout_seconds as a duration (R9.3).
func (c Config) ShutdownTimeout() time.Duration { return seconds(c.ShutdownTimeoutSeconds) }

// MemoryLimitBytes is memory_limit_mb in bytes (MiB, R3.5).
func (c Config) MemoryLimitBytes() int64 { return int64(c.MemoryLimitMB) << 20 }

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }
func millis(n int) time.Duration  { return time.Duration(n) * time.Millisecond }

// kind is the Go type a key's values are converted to.
type kind uint8

const (
	kindString kind = iota
	kindInt
	kindInt64
	kindBool
	kindList
)

// MaxShutdownTimeoutSeconds bounds shutdown_timeout_seconds (R9.3). After
// the drain the server still closes the mailboxes and writes state_file
// (Z12); a service manager that kills the process first loses every queued
// message. The packaged systemd unit's TimeoutStopSec leaves room for both
// (a test keeps it at least this plus the time the state file needs), so
// the drain can never outlast it; docs/operations.md says to raise
// TimeoutStopSec wherever a drain this long is used.
const MaxShutdownTimeoutSeconds = 60

// Upper bounds that keep the duration and byte conversions above from
// overflowing int64; validation rejects anything larger.
const (
	maxSeconds = math.MaxInt64 / int64(time.Second)
	maxMillis  = math.MaxInt64 / int64(time.Millisecond)
	maxMiB     = math.MaxInt64 >> 20
)

// field describes one config key: how its values are converted, what is
// allowed, and its --help line.
type field struct {
	key  string
	kind kind
	// min and max bound integer keys; validate checks them. max 0 means
	// "no bound but the integer type's".
	min, max int64
	// oneOf lists the allowed values of an enumerated string key.
	oneOf []string
	// secret keys never have their values echoed in problems or output.
	secret bool
	// allowed overrides the generated "what is allowed" text.
	allowed string
	// help is the one-line description shown by --help.
	help string
	// index is the Config field index, set by init from the koanf tags.
	index int
}

// fields lists every key in spec order. Adding a key means adding a Config
// field and a line here; TestFieldsMatchConfig keeps the two in step.
var fields = []field{
	{key: "listen_addr", kind: kindString, help: "bind address"},
	{key: "listen_port", kind: kindInt, min: 0, max: 65535, help: "bind port; 0 picks a free port"},
	{key: "metrics_enabled", kind: kindBool, help: "serve /metrics at all"},
	{key: "metrics_listen", kind: kindString, allowed: `must be "" or host:port (e.g. 127.0.0.1:9090)`, help: `separate host:port for /metrics ("" = main listener)`},
	{key: "max_message_size", kind: kindInt64, min: 1, allowed: "must be an integer from 1 to memory_limit_mb MiB", help: "bytes per message"},
	{key: "max_queue_length", kind: kindInt, min: 1, help: "messages per mailbox"},
	{key: "message_ttl_seconds", kind: kindInt, min: 1, max: maxSeconds, help: "message lifetime in seconds"},
	{key: "eviction_interval_seconds", kind: kindInt, min: 1, max: maxSeconds, help: "sweep period in seconds"},
	{key: "idle_mailbox_timeout_seconds", kind: kindInt, min: 1, max: maxSeconds, help: "empty idle mailbox lifetime in seconds"},
	{key: "max_mailboxes", kind: kindInt, min: 1, help: "live mailboxes"},
	{key: "memory_limit_mb", kind: kindInt, min: 1, max: maxMiB, help: "queued bytes, all mailboxes, in MiB"},
	{key: "long_poll_default_ms", kind: kindInt, min: 0, allowed: "must be an integer from 0 to long_poll_max_ms", help: "wait when wait_ms is absent, in ms (at most long_poll_max_ms)"},
	{key: "long_poll_max_ms", kind: kindInt, min: 0, max: maxMillis, help: "clamp for wait_ms, in ms"},
	{key: "rate_limit_posts_per_minute", kind: kindInt, min: 1, help: "POST tokens per window per source"},
	{key: "rate_limit_gets_per_minute", kind: kindInt, min: 1, help: "GET tokens per window per source"},
	{key: "rate_limit_window_seconds", kind: kindInt, min: 1, max: maxSeconds, help: "rate limit refill window in seconds"},
	{key: "rate_limit_ipv6_prefix", kind: kindInt, min: 1, max: 128, help: "bits of an IPv6 source that name it"},
	{key: "rate_limit_max_sources", kind: kindInt, min: 1, help: "tracked rate limit sources"},
	{key: "ip_allowlist", kind: kindList, allowed: ipListAllowed, help: "IPs and CIDRs exempt from rate limits"},
	{key: "ip_blocklist", kind: kindList, allowed: ipListAllowed, help: "IPs and CIDRs answered 403 blocked"},
	{key: "trusted_proxies", kind: kindList, allowed: ipListAllowed, help: "IPs and CIDRs whose X-Forwarded-For is believed"},
	{key: "auth_mode", kind: kindString, oneOf: []string{"disabled", "server_wide", "per_mailbox", "signature"}, help: "authentication mode"},
	{key: "auth_tokens", kind: kindList, secret: true, allowed: "must be a list of tokens, each " + authtoken.Allowed, help: "server tokens, plain or sha256:<hex>"},
	{key: "mailbox_tokens_file", kind: kindString, help: "per_mailbox token file (TOML)"},
	{key: "tls_cert_path", kind: kindString, help: "TLS certificate PEM file; set with tls_key_path or not at all"},
	{key: "tls_key_path", kind: kindString, help: "TLS key PEM file; set with tls_cert_path or not at all"},
	{key: "max_connections", kind: kindInt, min: 1, help: "open connections; beyond: 503"},
	{key: "max_waiting_per_source", kind: kindInt, min: 1, help: "concurrent long-polls per source; beyond: 429"},
	{key: "shutdown_timeout_seconds", kind: kindInt, min: 0, max: MaxShutdownTimeoutSeconds, help: "drain limit in seconds"},
	{key: "state_file", kind: kindString, help: "where queued messages survive a planned restart"},
	{key: "max_connections_per_source", kind: kindInt, min: 1, help: "open connections from one source; beyond: 503"},
	{key: "store", kind: kindString, oneOf: []string{"memory", "redis"}, allowed: storeAllowed, help: "message store"},
	{key: "redis_url", kind: kindString, secret: true, allowed: "must be a redis:// or rediss:// URL with a host (e.g. redis://127.0.0.1:6379/0)", help: "redis store URL, e.g. redis://127.0.0.1:6379/0"},
	{key: "runtime_memory_limit_mb", kind: kindInt, min: 0, max: maxMiB, help: "Go soft memory limit in MiB; 0 = automatic"},
	{key: "log_level", kind: kindString, oneOf: []string{"debug", "info", "warn", "error"}, help: "log level"},
	{key: "log_format", kind: kindString, oneOf: []string{"json", "console"}, help: "log format"},
}

const ipListAllowed = "must be a list of IP addresses or CIDR prefixes, IPv4 or IPv6 (e.g. 10.0.0.0/8, 2001:db8::/32)"

// byKey indexes fields by key name.
var byKey = map[string]*field{}

func init() {
	t := reflect.TypeFor[Config]()
	index := map[string]int{}
	for i := range t.NumField() {
		index[t.Field(i).Tag.Get("koanf")] = i
	}
	for i := range fields {
		f := &fields[i]
		idx, ok := index[f.key]
		if !ok {
			panic("BUG: conf: key " + f.key + " has no Config field")
		}
		f.index = idx
		byKey[f.key] = f
	}
	if len(fields) != t.NumField() {
		panic("BUG: conf: fields and Config disagree on the number of keys")
	}
}

// KeyNames returns every config key name in spec order.
func KeyNames() []string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.key
	}
	return names
}

// get returns the key's value in c.
func (f *field) get(c *Config) any {
	return reflect.ValueOf(c).Elem().Field(f.index).Interface()
}

// maxValue is the largest value an integer key allows: its own bound, or
// the largest value its Go type holds.
func (f *field) maxValue() int64 {
	limit := int64(math.MaxInt64)
	if f.kind == kindInt {
		limit = math.MaxInt
	}
	if f.max != 0 && f.max < limit {
		return f.max
	}
	return limit
}

// allowedText says what values the key allows, e.g. "must be an integer
// from 0 to 65535". Problems start with it.
func (f *field) allowedText() string {
	if f.allowed != "" {
		return f.allowed
	}
	switch f.kind {
	case kindInt, kindInt64:
		if f.max == 0 {
			return fmt.Sprintf("must be an integer of at least %d", f.min)
		}
		return fmt.Sprintf("must be an integer from %d to %d", f.min, f.maxValue())
	case kindBool:
		return "must be true or false"
	case kindList:
		return "must be a list of strings"
	}
	if len(f.oneOf) > 0 {
		return "must be one of " + strings.Join(f.oneOf, ", ")
	}
	return "must be a string"
}

// ChangedKeys lists, in spec order, the keys whose values differ between a
// and b; a reload uses it to tell what it applied from what needs a
// restart.
func ChangedKeys(a, b Config) []string {
	var changed []string
	for i := range fields {
		f := &fields[i]
		if !reflect.DeepEqual(f.get(&a), f.get(&b)) {
			changed = append(changed, f.key)
		}
	}
	return changed
}

// CopyKeys sets the given keys of dst to their values in src; a reload
// uses it to take the keys it applies live and keep the running values of
// the others.
func CopyKeys(dst *Config, src Config, keys []string) {
	for _, k := range keys {
		f := byKey[k]
		if f == nil {
			panic("BUG: conf: CopyKeys of unknown key " + k)
		}
		reflect.ValueOf(dst).Elem().Field(f.index).Set(reflect.ValueOf(src).Field(f.index))
	}
}
