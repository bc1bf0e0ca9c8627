package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/zrc-rendezvous/zrc-rendezvous/conf"
)

// newTestReloader loads file as the config and returns a reloader whose one
// hook records the configs it committed.
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
	rl := &reloader{res: res, running: res.Config, getenv: getenv, log: zap.New(core), hooks: []reloadHook{
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

	// A hook that refuses (say, a broken certificate) refuses it all.
	os.WriteFile(file, []byte("log_level = \"warn\"\n"), 0o600)
	fail = errors.New("certificate unreadable")
	if rl.reload("test") || len(*committed) != 0 || rl.running.LogLevel != "info" {
		t.Fatal("a reload a hook refused was applied")
	}
}
