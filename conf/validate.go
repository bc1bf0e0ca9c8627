package conf

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf/rules"
)

// Problem is one thing wrong with the configuration (R7.7).
type Problem struct {
	// Key is the config key, or "config" for the config file itself, or
	// the flag name for a command-line problem.
	Key string
	// Source is where the value came from: "default", "file <path>",
	// "env ZRC_X" or "flag --x".
	Source string
	// Message says what is wrong and what is allowed. It never holds a
	// secret value.
	Message string
}

// String formats the problem as one line: config: <key> (<source>): <message>.
func (p Problem) String() string {
	return "config: " + p.Key + " (" + p.Source + "): " + p.Message
}

// Error holds every problem found at once, so an operator fixes them all
// in one pass rather than one per restart.
type Error struct {
	Problems []Problem
}

// Error joins one line per problem.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sourceValue is the Source of problems found by Config.Validate, which
// does not know where the values came from.
const sourceValue = "config value"

// Validate checks c against every rule of R7.7 and returns an *Error with
// all problems, or nil. Problems carry the source "config value"; Parse
// reports the real source of each value instead.
func (c Config) Validate() error {
	if probs := validate(&c, nil); len(probs) > 0 {
		return &Error{Problems: probs}
	}
	return nil
}

// validate checks the effective values. sources maps key to source text;
// a key missing from it gets sourceValue.
func validate(c *Config, sources map[string]string) []Problem {
	v := validator{c: c, sources: sources}

	// Single-key rules, in spec order: ranges and enumerations.
	for i := range fields {
		f := &fields[i]
		switch f.kind {
		case kindInt, kindInt64:
			n := toInt64(f.get(c))
			if n < f.min || n > f.maxValue() {
				v.addf(f.key, "%s, got %d", f.allowedText(), n)
			}
		case kindString:
			if s := f.get(c).(string); len(f.oneOf) > 0 && !slices.Contains(f.oneOf, s) {
				v.addf(f.key, "%s, got %s", f.allowedText(), quoteTrunc(s))
			}
		}
	}

	v.metricsListen()
	v.crossLimits()
	for _, key := range []string{"ip_allowlist", "ip_blocklist", "trusted_proxies"} {
		v.ipList(key, byKey[key].get(c).([]string))
	}
	v.auth()
	v.tls()
	v.store()
	return v.problems
}

// validator collects problems about one Config.
type validator struct {
	c        *Config
	sources  map[string]string
	problems []Problem
}

func (v *validator) source(key string) string {
	if s, ok := v.sources[key]; ok {
		return s
	}
	return sourceValue
}

func (v *validator) addf(key, format string, args ...any) {
	v.problems = append(v.problems, Problem{Key: key, Source: v.source(key), Message: fmt.Sprintf(format, args...)})
}

// from names where another key's value came from, for cross-key messages.
func (v *validator) from(key string) string {
	return key + " from " + v.source(key)
}

func (v *validator) metricsListen() {
	addr := v.c.MetricsListen
	if addr == "" {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		v.addf("metrics_listen", "%s, got %s", byKey["metrics_listen"].allowedText(), quoteTrunc(addr))
	}
}

// crossLimits checks the limits that depend on another key, only when that
// key is itself valid (its own problem is reported already).
func (v *validator) crossLimits() {
	c := v.c
	if c.MemoryLimitMB >= 1 && int64(c.MemoryLimitMB) <= maxMiB && c.MaxMessageSize > c.MemoryLimitBytes() {
		v.addf("max_message_size", "%s (%s = %d bytes), got %d",
			byKey["max_message_size"].allowedText(), v.from("memory_limit_mb"), c.MemoryLimitBytes(), c.MaxMessageSize)
	}
	if c.LongPollMaxMS >= 0 && c.LongPollDefaultMS > c.LongPollMaxMS {
		v.addf("long_poll_default_ms", "%s (%s = %d), got %d",
			byKey["long_poll_default_ms"].allowedText(), v.from("long_poll_max_ms"), c.LongPollMaxMS, c.LongPollDefaultMS)
	}
}

