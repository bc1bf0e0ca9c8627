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
// Go's default GC lets the heap grow to twice the live heap before it
// collects. For a server whose live heap is mostly parked long-polls that is
// the difference between ~35 MiB and over 50 MiB resident (R10.2): freed
// heap pages also stay resident until the runtime's scavenger returns them,
// which it does in earnest only near a memory limit. A fixed soft limit
// would fix the small case but make a 10,000-long-poll server, whose live
// heap is far larger, collect without pause. So the governor moves the soft
// limit with the live heap: after every garbage collection it sets
//
//	limit = runtime overhead + live heap + max(minHeadroom, live heap × headroomShare)
//
// where the overhead is memory the runtime holds besides the heap's objects
// (goroutine stacks, metadata, fragmentation). The GC then runs once the
// heap has grown by 30% of the live heap (like GOGC=30), never more often
// than every minHeadroom of
// allocation, and idle heap beyond the limit goes back to the OS. GOGC=100
// stays the backstop. Updating after each collection rather than on a timer
// matters: while a thousand long-polls connect in a second, a limit from the
// second before would make the GC run back to back. Under a cgroup memory limit (systemd MemoryMax, a
// container) the soft limit never passes 90 % of it.
const (
	governorMinHeadroom   = 5 << 20
	governorHeadroomShare = 0.3
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
	return memoryPolicy{mode: "automatic", cgroup: cgroupLimit("/sys/fs/cgroup/memory.max")}
}

func (p memoryPolicy) describe() string {
	switch p.mode {
	case "explicit":
		return fmt.Sprintf("explicit soft limit %d MiB (runtime_memory_limit_mb)", p.limit>>20)
	case "environment":
		return "GOMEMLIMIT/GOGC from the environment"
	}
	s := fmt.Sprintf("automatic: soft limit = runtime overhead + live heap + max(%d MiB, %.0f%% of the live heap)",
		governorMinHeadroom>>20, governorHeadroomShare*100)
	if p.cgroup > 0 {
		s += fmt.Sprintf(", at most %.0f%% of the cgroup's %d MiB", cgroupShare*100, p.cgroup>>20)
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
	update := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			debug.SetMemoryLimit(softLimit(samples.read(), p.cgroup))
		}
		return !stopped
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

// memSample is what softLimit needs from runtime/metrics.
type memSample struct {
	heapLive uint64 // live heap after the last GC
	overhead uint64 // memory the runtime holds besides the heap's objects
}

type memSamples struct{ s []metrics.Sample }

var memSampleNames = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
}

func newMemSamples() *memSamples {
	m := &memSamples{s: make([]metrics.Sample, len(memSampleNames))}
	for i, n := range memSampleNames {
		m.s[i].Name = n
	}
	return m
}

func (m *memSamples) read() memSample {
	metrics.Read(m.s)
	v := func(i int) uint64 { return m.s[i].Value.Uint64() }
	// Fragmentation inside the heap's spans ("unused") stays part of the
	// overhead: it does not shrink when the GC runs, and leaving it out
	// made the GC run back to back once it grew past a few MiB.
	heapClasses := v(2) + v(3) + v(4)
	var overhead uint64
	if total := v(1); total > heapClasses {
		overhead = total - heapClasses
	}
	return memSample{heapLive: v(0), overhead: overhead}
}

// softLimit is the governor's rule; cgroup is 0 when there is none.
func softLimit(s memSample, cgroup int64) int64 {
	headroom := math.Max(governorMinHeadroom, float64(s.heapLive)*governorHeadroomShare)
	limit := int64(float64(s.overhead) + float64(s.heapLive) + headroom)
	if cgroup > 0 {
		limit = min(limit, int64(float64(cgroup)*cgroupShare))
	}
	return limit
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
