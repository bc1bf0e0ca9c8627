package main

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		s    memSample
		want int
	}{
		{"nothing measured yet", memSample{}, 100},
		{"a small heap keeps Go's default", memSample{heapLive: 2 * mib, stacks: mib}, 100},
		{"the minimum headroom", memSample{heapLive: 8 * mib, stacks: 4 * mib}, 67},               // 8 MiB of 12
		{"a large heap grows by its share", memSample{heapLive: 160 * mib, stacks: 40 * mib}, 20}, // 40 MiB of 200
		{"1,000 parked long-polls", memSample{heapLive: 16 * mib, stacks: 4 * mib}, 40},           // 8 MiB of 20
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gcPercent(tc.s); got != tc.want {
				t.Fatalf("gcPercent(%+v) = %d; want %d", tc.s, got, tc.want)
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

// currentGOGC reads the GC percentage without changing it.
func currentGOGC() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
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
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	p := applyMemoryPolicy(0, env(nil))
	if p.mode != "automatic" {
		t.Fatalf("mode %q; want automatic", p.mode)
	}
	// Hold a live heap large enough for the governor to go below 100.
	ballast := make([][]byte, 64)
	for i := range ballast {
		ballast[i] = make([]byte, 1<<20)
	}
	runtime.GC()
	stop := p.start()
	runtime.GC()
	want := gcPercent(newMemSamples().read())
	deadline := time.Now().Add(5 * time.Second)
	for currentGOGC() != want && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
		want = gcPercent(newMemSamples().read())
	}
	got := currentGOGC()
	runtime.KeepAlive(ballast)
	if got != want || got >= 100 {
		t.Fatalf("after a collection GOGC = %d; want the governor's %d (< 100 with 64 MiB live)", got, want)
	}
	// Once stopped, it leaves GOGC alone.
	stop()
	debug.SetGCPercent(77)
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if got := currentGOGC(); got != 77 {
		t.Fatalf("stopped governor set GOGC to %d", got)
	}
}
