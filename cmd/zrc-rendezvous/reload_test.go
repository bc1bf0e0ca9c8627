package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
)

// newTestReloader loads file as the config and returns a reloader whose one
// hook records the configs it committed; its failures count in
// zrc_rendezvous_reload_failures_total of the reloader's own set.
func newTestReloader(t *testing.T, file string, fail *error) (*reloader, *[]conf.Config, *observer.ObservedLogs) {
	t.Helper()
	getenv := func(k string) string {
		if k == "ZRC_CONFIG_PATH" {
			return file
		}
		return ""
	}
	res, err := conf.Parse(nil, getenv)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	var committed []conf.Config
	rl := &reloader{res: res, running: res.Config, getenv: getenv, log: zap.New(core), failures: newReloadFailures(metrics.NewSet()), hooks: []reloadHook{
		func(next conf.Config) (func(), error) {
			if *fail != nil {
				return nil, *fail
			}
			return func() { committed = append(committed, next) }, nil
		},
	}}
	return rl, &committed, logs
}

func TestReloadAppliesLiveKeysAndReportsTheRest(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(file, []byte("log_level = \"info\"\nlisten_port = 8080\n"), 0o600)
	var fail error
	rl, committed, logs := newTestReloader(t, file, &fail)

	os.WriteFile(file, []byte("log_level = \"debug\"\nlisten_port = 9999\n"), 0o600)
	if !rl.reload("test") {
		t.Fatalf("reload refused: %v", logs.All())
	}
	if len(*committed) != 1 || (*committed)[0].LogLevel != "debug" {
		t.Fatalf("committed %+v; want one config with log_level debug", *committed)
	}
	if rl.running.LogLevel != "debug" || rl.running.ListenPort != 8080 {
		t.Fatalf("running log_level %q listen_port %d; want debug, 8080 (a restart key keeps its value)",
			rl.running.LogLevel, rl.running.ListenPort)
	}
	warn := logs.FilterMessage("changed keys need a restart; ignored until then").All()
	if len(warn) != 1 || !slices.Equal(warn[0].ContextMap()["keys"].([]interface{}), []interface{}{"listen_port"}) {
		t.Fatalf("restart warning: %+v; want one naming listen_port", warn)
	}
	// Reloading the same file again still reports the pending restart.
	rl.reload("test")
	if n := logs.FilterMessage("changed keys need a restart; ignored until then").Len(); n != 2 {
		t.Fatalf("%d restart warnings after a second reload; want 2", n)
	}
}

// A reload with a bad file, a hook's refusal or a changed auth_mode keeps
// the running config and counts in zrc_rendezvous_reload_failures_total.
func TestReloadRefusesBadFileAndKeepsRunningConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(file, []byte("log_level = \"info\"\n"), 0o600)
	var fail error
	rl, committed, logs := newTestReloader(t, file, &fail)

	os.WriteFile(file, []byte("log_level = \"loud\"\nmax_queue_length = 0\n"), 0o600)
	if rl.reload("test") {
		t.Fatal("reload of an invalid file applied")
	}
	problems := logs.FilterMessage("reload refused; keeping the running config").All()
	if len(problems) != 2 {
		t.Fatalf("%d problems logged; want 2 (log_level, max_queue_length): %+v", len(problems), problems)
	}
	if len(*committed) != 0 || rl.running.LogLevel != "info" {
		t.Fatalf("a refused reload changed something")
	}
	if n := rl.failures.Get(); n != 1 {
		t.Fatalf("reload failures %d; want 1", n)
	}

	// A hook that refuses (say, an unusable token file) refuses it all.
	os.WriteFile(file, []byte("log_level = \"warn\"\n"), 0o600)
	fail = errors.New("token file unreadable")
	if rl.reload("test") || len(*committed) != 0 || rl.running.LogLevel != "info" {
		t.Fatal("a reload a hook refused was applied")
	}
	if n := rl.failures.Get(); n != 2 {
		t.Fatalf("reload failures %d; want 2", n)
	}

	// R5.6: a change of auth_mode needs a restart, and ignoring it would
	// leave the mailboxes under another mode than the file shows, so it
	// refuses the whole reload loudly: an error line naming the key, a
	// failure counted, nothing applied (not even the tokens beside it),
	// until the change is undone.
	fail = nil
	os.WriteFile(file, []byte("log_level = \"debug\"\nauth_mode = \"server_wide\"\nauth_tokens = [\"t1\"]\n"), 0o600)
	before := logs.Len()
	if rl.reload("test") {
		t.Fatal("a reload changing auth_mode applied")
	}
	refused := logs.All()[before:]
	want := map[string]interface{}{
		"trigger": "test", "key": "auth_mode", "source": "file " + file,
		"problem": "a change of auth_mode needs a restart; the running value stays in force and nothing of this reload is applied until the restart, or until the change is undone",
	}
	if len(refused) != 1 || refused[0].Level != zap.ErrorLevel || refused[0].Message != "reload refused; keeping the running config" ||
		!reflect.DeepEqual(refused[0].ContextMap(), want) {
		t.Fatalf("log lines %+v; want one error line %v", refused, want)
	}
	if len(*committed) != 0 || rl.running.AuthMode != "disabled" || rl.running.LogLevel != "info" || len(rl.running.AuthTokens) != 0 {
		t.Fatalf("a refused reload changed something: committed %d, running %+v", len(*committed), rl.running)
	}
	if n := rl.failures.Get(); n != 3 {
		t.Fatalf("reload failures %d; want 3", n)
	}

	// Undone, the rest of the edit applies.
	os.WriteFile(file, []byte("log_level = \"debug\"\nauth_mode = \"disabled\"\nauth_tokens = [\"t1\"]\n"), 0o600)
	if !rl.reload("test") || rl.running.LogLevel != "debug" || rl.failures.Get() != 3 {
		t.Fatalf("reload after undoing the auth_mode change: running %+v, failures %d", rl.running, rl.failures.Get())
	}
}

// R5.6 through the real process: turning auth_mode on in the file and
// reloading is refused loudly (an error line, the failure counted) while
// /health stays healthy; the running mode stays, as the line says.
func TestProcessReloadRefusesAuthModeChange(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(file, []byte("auth_mode = \"disabled\"\n"), 0o600)
	s := startServer(t, []string{"ZRC_CONFIG_PATH=" + file})
	if m := metricsText(t, s); !strings.Contains(m, "\nzrc_rendezvous_reload_failures_total 0\n") {
		t.Fatal("metrics at start lack zrc_rendezvous_reload_failures_total 0")
	}
	os.WriteFile(file, []byte("auth_mode = \"server_wide\"\nauth_tokens = [\"t1\"]\n"), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	// The watcher refuses the changed file a second time.
	polltest.Until(t, "both reloads are refused", func() bool {
		return strings.Count(s.log(), `"msg":"reload refused; keeping the running config","trigger":`) == 2
	})
	if !strings.Contains(s.log(), `"level":"error"`) || !strings.Contains(s.log(), `"key":"auth_mode","source":"file `+file+`"`) {
		t.Fatalf("the refusal is not an error line naming auth_mode and its file:\n%s", s.log())
	}
	if m := metricsText(t, s); !strings.Contains(m, "\nzrc_rendezvous_reload_failures_total 2\n") {
		t.Fatal("metrics after two refused reloads lack zrc_rendezvous_reload_failures_total 2")
	}
	resp, err := http.Get(s.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), `{"status":"healthy"`) {
		t.Fatalf("/health after a refused reload: %d %s; want 200 healthy", resp.StatusCode, body)
	}
}
