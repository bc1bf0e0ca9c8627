package conf

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestLayers checks that each layer overrides the previous one and that
// Sources records the winner (R7.1–R7.3).
func TestLayers(t *testing.T) {
	tests := []struct {
		name                  string
		file, envSet, flagSet bool
		wantPort              int
		wantSource            string // "%s" is the file path
	}{
		{name: "default only", wantPort: 8080, wantSource: "default"},
		{name: "file over default", file: true, wantPort: 1001, wantSource: "file %s"},
		{name: "env over default", envSet: true, wantPort: 1002, wantSource: "env ZRC_LISTEN_PORT"},
		{name: "env over file", file: true, envSet: true, wantPort: 1002, wantSource: "env ZRC_LISTEN_PORT"},
		{name: "flag over default", flagSet: true, wantPort: 1003, wantSource: "flag --listen-port"},
		{name: "flag over file", file: true, flagSet: true, wantPort: 1003, wantSource: "flag --listen-port"},
		{name: "flag over env", envSet: true, flagSet: true, wantPort: 1003, wantSource: "flag --listen-port"},
		{name: "flag over env over file", file: true, envSet: true, flagSet: true, wantPort: 1003, wantSource: "flag --listen-port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// log_level is set in the file in every case with a file, so
			// the file layer is seen to apply alongside the others.
			path := writeConfig(t, "listen_port = 1001\nlog_level = \"debug\"\n")
			var args []string
			e := map[string]string{}
			if tt.file {
				args = append(args, "--config", path)
			}
			if tt.envSet {
				e["ZRC_LISTEN_PORT"] = "1002"
			}
			if tt.flagSet {
				args = append(args, "--listen-port", "1003")
			}
			res := mustParse(t, args, env(e))
			if got := res.Config.ListenPort; got != tt.wantPort {
				t.Errorf("listen_port: got %d; want %d", got, tt.wantPort)
			}
			wantSource := strings.ReplaceAll(tt.wantSource, "%s", path)
			if got := res.Sources["listen_port"]; got != wantSource {
				t.Errorf("source: got %q; want %q", got, wantSource)
			}
			wantLevel, wantLevelSource := "info", "default"
			if tt.file {
				wantLevel, wantLevelSource = "debug", "file "+path
			}
			if got := res.Config.LogLevel; got != wantLevel {
				t.Errorf("log_level: got %q; want %q", got, wantLevel)
			}
			if got := res.Sources["log_level"]; got != wantLevelSource {
				t.Errorf("log_level source: got %q; want %q", got, wantLevelSource)
			}
		})
	}
}

