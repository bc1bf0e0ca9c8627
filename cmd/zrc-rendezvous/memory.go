package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
)

// The automatic runtime memory policy (runtime_memory_limit_mb = 0).
//
// Go's default GC (GOGC=100) lets the heap grow by as much again as the
// live heap and the goroutine stacks before it collects. For a server whose
// live heap is mostly parked long-polls that is the difference between
// about 45 and about 57 MiB resident with 1,000 of them under traffic
// (R10.2). A fixed soft memory limit would fix that case and make a
// 10,000-long-poll server, whose live heap is ten times larger, collect
// without pause; a soft limit that follows the live heap feeds on itself,
// because the span space a collection frees counts against it. So the
// governor sets GOGC instead: after every garbage collection it picks the
// percentage that lets the heap grow by
//
//	headroom = max(minHeadroom, live heap × headroomShare)
//
// before the next one — like GOGC=25 for a large heap, never more often than
// every minHeadroom of allocation for a small one, and never above Go's
// default of 100. The background scavenger then keeps resident memory close
// to the smaller heap. Updating after each collection rather than on a timer
// matters: while a thousand long-polls connect in a second, a setting from
// the second before would be far off. Under a cgroup memory limit (systemd
// MemoryMax, a container) a soft memory limit at 90 % of it is set as well.
// The minimum headroom is what R10.2 leaves room for: 8 MiB keeps 1,000
// long-polls under steady traffic about 2.5 MiB below 50 MB, with the
// connections waiting on 4 KiB stacks (docs/performance.md).
const (
	governorMinHeadroom   = 8 << 20
	governorHeadroomShare = 0.25
	cgroupShare           = 0.9
)

// memoryPolicy is what applyMemoryPolicy decided.
type memoryPolicy struct {
	mode   string // "explicit", "environment" or "automatic"
	limit  int64  // explicit limit in bytes
	cgroup int64  // cgroup memory limit in bytes, 0 when none
}

// applyMemoryPolicy chooses the runtime memory policy. GOMEMLIMIT and GOGC
// in the environment always win; a positive runtime_memory_limit_mb sets a
// fixed soft limit; 0 selects the governor.
func applyMemoryPolicy(limitMB int, getenv func(string) string) memoryPolicy {
	if getenv("GOMEMLIMIT") != "" || getenv("GOGC") != "" {
		return memoryPolicy{mode: "environment"}
	}
	if limitMB > 0 {
		p := memoryPolicy{mode: "explicit", limit: int64(limitMB) << 20}
		debug.SetMemoryLimit(p.limit)
		return p
	}
	p := memoryPolicy{mode: "automatic", cgroup: cgroupLimit("/sys/fs/cgroup/memory.max")}
	if p.cgroup > 0 {
		debug.SetMemoryLimit(int64(float64(p.cgroup) * cgroupShare))
	}
	return p
}

func (p memoryPolicy) describe() string {
	switch p.mode {
	case "explicit":
		return fmt.Sprintf("explicit soft limit %d MiB (runtime_memory_limit_mb)", p.limit>>20)
	case "environment":
		return "GOMEMLIMIT/GOGC from the environment"
	}
	s := fmt.Sprintf("automatic: GOGC set after each collection so the heap grows by max(%d MiB, %.0f%% of the live heap), at most 100",
		governorMinHeadroom>>20, governorHeadroomShare*100)
	if p.cgroup > 0 {
		s += fmt.Sprintf("; soft memory limit %.0f%% of the cgroup's %d MiB", cgroupShare*100, p.cgroup>>20)
	}
	return s
}

// start runs the governor for the automatic policy; the returned func
// stops it.
func (p memoryPolicy) start() (stop func()) {
	if p.mode != "automatic" {
		return func() {}
	}
	samples := newMemSamples()
	var mu sync.Mutex // the finalizer goroutine and stop
	stopped := false
	current := -1
	update := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return false
		}
		if pct := gcPercent(samples.read()); pct != current {
			debug.SetGCPercent(pct)
			current = pct
		}
		return true
	}
	update()
	afterEachGC(update)
	return func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
	}
}

// afterEachGC calls fn on the runtime's finalizer goroutine after every
// garbage collection for as long as fn returns true: a sentinel object
// that nothing references is finalized by the next collection, and each
// finalizer arms the next sentinel.
func afterEachGC(fn func() bool) {
	s := &gcSentinel{}
	runtime.SetFinalizer(s, func(*gcSentinel) {
		if fn() {
			afterEachGC(fn)
		}
	})
}

// gcSentinel has a pointer field so that it is a real heap object (the
// runtime may not finalize tiny pointer-free allocations).
type gcSentinel struct{ _ *int }

// memSample is what gcPercent needs from runtime/metrics.
type memSample struct {
	heapLive uint64 // live heap after the last GC
	stacks   uint64 // stack bytes the last GC scanned: part of GOGC's base
}

type memSamples struct{ s []metrics.Sample }

var memSampleNames = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes"}

func newMemSamples() *memSamples {
	m := &memSamples{s: make([]metrics.Sample, len(memSampleNames))}
	for i, n := range memSampleNames {
		m.s[i].Name = n
	}
	return m
}

func (m *memSamples) read() memSample {
	metrics.Read(m.s)
	return memSample{heapLive: m.s[0].Value.Uint64(), stacks: m.s[1].Value.Uint64()}
}

// gcPercent is the governor's rule: the GOGC value under which the heap
// grows by the headroom before the next collection. GOGC's base is the live
// heap plus the scanned goroutine stacks.
func gcPercent(s memSample) int {
	headroom := math.Max(governorMinHeadroom, float64(s.heapLive)*governorHeadroomShare)
	base := float64(s.heapLive + s.stacks)
	if base == 0 {
		return 100
	}
	return int(min(100, max(1, math.Ceil(headroom/base*100))))
}

// cgroupLimit reads a cgroup v2 memory.max file: bytes, or 0 for "max",
// a missing file or anything unreadable.
func cgroupLimit(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}
