package main

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestSoftLimit(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name   string
		s      memSample
		cgroup int64
		want   int64
	}{
		{"small heap gets the minimum headroom", memSample{heapLive: 4 * mib, overhead: 2 * mib}, 0, 11 * mib},
		{"large heap grows by its share", memSample{heapLive: 200 * mib, overhead: 40 * mib}, 0, 300 * mib},
		{"cgroup caps it", memSample{heapLive: 200 * mib, overhead: 40 * mib}, 100 * mib, 90 * mib},
		{"a roomy cgroup does not", memSample{heapLive: 4 * mib}, 1 << 40, 9 * mib},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := softLimit(tc.s, tc.cgroup); got != tc.want {
				t.Fatalf("softLimit(%+v, %d) = %d; want %d", tc.s, tc.cgroup, got, tc.want)
			}
		})
	}
}

func TestCgroupLimit(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content, name string
		want          int64
	}{
		{"536870912\n", "bytes", 536870912},
		{"max\n", "unlimited", 0},
		{"garbage", "garbage", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			os.WriteFile(p, []byte(tc.content), 0o644)
			if got := cgroupLimit(p); got != tc.want {
				t.Fatalf("cgroupLimit(%q) = %d; want %d", tc.content, got, tc.want)
			}
		})
	}
	if got := cgroupLimit(filepath.Join(dir, "missing")); got != 0 {
		t.Fatalf("missing file: %d; want 0", got)
	}
}

func TestMemoryPolicyChoice(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

	if p := applyMemoryPolicy(100, env(map[string]string{"GOMEMLIMIT": "1GiB"})); p.mode != "environment" {
		t.Fatalf("GOMEMLIMIT set: mode %q; want environment", p.mode)
	}
	if p := applyMemoryPolicy(0, env(map[string]string{"GOGC": "50"})); p.mode != "environment" {
		t.Fatalf("GOGC set: mode %q; want environment", p.mode)
	}
	if p := applyMemoryPolicy(100, env(nil)); p.mode != "explicit" || debug.SetMemoryLimit(-1) != 100<<20 {
		t.Fatalf("explicit: mode %q limit %d; want explicit 100 MiB", p.mode, debug.SetMemoryLimit(-1))
	}
	p := applyMemoryPolicy(0, env(nil))
	if p.mode != "automatic" {
		t.Fatalf("mode %q; want automatic", p.mode)
	}
	stop := p.start()
	if got := debug.SetMemoryLimit(-1); got < governorMinHeadroom || got >= 1<<40 {
		t.Fatalf("governor set limit %d at start; want live heap plus headroom", got)
	}
	// After a collection the governor sets the limit again.
	debug.SetMemoryLimit(1 << 40)
	runtime.GC()
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) == 1<<40 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := debug.SetMemoryLimit(-1); got == 1<<40 {
		t.Fatal("governor did not update the limit after a collection")
	}
	// Once stopped, it leaves the limit alone.
	stop()
	debug.SetMemoryLimit(1 << 40)
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Fatalf("stopped governor set the limit to %d", got)
	}
}