// TestEveryKeyEveryLayer sets each key in each layer and reads it back.
func TestEveryKeyEveryLayer(t *testing.T) {
	// A valid non-default value per key: as TOML, and as env/flag text.
	values := map[string]struct {
		toml, text string
		want       any
	}{
		"listen_addr":                  {`"127.0.0.1"`, "127.0.0.1", "127.0.0.1"},
		"listen_port":                  {`0`, "0", 0},
		"metrics_enabled":              {`false`, "false", false},
		"metrics_listen":               {`"127.0.0.1:9090"`, "127.0.0.1:9090", "127.0.0.1:9090"},
		"max_message_size":             {`1024`, "1024", int64(1024)},
		"max_queue_length":             {`7`, "7", 7},
		"message_ttl_seconds":          {`60`, "60", 60},
		"eviction_interval_seconds":    {`5`, "5", 5},
		"idle_mailbox_timeout_seconds": {`600`, "600", 600},
		"max_mailboxes":                {`20`, "20", 20},
		"memory_limit_mb":              {`8`, "8", 8},
		"long_poll_default_ms":         {`0`, "0", 0},
		"long_poll_max_ms":             {`40000`, "40000", 40000},
		"rate_limit_posts_per_minute":  {`5`, "5", 5},
		"rate_limit_gets_per_minute":   {`6`, "6", 6},
		"rate_limit_window_seconds":    {`30`, "30", 30},
		"rate_limit_ipv6_prefix":       {`48`, "48", 48},
		"rate_limit_max_sources":       {`50`, "50", 50},
		"ip_allowlist":                 {`["10.0.0.0/8", "::1"]`, "10.0.0.0/8, ::1", []string{"10.0.0.0/8", "::1"}},
		"ip_blocklist":                 {`["192.0.2.1"]`, "192.0.2.1", []string{"192.0.2.1"}},
		"trusted_proxies":              {`["2001:db8::/32", "127.0.0.1"]`, "2001:db8::/32,127.0.0.1", []string{"2001:db8::/32", "127.0.0.1"}},
		"auth_mode":                    {`"signature"`, "signature", "signature"},
		"auth_tokens":                  {`["t1", "t2"]`, "t1,t2", []string{"t1", "t2"}},
		"mailbox_tokens_file":          {`"/etc/zrc/tokens.toml"`, "/etc/zrc/tokens.toml", "/etc/zrc/tokens.toml"},
		"tls_cert_path":                {`""`, "", ""},
		"tls_key_path":                 {`""`, "", ""},
		"max_connections":              {`9`, "9", 9},
		"max_waiting_per_source":       {`3`, "3", 3},
		"shutdown_timeout_seconds":     {`0`, "0", 0},
		"state_file":                   {`"/var/lib/zrc/state"`, "/var/lib/zrc/state", "/var/lib/zrc/state"},
		"max_connections_per_source":   {`4`, "4", 4},
		"store":                        {`"memory"`, "memory", "memory"}, // redis needs redis_url too
		"redis_url":                    {`"rediss://:pw@cache:6380/1"`, "rediss://:pw@cache:6380/1", "rediss://:pw@cache:6380/1"},
		"redis_mode":                   {`"standalone"`, "standalone", "standalone"}, // cluster would refuse redis_url's database 1
		"redis_master_name":            {`"mymaster"`, "mymaster", "mymaster"},
		"redis_key_prefix":             {`"rdv1:"`, "rdv1:", "rdv1:"},
		"redis_timeout_ms":             {`250`, "250", 250},
		"redis_lease_ms":               {`5000`, "5000", 5000},
		"redis_require_noeviction":     {`false`, "false", false},
		"redis_wait_replicas":          {`1`, "1", 1},
		"redis_shared_rate_limits":     {`false`, "false", false},
		"runtime_memory_limit_mb":      {`256`, "256", 256},
		"log_level":                    {`"warn"`, "warn", "warn"},
		"log_format":                   {`"console"`, "console", "console"},
	}
	for _, key := range KeyNames() {
		v, ok := values[key]
		if !ok {
			t.Fatalf("no test value for key %q", key)
		}
		if v.text == "" {
			continue // the TLS pair has its own tests; "" in env means unset
		}
		t.Run(key+"/file", func(t *testing.T) {
			path := writeConfig(t, key+" = "+v.toml+"\n")
			res := mustParse(t, []string{"--config", path}, env(nil))
			checkKey(t, res, key, v.want, "file "+path)
		})
		t.Run(key+"/env", func(t *testing.T) {
			res := mustParse(t, nil, env(map[string]string{envName(key): v.text}))
			checkKey(t, res, key, v.want, "env "+envName(key))
		})
		t.Run(key+"/flag", func(t *testing.T) {
			res := mustParse(t, []string{"--" + flagName(key) + "=" + v.text}, env(nil))
			checkKey(t, res, key, v.want, "flag --"+flagName(key))
		})
	}
}

func checkKey(t *testing.T, res *Result, key string, want any, wantSource string) {
	t.Helper()
	if got := byKey[key].get(&res.Config); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: got %#v; want %#v", key, got, want)
	}
	if got := res.Sources[key]; got != wantSource {
		t.Errorf("source of %s: got %q; want %q", key, got, wantSource)
	}
	for _, other := range KeyNames() {
		if other != key && res.Sources[other] != "default" {
			t.Errorf("source of %s: got %q; want default", other, res.Sources[other])
		}
	}
}

