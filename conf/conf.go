// Package conf loads, layers and validates the server configuration (R7).
//
// Values come from four layers, each overriding the one before (R7.1–R7.3):
// built-in defaults, a TOML file (--config or ZRC_CONFIG_PATH), environment
// variables ZRC_<KEY> and command-line flags --<key-with-dashes>. Every
// value is converted by this package, per key, before it reaches the
// Config struct, so a wrong value is reported with its key, its source and
// what is allowed instead of being coerced (R7.7).
//
// conf imports no package of this module but rules, the token, IP list
// and limit rules it shares with the guard; cmd turns a Config into each package's own
// options.
package conf

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf/rules"
)

// Config is the effective server configuration. Field order is the spec
// order of the keys (SPEC.md "Configuration (R7)"); the koanf tag is the
// key name used in the file, and (upper-cased, prefixed ZRC_) in the
// environment; everything else about a key is in its fields entry.
type Config struct {
	ListenAddr string `koanf:"listen_addr"`
	ListenPort int    `koanf:"listen_port"`

	MetricsEnabled bool   `koanf:"metrics_enabled"`
	MetricsListen  string `koanf:"metrics_listen"`

	MaxMessageSize int64 `koanf:"max_message_size"`
	MaxQueueLength int   `koanf:"max_queue_length"`

	MessageTTLSeconds         int `koanf:"message_ttl_seconds"`
	EvictionIntervalSeconds   int `koanf:"eviction_interval_seconds"`
	IdleMailboxTimeoutSeconds int `koanf:"idle_mailbox_timeout_seconds"`

	MaxMailboxes  int `koanf:"max_mailboxes"`
	MemoryLimitMB int `koanf:"memory_limit_mb"`

	LongPollDefaultMS int `koanf:"long_poll_default_ms"`
	LongPollMaxMS     int `koanf:"long_poll_max_ms"`

	RateLimitPostsPerMinute int `koanf:"rate_limit_posts_per_minute"`
	RateLimitGetsPerMinute  int `koanf:"rate_limit_gets_per_minute"`
	RateLimitWindowSeconds  int `koanf:"rate_limit_window_seconds"`
	RateLimitIPv6Prefix     int `koanf:"rate_limit_ipv6_prefix"`
	RateLimitMaxSources     int `koanf:"rate_limit_max_sources"`

	IPAllowlist    []string `koanf:"ip_allowlist"`
	IPBlocklist    []string `koanf:"ip_blocklist"`
	TrustedProxies []string `koanf:"trusted_proxies"`

	AuthMode          string   `koanf:"auth_mode"`
	AuthTokens        []string `koanf:"auth_tokens"`
	MailboxTokensFile string   `koanf:"mailbox_tokens_file"`

	TLSCertPath string `koanf:"tls_cert_path"`
	TLSKeyPath  string `koanf:"tls_key_path"`

	MaxConnections      int `koanf:"max_connections"`
	MaxWaitingPerSource int `koanf:"max_waiting_per_source"`

	ShutdownTimeoutSeconds int `koanf:"shutdown_timeout_seconds"`

	StateFile string `koanf:"state_file"`

	MaxConnectionsPerSource int `koanf:"max_connections_per_source"`

	Store                  string `koanf:"store"`
	RedisURL               string `koanf:"redis_url"`
	RedisMode              string `koanf:"redis_mode"`
	RedisMasterName        string `koanf:"redis_master_name"`
	RedisKeyPrefix         string `koanf:"redis_key_prefix"`
	RedisTimeoutMS         int    `koanf:"redis_timeout_ms"`
	RedisLeaseMS           int    `koanf:"redis_lease_ms"`
	RedisRequireNoEviction bool   `koanf:"redis_require_noeviction"`
	RedisWaitReplicas      int    `koanf:"redis_wait_replicas"`
	RedisSharedRateLimits  bool   `koanf:"redis_shared_rate_limits"`

	RuntimeMemoryLimitMB int `koanf:"runtime_memory_limit_mb"`

	LogLevel  string `koanf:"log_level"`
	LogFormat string `koanf:"log_format"`
}

