package conf

import (
	"fmt"
	"net/url"
	"strings"

	gotoml "github.com/pelletier/go-toml/v2"
)

// redacted replaces secret values in printed config (R5, Z6).
const redacted = "<redacted>"

// TOML returns the config as a TOML document with every key in spec order,
// as --check-config prints it. The values of secret keys are redacted
// (redact): each auth_tokens entry becomes "<redacted>", and so does the
// password of redis_url. The output parses back as a config file.
func (c Config) TOML() []byte {
	// One key at a time, in spec order; nil lists would be left out, so
	// they are written empty.
	var b []byte
	for i := range fields {
		f := &fields[i]
		v := f.get(&c)
		if l, ok := v.([]string); ok && l == nil {
			v = []string{}
		}
		if f.secret {
			v = redact(v)
		}
		line, err := gotoml.Marshal(map[string]any{f.key: v})
		if err != nil {
			panic("BUG: conf: marshalling " + f.key + " as TOML: " + err.Error())
		}
		b = append(b, line...)
	}
	return b
}

// redact hides a secret key's value: every entry of a list, and the
// password of a URL (redactURL).
func redact(v any) any {
	switch v := v.(type) {
	case []string:
		r := make([]string, len(v))
		for i := range r {
			r[i] = redacted
		}
		return r
	case string:
		return redactURL(v)
	}
	panic(fmt.Sprintf("BUG: conf: secret key holds %T", v))
}

// redactURL replaces the password of a URL with "<redacted>". A value that
// does not parse as a URL is redacted whole, since where a password sits in
// it cannot be known.
func redactURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return redacted
	}
	if u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	// url.URL.String would percent-encode "<" and ">" in the userinfo, so
	// the redacted userinfo is put in by hand.
	user := url.User(u.User.Username()).String()
	u.User = nil
	rest := strings.TrimPrefix(u.String(), u.Scheme+"://")
	return u.Scheme + "://" + user + ":" + redacted + "@" + rest
}

// RedactedRedisURL is redis_url without its password, for logs.
func (c Config) RedactedRedisURL() string { return redactURL(c.RedisURL) }