func TestEnvLists(t *testing.T) {
	tests := []struct {
		name, value string
		want        []string
	}{
		{"one", "10.0.0.1", []string{"10.0.0.1"}},
		{"comma separated", "10.0.0.1,10.0.0.0/8", []string{"10.0.0.1", "10.0.0.0/8"}},
		{"spaces trimmed", " 10.0.0.1 , ::1 ", []string{"10.0.0.1", "::1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustParse(t, nil, env(map[string]string{"ZRC_IP_ALLOWLIST": tt.value}))
			if got := res.Config.IPAllowlist; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
	t.Run("empty env is unset", func(t *testing.T) {
		path := writeConfig(t, `ip_allowlist = ["10.0.0.1"]`)
		res := mustParse(t, []string{"--config", path}, env(map[string]string{"ZRC_IP_ALLOWLIST": ""}))
		if got, want := res.Config.IPAllowlist, []string{"10.0.0.1"}; !reflect.DeepEqual(got, want) {
			t.Errorf("got %q; want %q", got, want)
		}
	})
}

func TestFlagForms(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(c Config) (got, want any)
	}{
		{"equals", []string{"--listen-port=9000"}, func(c Config) (any, any) { return c.ListenPort, 9000 }},
		{"single dash", []string{"-listen-port", "9000"}, func(c Config) (any, any) { return c.ListenPort, 9000 }},
		{"bool bare", []string{"--metrics-enabled"}, func(c Config) (any, any) { return c.MetricsEnabled, true }},
		{"bool false", []string{"--metrics-enabled=false"}, func(c Config) (any, any) { return c.MetricsEnabled, false }},
		{"list comma", []string{"--ip-allowlist", "10.0.0.1,::1"}, func(c Config) (any, any) {
			return c.IPAllowlist, []string{"10.0.0.1", "::1"}
		}},
		{"list repeated", []string{"--ip-allowlist", "10.0.0.1", "--ip-allowlist=::1"}, func(c Config) (any, any) {
			return c.IPAllowlist, []string{"10.0.0.1", "::1"}
		}},
		{"list empty", []string{"--ip-allowlist", ""}, func(c Config) (any, any) { return c.IPAllowlist, []string{} }},
		{"scalar repeated last wins", []string{"--listen-port", "1", "--listen-port", "2"}, func(c Config) (any, any) {
			return c.ListenPort, 2
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustParse(t, tt.args, env(nil))
			if got, want := tt.check(res.Config); !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v; want %#v", got, want)
			}
		})
	}
	t.Run("empty list flag overrides file", func(t *testing.T) {
		path := writeConfig(t, `ip_allowlist = ["10.0.0.1"]`)
		res := mustParse(t, []string{"--config", path, "--ip-allowlist="}, env(nil))
		if got := res.Config.IPAllowlist; len(got) != 0 {
			t.Errorf("got %q; want []", got)
		}
	})
}

func TestSwitches(t *testing.T) {
	broken := env(map[string]string{"ZRC_LISTEN_PORT": "abc"})
	tests := []struct {
		name                       string
		args                       []string
		help, version, checkConfig bool
	}{
		{"help", []string{"--help"}, true, false, false},
		{"h", []string{"-h"}, true, false, false},
		{"version", []string{"--version"}, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// --help and --version work whatever state the config is in.
			res, err := Parse(tt.args, broken)
			if err != nil {
				t.Fatalf("got error %v; want nil", err)
			}
			if res.Help != tt.help || res.Version != tt.version || res.CheckConfig != tt.checkConfig {
				t.Errorf("got help=%v version=%v check=%v; want %v %v %v",
					res.Help, res.Version, res.CheckConfig, tt.help, tt.version, tt.checkConfig)
			}
		})
	}
	t.Run("check-config validates", func(t *testing.T) {
		res, err := Parse([]string{"--check-config"}, broken)
		hasProblem(t, problems(t, err), wantProblem{"listen_port", "env ZRC_LISTEN_PORT", "must be an integer from 0 to 65535"})
		if res == nil || !res.CheckConfig {
			t.Errorf("got %+v; want a Result with CheckConfig", res)
		}
	})
}

func TestConfigPath(t *testing.T) {
	envPath := writeConfig(t, "listen_port = 1\n")
	flagPath := writeConfig(t, "listen_port = 2\n")
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantPath string
		wantPort int
	}{
		{"none", nil, nil, "", 8080},
		{"env", nil, map[string]string{"ZRC_CONFIG_PATH": envPath}, envPath, 1},
		{"flag", []string{"--config", flagPath}, nil, flagPath, 2},
		{"flag over env", []string{"--config=" + flagPath}, map[string]string{"ZRC_CONFIG_PATH": envPath}, flagPath, 2},
		{"empty flag disables env", []string{"--config", ""}, map[string]string{"ZRC_CONFIG_PATH": envPath}, "", 8080},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustParse(t, tt.args, env(tt.env))
			if res.ConfigPath != tt.wantPath {
				t.Errorf("ConfigPath: got %q; want %q", res.ConfigPath, tt.wantPath)
			}
			if res.Config.ListenPort != tt.wantPort {
				t.Errorf("listen_port: got %d; want %d", res.Config.ListenPort, tt.wantPort)
			}
		})
	}
}

