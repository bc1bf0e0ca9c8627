package conf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Conversion is owned per key here rather than left to mapstructure's weak
// typing, so that "abc" for listen_port is a problem naming the key and its
// source, not a silent zero (R7.7). Converters check only the type; ranges
// and cross-key rules are validate's job, on the effective values.

// fromString converts an environment or flag value. Lists are
// comma-separated with surrounding spaces trimmed; an empty string is an
// empty list. On failure it returns the problem message.
func (f *field) fromString(s string) (any, string) {
	if !utf8.ValidString(s) {
		// A TOML file cannot hold such a value, so --check-config could
		// not print it; no key needs one.
		return nil, f.allowedText() + ", got a value that is not valid UTF-8"
	}
	switch f.kind {
	case kindString:
		return s, ""
	case kindInt, kindInt64:
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || f.kind == kindInt && (n < math.MinInt || n > math.MaxInt) {
			return nil, f.allowedText() + ", got " + f.quote(s)
		}
		if f.kind == kindInt {
			return int(n), ""
		}
		return n, ""
	case kindBool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, f.allowedText() + ", got " + f.quote(s)
		}
		return b, ""
	case kindList:
		return splitList(s), ""
	}
	panic("BUG: conf: unknown kind for " + f.key)
}

// splitList splits a comma-separated list, trimming spaces around entries.
// Empty entries are kept (validation reports them: "a,,b" is a typo).
func splitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return []string{}
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// fromTOML converts a value decoded from the TOML file. TOML is typed, so
// the type must match exactly: listen_port = "8080" is a problem, not a
// conversion. On failure it returns the problem message.
func (f *field) fromTOML(v any) (any, string) {
	switch f.kind {
	case kindString:
		if s, ok := v.(string); ok {
			return s, ""
		}
	case kindInt, kindInt64:
		if n, ok := v.(int64); ok {
			if f.kind == kindInt64 {
				return n, ""
			}
			if n >= math.MinInt && n <= math.MaxInt {
				return int(n), ""
			}
		}
	case kindBool:
		if b, ok := v.(bool); ok {
			return b, ""
		}
	case kindList:
		if list, ok := v.([]any); ok {
			out := make([]string, 0, len(list))
			for i, e := range list {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Sprintf("%s, got %s at entry %d", f.allowedText(), tomlType(e), i+1)
				}
				out = append(out, s)
			}
			return out, ""
		}
	default:
		panic("BUG: conf: unknown kind for " + f.key)
	}
	return nil, f.allowedText() + ", got " + f.describeTOML(v)
}

// describeTOML names a TOML value's type, with the value itself unless the
// key is secret.
func (f *field) describeTOML(v any) string {
	t := tomlType(v)
	if f.secret {
		return t
	}
	switch v := v.(type) {
	case string:
		return t + " " + quoteTrunc(v)
	case int64, float64, bool:
		return fmt.Sprintf("%s %v", t, v)
	}
	return t
}

// tomlType names the TOML type of a decoded value.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date-time"
	}
	return "a date or time"
}

// quote shows a rejected env or flag value, unless the key is secret.
func (f *field) quote(s string) string {
	if f.secret {
		return "a value not shown (secret)"
	}
	return quoteTrunc(s)
}

// quoteTrunc quotes s, cut to a length that keeps one problem on one line.
func quoteTrunc(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "…"
	}
	return strconv.Quote(s)
}
