package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload/tlstest"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore/redistest"
)

// The files in packaging/ and docs/ that operators copy are checked here,
// so that they cannot drift from the code (STYLE 4).

const packagingDir = "../../packaging"

// stateFileMargin is the time a stop leaves, after the longest drain, for
// closing the mailboxes and writing the state file (docs/operations.md).
const stateFileMargin = 15 * time.Second

// R10.5: the example config names every key with its built-in default.
func TestPackagingConfigIsTheDefaults(t *testing.T) {
	path := filepath.Join(packagingDir, "config.toml")
	res, err := conf.Parse([]string{"--config", path}, func(string) string { return "" })
	if err != nil {
		t.Fatalf("%s does not load: %v", path, err)
	}
	if want := conf.Defaults(); !reflect.DeepEqual(res.Config, want) {
		for _, k := range conf.ChangedKeys(res.Config, want) {
			t.Errorf("%s: %s differs from the built-in default", path, k)
		}
	}
	for _, k := range conf.KeyNames() {
		if src := res.Sources[k]; src != "file "+path {
			t.Errorf("%s: key %s missing (value from %s); list every key", path, k, src)
		}
	}
}

// docDefaults maps every key to its default as TOML writes it, with
// double-quoted strings: what docs/configuration.md shows.
func docDefaults(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(string(conf.Defaults().TOML()), "\n") {
		if k, v, ok := strings.Cut(line, " = "); ok {
			out[k] = strings.ReplaceAll(v, "'", `"`)
		}
	}
	return out
}

// docs/configuration.md has one table row per key — | `key` | `default` |
// reload | … — and the default and the reload column match the key table
// (conf.Defaults, conf.ReloadOf): "yes" for a key a reload applies, "no"
// otherwise, and the row of a key whose change refuses the whole reload
// says so.
func TestDocsConfigurationCoversEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		key := strings.Trim(strings.TrimSpace(cells[1]), "`")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[key] = cells[2:]
	}
	defaults := docDefaults(t)
	for _, k := range conf.KeyNames() {
		row, ok := rows[k]
		if !ok {
			t.Errorf("docs/configuration.md has no row for %s", k)
			continue
		}
		if got, want := strings.Trim(row[0], "`"), defaults[k]; got != want {
			t.Errorf("docs/configuration.md: %s default %s; the code's is %s", k, got, want)
		}
		if got, want := row[1] == "yes", conf.ReloadOf(k) == conf.Live; got != want {
			t.Errorf("docs/configuration.md: %s reload column %q; want %v", k, row[1], map[bool]string{true: "yes", false: "no"}[want])
		}
		if got, want := strings.Contains(row[2], "reload that changes it is refused"), conf.ReloadOf(k) == conf.Refuse; got != want {
			t.Errorf("docs/configuration.md: %s says a reload changing it is refused: %v; the code: %v", k, got, want)
		}
	}
	for k := range rows {
		if !slices.Contains(conf.KeyNames(), k) {
			t.Errorf("docs/configuration.md has a row for %s, which is no config key", k)
		}
	}
}

// unitDirectives parses a systemd unit into directive → values.
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is no directive", path, line)
		}
		out[k] = append(out[k], v)
	}
	return out
}