// ipList checks every entry by the rule the guard reads the lists with
// (rules.ParsePrefix, R4.5, R4.6, Z3). Addresses are not secret, so they
// are echoed.
func (v *validator) ipList(key string, list []string) {
	for i, e := range list {
		if _, err := rules.ParsePrefix(e); err != nil {
			if e == "" {
				v.addf(key, "entry %d %v; %s", i+1, err, byKey[key].allowedText())
			} else {
				v.addf(key, "entry %d %s %v; %s", i+1, quoteTrunc(e), err, byKey[key].allowedText())
			}
		}
	}
}

// auth checks the tokens and what each auth_mode needs (R5). No message
// holds a token: entries are named by position.
func (v *validator) auth() {
	c := v.c
	// The rule the guard reads the tokens with at start (rules), so
	// that --check-config refuses what the start would.
	for i, tok := range c.AuthTokens {
		if err := rules.Check(tok); err != nil {
			v.addf("auth_tokens", "entry %d %v; %s", i+1, err, byKey["auth_tokens"].allowedText())
		}
	}
	switch c.AuthMode {
	case "server_wide":
		if len(c.AuthTokens) == 0 {
			v.addf("auth_tokens", "must hold at least one token when auth_mode is server_wide (%s)", v.from("auth_mode"))
		}
	case "per_mailbox":
		if c.MailboxTokensFile == "" {
			v.addf("mailbox_tokens_file", "must name the token file when auth_mode is per_mailbox (%s)", v.from("auth_mode"))
		}
	}
}

// tls checks that the pair is set together (R8.1, R8.2) and names the
// missing half.
func (v *validator) tls() {
	c := v.c
	switch {
	case c.TLSCertPath != "" && c.TLSKeyPath == "":
		v.addf("tls_key_path", "must be set when tls_cert_path is set (%s); set both or neither", v.from("tls_cert_path"))
	case c.TLSKeyPath != "" && c.TLSCertPath == "":
		v.addf("tls_cert_path", "must be set when tls_key_path is set (%s); set both or neither", v.from("tls_key_path"))
	}
}

// store checks the Redis store's keys: redis_url whenever it is set (never
// echoed: it may hold a password), that store = "redis" has one, the modes
// and what they need, the key prefix, and that
// state_file, which only the memory store reads, is not set with it (Z13).
func (v *validator) store() {
	c := v.c
	if c.RedisMode == "sentinel" && c.RedisMasterName == "" {
		v.addf("redis_master_name", "must name the master the sentinels watch when redis_mode is sentinel (%s)", v.from("redis_mode"))
	}
	if p := c.RedisKeyPrefix; p == "" || len(p) > 64 || strings.ContainsAny(p, "{} ") || strings.IndexFunc(p, func(r rune) bool { return r < '!' || r > '~' }) >= 0 {
		v.addf("redis_key_prefix", "%s, got %s", byKey["redis_key_prefix"].allowedText(), quoteTrunc(p))
	}
	if c.Store == "redis" && c.StateFile != "" {
		v.addf("state_file", "must be empty when store is redis (%s): Redis keeps the queued messages", v.from("store"))
	}
	if c.RedisURL == "" {
		if c.Store == "redis" {
			v.addf("redis_url", "%s, needed when store is redis (%s)", byKey["redis_url"].allowedText(), v.from("store"))
		}
		return
	}
	u, err := url.Parse(c.RedisURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" || u.Opaque != "" {
		v.addf("redis_url", "%s (the value is not shown: it may hold a password)", byKey["redis_url"].allowedText())
		return
	}
	if db := strings.Trim(u.Path, "/"); c.RedisMode == "cluster" && db != "" && db != "0" {
		// A Cluster has database 0 only; another would be ignored.
		v.addf("redis_url", "must name database 0 or none when redis_mode is cluster (%s), got database %s", v.from("redis_mode"), quoteTrunc(db))
	}
}

func toInt64(v any) int64 {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int64:
		return n
	}
	panic(fmt.Sprintf("BUG: conf: integer key holds %T", v))
}
