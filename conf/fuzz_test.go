package conf

import (
	"errors"
	"strings"
	"testing"

	gotoml "github.com/pelletier/go-toml/v2"
)

// FuzzParse feeds arbitrary file bodies, environment values and flag
// arguments to Parse. It must never panic; every error must be an *Error
// whose problems all name a key, a source and a message on one line; and a
// config that passes must print as TOML that parses again. The seeds run as
// part of go test.
func FuzzParse(f *testing.F) {
	f.Add("listen_port = 9000\n", uint8(1), "8080", "--log-level debug")
	f.Add("", uint8(1), "abc", "")
	f.Add("listen_port = \"x\"\n[server]\n", uint8(0), "", "--bogus 1")
	f.Add("ip_allowlist = [\"10.0.0.0/8\", 5]\n", uint8(18), "10.0.0.1,,::1", "--ip-allowlist=")
	f.Add("auth_mode = \"server_wide\"\nauth_tokens = [\"sha256:ab\"]\n", uint8(22), "a,b", "--auth-tokens x")
	f.Add("tls_cert_path = \"c\"\n", uint8(25), "k", "-h")
	f.Add("\"\" = 1\n\"a.b\" = 2\n[[x]]\ny = 1\n", uint8(31), "redis://u:p@[::1", "--=x -- y")
	f.Add("store = \"redis\"\nredis_url = \"redis://h\"\n", uint8(4), "99999999999999999999", "--max-message-size -1")
	f.Add("max_message_size = 1e3\nmetrics_enabled = 2024-01-01\n", uint8(3), "localhost", "--metrics-listen")
	f.Add("listen_port = 0x1F\nlong_poll_default_ms = 100\nlong_poll_max_ms = 50\n", uint8(200), "\n", "--check-config --version=false")

	f.Fuzz(func(t *testing.T, body string, keyIndex uint8, envValue, flagArgs string) {
		path := writeConfig(t, body)
		key := fields[int(keyIndex)%len(fields)].key
		getenv := env(map[string]string{envName(key): envValue})
		args := append([]string{"--config", path}, strings.Fields(flagArgs)...)

		res, err := Parse(args, getenv)
		if res == nil {
			t.Fatalf("got nil Result with error %v; want a Result always", err)
		}
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got error %T %v; want *conf.Error", err, err)
			}
			if len(ce.Problems) == 0 {
				t.Fatal("got *Error with no problems")
			}
			for _, p := range ce.Problems {
				if p.Key == "" || p.Source == "" || p.Message == "" {
					t.Errorf("got problem %+v; want non-empty key, source and message", p)
				}
				if strings.ContainsAny(p.Key+p.Message, "\n\r") {
					t.Errorf("got problem %+v; want it on one line", p)
				}
			}
			return
		}
		if res.Help || res.Version {
			return
		}
		if err := res.Config.Validate(); err != nil {
			t.Errorf("Parse passed but Validate: %v", err)
		}
		var m map[string]any
		if err := gotoml.Unmarshal(res.Config.TOML(), &m); err != nil {
			t.Errorf("TOML() output does not parse: %v", err)
		}
		if len(m) != len(fields) {
			t.Errorf("TOML() output has %d keys; want %d", len(m), len(fields))
		}
	})
}