// R10.3: the unit's hardening, and the numbers that must agree with the
// server's defaults. systemd-analyze verify (in .ci/run) checks its syntax.
func TestPackagingSystemdUnit(t *testing.T) {
	path := filepath.Join(packagingDir, "zrc-rendezvous.service")
	d := unitDirectives(t, path)
	want := map[string]string{
		"ExecStart":               "/usr/bin/zrc-rendezvous --config /etc/zrc-rendezvous/config.toml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"DynamicUser":             "yes",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6",
		"CapabilityBoundingSet":   "",
		"StateDirectory":          "zrc-rendezvous",
		"Environment":             "ZRC_STATE_FILE=/var/lib/zrc-rendezvous/state.bin",
		"KillSignal":              "SIGTERM",
	}
	for k, v := range want {
		if got := d[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s: %s=%q; want %q", path, k, got, v)
		}
	}
	if len(d["MemoryMax"]) != 1 {
		t.Errorf("%s: no MemoryMax", path)
	}
	def := conf.Defaults()
	if n, err := strconv.Atoi(first(d["LimitNOFILE"])); err != nil || n < 2*def.MaxConnections {
		t.Errorf("%s: LimitNOFILE=%q; want at least twice max_connections (%d): every long-poll holds a descriptor",
			path, d["LimitNOFILE"], def.MaxConnections)
	}
	// R9.3, Z12: after the longest drain validation allows, the server
	// still writes state_file; a SIGKILL before then loses every queued
	// message.
	longest := time.Duration(conf.MaxShutdownTimeoutSeconds) * time.Second
	if stop, err := time.ParseDuration(first(d["TimeoutStopSec"])); err != nil || stop < longest+stateFileMargin {
		t.Errorf("%s: TimeoutStopSec=%q; want at least the largest shutdown_timeout_seconds (%v) plus %v to write the state file, or systemd kills the server before it is written",
			path, d["TimeoutStopSec"], longest, stateFileMargin)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// instruction is one Containerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
	line      int
}

func containerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(string(b), "\n") {
		line := strings.TrimSpace(raw)
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	return out
}

// R10.4: the Containerfile cannot be built here (no container engine), so
// its rules are checked instead: pinned bases, the Go version of go.mod, a
// static build, a distroless or scratch final stage run as a non-root user
// with an exec-form ENTRYPOINT naming the binary it copied.
func TestPackagingContainerfile(t *testing.T) {
	path := filepath.Join(packagingDir, "Containerfile")
	ins := containerfile(t, path)
	goVersion := goModVersion(t)

	var stages [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s:%d: %s before the first FROM", path, in.line, in.cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) < 2 {
		t.Fatalf("%s: %d stages; want a build stage and a runtime stage", path, len(stages))
	}
	for _, st := range stages {
		image := strings.Fields(st[0].args)[0]
		name, tag, tagged := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
		switch {
		case image == "scratch":
		case strings.Contains(image, "@sha256:"):
		case !tagged || tag == "latest":
			t.Errorf("%s:%d: FROM %s is not pinned to a tag or digest", path, st[0].line, image)
		case name == "golang" && !strings.HasPrefix(tag, goVersion+"-") && tag != goVersion:
			t.Errorf("%s:%d: FROM %s; want Go %s, go.mod's version", path, st[0].line, image, goVersion)
		}
	}
	build := stages[0]
	var built bool
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			built = strings.Contains(in.args, "CGO_ENABLED=0") && strings.Contains(in.args, "./cmd/zrc-rendezvous")
			if !built {
				t.Errorf("%s:%d: the go build is not CGO_ENABLED=0 of ./cmd/zrc-rendezvous", path, in.line)
			}
		}
	}
	if !built {
		t.Errorf("%s: the build stage runs no go build", path)
	}

	final := stages[len(stages)-1]
	base := strings.Fields(final[0].args)[0]
	if base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/static") {
		t.Errorf("%s: final stage FROM %s; want scratch or gcr.io/distroless/static*", path, base)
	}
	var user, entrypoint string
	copied := map[string]string{} // destination → source
	var exposed []string
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			f := strings.Fields(in.args)
			copied[f[len(f)-1]] = f[len(f)-2]
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "ADD":
			t.Errorf("%s:%d: ADD in the final stage; use COPY", path, in.line)
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("%s: final stage runs as %q; want a non-root USER", path, user)
	}
	var argv []string
	if err := json.Unmarshal([]byte(entrypoint), &argv); err != nil || len(argv) == 0 {
		t.Fatalf("%s: ENTRYPOINT %s is not in exec (JSON) form", path, entrypoint)
	}
	if src := copied[argv[0]]; !strings.HasSuffix(src, "/zrc-rendezvous") {
		t.Errorf("%s: ENTRYPOINT runs %s, which no COPY put there from the build", path, argv[0])
	}
	if want := strconv.Itoa(conf.Defaults().ListenPort); !slices.Contains(exposed, want) {
		t.Errorf("%s: EXPOSE %v; want the default listen_port %s", path, exposed, want)
	}
}

func goModVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no go line")
	return ""
}

// metricNameRE finds the metric names the Prometheus files use.
var metricNameRE = regexp.MustCompile(`\b(?:zrc_rendezvous|go|process)_[a-z0-9_]*[a-z0-9]\b`)

// exportedNames lists the metric names in an exposition.
func exportedNames(text string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		out[name] = true
	}
	return out
}

// The alert rules and the dashboard use only metrics a real server
// exports: one started with TLS, so that the certificate's series exists
// too, and scraped over HTTPS, and one on the Redis store, for the
// store's series.
func TestPackagingPrometheusMetricsExist(t *testing.T) {
	dir := filepath.Join(packagingDir, "prometheus")
	used := map[string][]string{} // name → files
	for _, f := range []string{"alerts.yml", "grafana-dashboard.json", "prometheus.yml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".json") && !json.Valid(b) {
			t.Fatalf("%s is not valid JSON", f)
		}
		for _, name := range metricNameRE.FindAllString(string(b), -1) {
			if !slices.Contains(used[name], f) {
				used[name] = append(used[name], f)
			}
		}
	}
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in %s; is the pattern right?", len(used), dir)
	}

	p := tlstest.Write(t, t.TempDir(), "metrics", time.Time{})
	s := startServer(t, nil, "--tls-cert-path", p.CertPath, "--tls-key-path", p.KeyPath)
	text := metricsTextTLS(t, httpsClient(p), "https://"+strings.TrimPrefix(s.url, "http://"))
	exported := exportedNames(text)
	node := startServer(t, nil, "--store", "redis", "--redis-url", redistest.Start(t).URL())
	for name := range exportedNames(metricsText(t, node)) {
		exported[name] = true
	}
	for name, files := range used {
		if !exported[name] {
			t.Errorf("%s uses %s, which the server does not export", strings.Join(files, ", "), name)
		}
	}
}

// The dashboard's queries parse as PromQL: promtool checks them as the
// expressions of recording rules. Skipped without promtool (CI has it).
func TestPackagingDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus)")
	}
	b, err := os.ReadFile(filepath.Join(packagingDir, "prometheus", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	// Grafana's variables, as Prometheus would see them expanded.
	expand := strings.NewReplacer("$__rate_interval", "1m", "$job", ".*", "$instance", ".*")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			n++
			q, _ := json.Marshal(expand.Replace(tg.Expr)) // a JSON string is a YAML string
			rules.WriteString("      - record: dashboard:query" + strconv.Itoa(n) + "\n        expr: " + string(q) + "\n")
		}
	}
	if n == 0 {
		t.Fatal("the dashboard has no queries")
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	os.WriteFile(path, []byte(rules.String()), 0o600)
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboard's %d queries: %v\n%s", n, err, out)
	}
}