// Defaults returns the built-in defaults of the spec's key table, as the
// fields table holds them. List fields are empty, non-nil slices, so a
// Config read back from any layer compares equal with reflect.DeepEqual.
// Each call returns fresh slices.
func Defaults() Config {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	for i := range fields {
		f := &fields[i]
		def := reflect.ValueOf(f.def)
		if f.kind == kindList {
			def = reflect.ValueOf(slices.Clone(f.def.([]string)))
		}
		v.Field(f.index).Set(def)
	}
	return c
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

// RedisTimeout is redis_timeout_ms as a duration (Z13).
func (c Config) RedisTimeout() time.Duration { return millis(c.RedisTimeoutMS) }

// RedisLease is redis_lease_ms as a duration (Z13).
func (c Config) RedisLease() time.Duration { return millis(c.RedisLeaseMS) }

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

// ReloadRule says what a live reload (R5.6) does with a changed key.
type ReloadRule uint8

const (
	// Restart: the change needs a restart; a reload ignores it, logs that
	// it does, and applies the rest.
	Restart ReloadRule = iota
	// Live: a reload applies the change.
	Live
	// Refuse: the change needs a restart, and a reload that holds it is
	// refused as a whole. Ignoring it would leave the server serving under
	// other rules than the file shows: an operator who turns auth_mode on
	// and reloads must not go on believing the mailboxes are protected;
	// one who turns it off must not believe they are open. The other
	// restart-only keys change capacity, addresses or files, whose old
	// values keep the server no less safe; refusing their reload would
	// also hold back token revocations made in the same edit.
	Refuse
)

// field describes one config key: its default, how its values are
// converted, what is allowed, whether a reload applies it, and its --help
// line. Defaults, --help, --check-config, validation, the reload and the
// test of docs/configuration.md all read it from here.
type field struct {
	key  string
	kind kind
	// def is the built-in default, of the Config field's Go type.
	def any
	// reload is what a live reload does with a change of the key.
	reload ReloadRule
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
	{key: "listen_addr", kind: kindString, def: "0.0.0.0", help: "bind address"},
	{key: "listen_port", kind: kindInt, def: 8080, min: 0, max: 65535, help: "bind port; 0 picks a free port"},
	{key: "metrics_enabled", kind: kindBool, def: true, help: "serve /metrics at all"},
	{key: "metrics_listen", kind: kindString, def: "", allowed: `must be "" or host:port (e.g. 127.0.0.1:9090)`, help: `separate host:port for /metrics ("" = main listener)`},
	{key: "max_message_size", kind: kindInt64, def: int64(65536), min: 1, allowed: "must be an integer from 1 to memory_limit_mb MiB", help: "bytes per message"},
	{key: "max_queue_length", kind: kindInt, def: 100, min: 1, help: "messages per mailbox"},
	{key: "message_ttl_seconds", kind: kindInt, def: 300, min: 1, max: maxSeconds, help: "message lifetime in seconds"},
	{key: "eviction_interval_seconds", kind: kindInt, def: 30, min: 1, max: maxSeconds, help: "sweep period in seconds"},
	{key: "idle_mailbox_timeout_seconds", kind: kindInt, def: 3600, min: 1, max: maxSeconds, help: "empty idle mailbox lifetime in seconds"},
	{key: "max_mailboxes", kind: kindInt, def: 10000, min: 1, help: "live mailboxes"},
	{key: "memory_limit_mb", kind: kindInt, def: 64, min: 1, max: maxMiB, help: "queued bytes, all mailboxes, in MiB"},
	{key: "long_poll_default_ms", kind: kindInt, def: 30000, min: 0, allowed: "must be an integer from 0 to long_poll_max_ms", help: "wait when wait_ms is absent, in ms (at most long_poll_max_ms)"},
	{key: "long_poll_max_ms", kind: kindInt, def: 60000, min: 0, max: maxMillis, help: "clamp for wait_ms, in ms"},
	{key: "rate_limit_posts_per_minute", kind: kindInt, def: 60, reload: Live, min: 1, help: "POST tokens per window per source"},
	{key: "rate_limit_gets_per_minute", kind: kindInt, def: 120, reload: Live, min: 1, help: "GET tokens per window per source"},
	{key: "rate_limit_window_seconds", kind: kindInt, def: 60, reload: Live, min: 1, max: maxSeconds, help: "rate limit refill window in seconds"},
	{key: "rate_limit_ipv6_prefix", kind: kindInt, def: 64, reload: Live, min: 1, max: rules.MaxIPv6Prefix, help: "bits of an IPv6 source that name it"},
	{key: "rate_limit_max_sources", kind: kindInt, def: 100000, reload: Live, min: 1, help: "tracked rate limit sources"},
	{key: "ip_allowlist", kind: kindList, def: []string{}, reload: Live, allowed: rules.PrefixAllowed, help: "IPs and CIDRs exempt from rate limits"},
	{key: "ip_blocklist", kind: kindList, def: []string{}, reload: Live, allowed: rules.PrefixAllowed, help: "IPs and CIDRs answered 403 blocked"},
	{key: "trusted_proxies", kind: kindList, def: []string{}, reload: Live, allowed: rules.PrefixAllowed, help: "IPs and CIDRs whose X-Forwarded-For is believed"},
	{key: "auth_mode", kind: kindString, def: "disabled", reload: Refuse, oneOf: []string{"disabled", "server_wide", "per_mailbox", "signature"}, help: "authentication mode"},
	{key: "auth_tokens", kind: kindList, def: []string{}, reload: Live, secret: true, allowed: "must be a list of tokens, each " + rules.Allowed, help: "server tokens, plain or sha256:<hex>"},
	{key: "mailbox_tokens_file", kind: kindString, def: "", reload: Live, help: "per_mailbox token file (TOML)"},
	{key: "tls_cert_path", kind: kindString, def: "", reload: Live, help: "TLS certificate PEM file; set with tls_key_path or not at all"},
	{key: "tls_key_path", kind: kindString, def: "", reload: Live, help: "TLS key PEM file; set with tls_cert_path or not at all"},
	{key: "max_connections", kind: kindInt, def: 10000, min: 1, help: "open connections; beyond: 503"},
	{key: "max_waiting_per_source", kind: kindInt, def: 100, min: 1, max: rules.MaxWaitingPerSource, allowed: "must be an integer of at least 1 and at most " + strconv.Itoa(rules.MaxWaitingPerSource), help: "concurrent long-polls per source; beyond: 429"},
	{key: "shutdown_timeout_seconds", kind: kindInt, def: 30, min: 0, max: MaxShutdownTimeoutSeconds, help: "drain limit in seconds"},
	{key: "state_file", kind: kindString, def: "", help: "where queued messages survive a planned restart"},
	{key: "max_connections_per_source", kind: kindInt, def: 256, min: 1, help: "open connections from one source; beyond: 503"},
	{key: "store", kind: kindString, def: "memory", oneOf: []string{"memory", "redis"}, help: "message store"},
	{key: "redis_url", kind: kindString, def: "", secret: true, allowed: "must be a redis:// or rediss:// URL with a host (e.g. redis://127.0.0.1:6379/0)", help: "redis store URL, e.g. redis://127.0.0.1:6379/0"},
	{key: "redis_mode", kind: kindString, def: "standalone", oneOf: []string{"standalone", "cluster", "sentinel"}, help: "how redis_url is served"},
	{key: "redis_master_name", kind: kindString, def: "", help: "the Sentinel master's name (sentinel mode)"},
	{key: "redis_key_prefix", kind: kindString, def: "zrc:", allowed: "must be 1 to 64 printable ASCII characters without spaces, { or }", help: "prefix of every Redis key and channel, to share a Redis"},
	{key: "redis_timeout_ms", kind: kindInt, def: 1000, min: 10, max: 60000, help: "deadline of one Redis call in ms; past it: 503 store_unavailable"},
	{key: "redis_lease_ms", kind: kindInt, def: 15000, min: 1000, max: 3600000, help: "how long a message taken by a node stays invisible before it comes back, in ms"},
	{key: "redis_require_noeviction", kind: kindBool, def: true, help: "refuse to start unless Redis' maxmemory-policy is noeviction"},
	{key: "redis_wait_replicas", kind: kindInt, def: 0, min: 0, max: 16, help: "replicas that must hold a post before its 202 (WAIT)"},
	{key: "redis_shared_rate_limits", kind: kindBool, def: true, help: "keep the per-source rate limits in Redis, one budget across all nodes"},
	{key: "runtime_memory_limit_mb", kind: kindInt, def: 0, min: 0, max: maxMiB, help: "Go soft memory limit in MiB; 0 = automatic"},
	{key: "log_level", kind: kindString, def: "info", reload: Live, oneOf: []string{"debug", "info", "warn", "error"}, help: "log level"},
	{key: "log_format", kind: kindString, def: "json", oneOf: []string{"json", "console"}, help: "log format"},
}

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
		if got, want := reflect.TypeOf(f.def), t.Field(idx).Type; got != want {
			panic("BUG: conf: default of " + f.key + " is a " + got.String() + ", its Config field a " + want.String())
		}
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

// ReloadOf says what a live reload does with a change of key; an unknown
// key needs a restart.
func ReloadOf(key string) ReloadRule {
	if f := byKey[key]; f != nil {
		return f.reload
	}
	return Restart
}

// LiveKeys returns, in spec order, the keys a reload applies (R5.6).
func LiveKeys() []string {
	var keys []string
	for _, f := range fields {
		if f.reload == Live {
			keys = append(keys, f.key)
		}
	}
	return keys
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