func TestFileProblems(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.toml")
	tests := []struct {
		name string
		body string // written to a file unless path is set
		path string
		env  bool // name the file through ZRC_CONFIG_PATH instead of --config
		want func(path string) wantProblem
	}{
		{name: "missing file", path: missing, want: func(p string) wantProblem {
			return wantProblem{"config", "flag --config", "cannot read file " + p}
		}},
		{name: "missing file from env", path: missing, env: true, want: func(p string) wantProblem {
			return wantProblem{"config", "env ZRC_CONFIG_PATH", "cannot read file " + p}
		}},
		{name: "directory", path: dir, want: func(p string) wantProblem {
			return wantProblem{"config", "flag --config", "cannot read file " + p}
		}},
		{name: "syntax error", body: "listen_port = \n", want: func(p string) wantProblem {
			return wantProblem{"config", "flag --config", "cannot parse file " + p + " as TOML: line 1"}
		}},
		{name: "unknown key", body: "listen_prot = 1\n", want: func(p string) wantProblem {
			return wantProblem{"listen_prot", "file " + p, "unknown key in file " + p}
		}},
		{name: "unknown key suggestion", body: "listen-port = 1\n", want: func(p string) wantProblem {
			return wantProblem{"listen-port", "file " + p, "did you mean listen_port?"}
		}},
		{name: "unknown table", body: "[server]\nport = 1\n", want: func(p string) wantProblem {
			return wantProblem{"server", "file " + p, "unknown key"}
		}},
		{name: "empty key", body: "\"\" = 1\n", want: func(p string) wantProblem {
			return wantProblem{`""`, "file " + p, "unknown key"}
		}},
		{name: "string for integer", body: "listen_port = \"8080\"\n", want: func(p string) wantProblem {
			return wantProblem{"listen_port", "file " + p, `must be an integer from 0 to 65535, got a string "8080"`}
		}},
		{name: "float for integer", body: "max_message_size = 1.5\n", want: func(p string) wantProblem {
			return wantProblem{"max_message_size", "file " + p, "got a float 1.5"}
		}},
		{name: "string for bool", body: "metrics_enabled = \"yes\"\n", want: func(p string) wantProblem {
			return wantProblem{"metrics_enabled", "file " + p, `must be true or false, got a string "yes"`}
		}},
		{name: "string for list", body: "ip_allowlist = \"10.0.0.1\"\n", want: func(p string) wantProblem {
			return wantProblem{"ip_allowlist", "file " + p, "got a string"}
		}},
		{name: "integer in list", body: "auth_tokens = [1]\n", want: func(p string) wantProblem {
			return wantProblem{"auth_tokens", "file " + p, "got an integer at entry 1"}
		}},
		{name: "table for string", body: "[log_level]\nx = 1\n", want: func(p string) wantProblem {
			return wantProblem{"log_level", "file " + p, "must be one of debug, info, warn, error, got a table"}
		}},
		{name: "integer too large for int", body: "listen_port = 9223372036854775807\n", want: func(p string) wantProblem {
			return wantProblem{"listen_port", "file " + p, "must be an integer from 0 to 65535"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = writeConfig(t, tt.body)
			}
			args, e := []string{"--config", path}, map[string]string{}
			if tt.env {
				args, e = nil, map[string]string{"ZRC_CONFIG_PATH": path}
			}
			_, err := Parse(args, env(e))
			probs := problems(t, err)
			if len(probs) != 1 {
				t.Errorf("got %d problems:\n%v\nwant 1", len(probs), err)
			}
			hasProblem(t, probs, tt.want(path))
		})
	}
}

func TestCommandLineProblems(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []wantProblem
	}{
		{"unknown flag", []string{"--bogus", "1"}, []wantProblem{{"bogus", "flag --bogus", "unknown flag --bogus"}}},
		{"unknown flag suggestion", []string{"--listen_port=1"}, []wantProblem{{"listen_port", "flag --listen_port", "did you mean --listen-port?"}}},
		{"missing value", []string{"--listen-port"}, []wantProblem{{"listen_port", "flag --listen-port", "needs a value"}}},
		{"positional", []string{"serve"}, []wantProblem{{"args", "command line", `unexpected argument "serve"`}}},
		{"after terminator", []string{"--", "--listen-port"}, []wantProblem{{"args", "command line", `unexpected argument "--listen-port"`}}},
		{"bool value after space", []string{"--metrics-enabled", "false"}, []wantProblem{{"args", "command line", `unexpected argument "false"; a boolean flag takes its value after =, as in --metrics-enabled=false`}}},
		{"bad switch value", []string{"--help=maybe"}, []wantProblem{{"help", "flag --help", "must be true or false"}}},
		{"bad integer", []string{"--listen-port", "abc"}, []wantProblem{{"listen_port", "flag --listen-port", `must be an integer from 0 to 65535, got "abc"`}}},
		{"bad bool", []string{"--metrics-enabled=maybe"}, []wantProblem{{"metrics_enabled", "flag --metrics-enabled", "must be true or false"}}},
		{"all reported", []string{"--bogus", "--other=1", "--max-queue-length", "x", "stray"}, []wantProblem{
			{"bogus", "flag --bogus", "unknown flag --bogus"},
			{"other", "flag --other", "unknown flag --other"},
			{"max_queue_length", "flag --max-queue-length", "must be an integer of at least 1"},
			{"args", "command line", `unexpected argument "stray"`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.args, env(nil))
			probs := problems(t, err)
			if len(probs) != len(tt.want) {
				t.Errorf("got %d problems:\n%v\nwant %d", len(probs), err, len(tt.want))
			}
			for _, w := range tt.want {
				hasProblem(t, probs, w)
			}
		})
	}
}

// TestMultipleProblems checks that problems from every layer and from
// validation come back together (R7.7).
func TestMultipleProblems(t *testing.T) {
	path := writeConfig(t, "colour = \"blue\"\nmax_queue_length = 0\ntls_cert_path = \"/c.pem\"\n")
	_, err := Parse(
		[]string{"--config", path, "--log-format", "xml"},
		env(map[string]string{"ZRC_LISTEN_PORT": "abc", "ZRC_AUTH_MODE": "server_wide"}),
	)
	probs := problems(t, err)
	want := []wantProblem{
		{"colour", "file " + path, "unknown key"},
		{"listen_port", "env ZRC_LISTEN_PORT", "must be an integer from 0 to 65535"},
		{"max_queue_length", "file " + path, "must be an integer of at least 1, got 0"},
		{"log_format", "flag --log-format", "must be one of json, console"},
		{"auth_tokens", "default", "at least one token when auth_mode is server_wide (auth_mode from env ZRC_AUTH_MODE)"},
		{"tls_key_path", "default", "must be set when tls_cert_path is set"},
	}
	if len(probs) != len(want) {
		t.Errorf("got %d problems:\n%v\nwant %d", len(probs), err, len(want))
	}
	for _, w := range want {
		hasProblem(t, probs, w)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(probs) {
		t.Errorf("got %d lines; want one per problem (%d)", len(lines), len(probs))
	}
	for _, line := range lines {
		if !strings.HasPrefix(line, "config: ") {
			t.Errorf("got line %q; want prefix %q", line, "config: ")
		}
	}
}

func TestErrorFormat(t *testing.T) {
	err := &Error{Problems: []Problem{
		{Key: "listen_port", Source: "env ZRC_LISTEN_PORT", Message: "must be an integer from 0 to 65535"},
		{Key: "tls_key_path", Source: "default", Message: "must be set"},
	}}
	want := "config: listen_port (env ZRC_LISTEN_PORT): must be an integer from 0 to 65535\n" +
		"config: tls_key_path (default): must be set"
	if got := err.Error(); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

// TestReload checks that a reload re-reads file and env and keeps the
// flags of the start (R5.6).
func TestReload(t *testing.T) {
	path := writeConfig(t, "listen_port = 1000\nlog_level = \"warn\"\n")
	e := map[string]string{"ZRC_CONFIG_PATH": path, "ZRC_MAX_MAILBOXES": "5"}
	first := mustParse(t, []string{"--log-level", "debug", "--check-config"}, env(e))

	if err := os.WriteFile(path, []byte("listen_port = 2000\nlog_level = \"error\"\nauth_tokens = [\"new\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e["ZRC_MAX_MAILBOXES"] = "6"
	next, err := Reload(first, env(e))
	if err != nil {
		t.Fatalf("Reload: got error %v; want nil", err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"file re-read", next.Config.ListenPort, 2000},
		{"file list re-read", next.Config.AuthTokens, []string{"new"}},
		{"env re-read", next.Config.MaxMailboxes, 6},
		{"flag kept over file", next.Config.LogLevel, "debug"},
		{"flag source kept", next.Sources["log_level"], "flag --log-level"},
		{"path kept", next.ConfigPath, path},
		{"previous result untouched", first.Config.ListenPort, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v; want %#v", tt.got, tt.want)
			}
		})
	}

	t.Run("bad reload", func(t *testing.T) {
		if err := os.WriteFile(path, []byte("listen_port = \"x\"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Reload(first, env(e))
		hasProblem(t, problems(t, err), wantProblem{"listen_port", "file " + path, "must be an integer"})
	})
	t.Run("nil previous", func(t *testing.T) {
		res, err := Reload(nil, env(nil))
		if err != nil || res.Config.ListenPort != 8080 {
			t.Errorf("got %v, %v; want defaults", res, err)
		}
	})
}
