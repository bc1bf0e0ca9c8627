package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
)

// residentBytes reads VmRSS of a process from /proc.
func residentBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// cpuTime reads a process's user plus system CPU time from /proc.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: utime and stime are the 12th and 13th of those.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// loadFigures is what one steady-traffic run measured.
type loadFigures struct {
	idleRSS            int64 // with every long-poll parked, before traffic
	medianRSS, peakRSS int64
	delivered          int64
	cpu                time.Duration // the server's CPU time during the traffic
}

// steadyLoad holds one long-poll open on each of `mailboxes` mailboxes and
// posts `rate` messages a second of `size` bytes round-robin across them for
// `d`, sampling the server's resident memory every 100 ms.
func steadyLoad(t *testing.T, s *server, mailboxes, rate, size int, d time.Duration) loadFigures {
	t.Helper()
	tr := &http.Transport{
		MaxIdleConnsPerHost: mailboxes + 64,
		DialContext:         (&net.Dialer{}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ids := make([]string, mailboxes)
	for i := range ids {
		ids[i] = fmt.Sprintf("%064x", i+1)
	}
	var delivered atomic.Int64
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/v1/mailbox/"+id+"?wait_ms=30000", nil)
				resp, err := client.Do(req)
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					delivered.Add(1)
				}
			}
		}()
	}
	if s.baseline {
		// The baseline has no metrics: give the polls time to park.
		time.Sleep(time.Second)
	} else {
		polltest.Until(t, "every long-poll waits", func() bool {
			return strings.Contains(metricsText(t, s), fmt.Sprintf("zrc_rendezvous_waiting_long_polls %d\n", mailboxes))
		})
	}
	time.Sleep(300 * time.Millisecond)
	idle, _ := residentBytes(s.cmd.Process.Pid)
	body := strings.Repeat("x", size)
	cpu0, _ := cpuTime(s.cmd.Process.Pid)
	var rss []int64
	tick := time.NewTicker(time.Second / time.Duration(rate))
	sample := time.NewTicker(100 * time.Millisecond)
	end := time.After(d)
	posters := make(chan string, 256)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range posters {
				req, _ := http.NewRequestWithContext(ctx, "POST", s.url+"/v1/mailbox/"+id, strings.NewReader(body))
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	for i := 0; ; i++ {
		select {
		case <-tick.C:
			select {
			case posters <- ids[i%mailboxes]:
			default: // the server is behind: skip rather than queue up here
			}
			continue
		case <-sample.C:
			if r, err := residentBytes(s.cmd.Process.Pid); err == nil {
				rss = append(rss, r)
			}
			continue
		case <-end:
		}
		break
	}
	tick.Stop()
	sample.Stop()
	cpu1, _ := cpuTime(s.cmd.Process.Pid)
	close(posters)
	cancel()
	wg.Wait()
	sort.Slice(rss, func(i, j int) bool { return rss[i] < rss[j] })
	return loadFigures{cpu: cpu1 - cpu0, idleRSS: idle, medianRSS: rss[len(rss)/2], peakRSS: rss[len(rss)-1], delivered: delivered.Load()}
}

// R10.2: with default settings, 1,000 mailboxes each holding a waiting
// long-poll under steady traffic stay under 50 MB resident.
func TestProcessResidentMemoryBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a real server for several seconds")
	}
	s := startServer(t, []string{"GOGC=", "GOMEMLIMIT="})
	f := steadyLoad(t, s, 1000, 2000, 1024, 5*time.Second)
	t.Logf("1000 long-polls, 2000 msg/s of 1 KiB: RSS median %.1f MiB, peak %.1f MiB, %d delivered",
		float64(f.medianRSS)/(1<<20), float64(f.peakRSS)/(1<<20), f.delivered)
	if f.delivered < 1000 {
		t.Fatalf("only %d messages delivered: the load did not run", f.delivered)
	}
	if f.peakRSS >= 50_000_000 {
		t.Fatalf("peak RSS %d bytes; R10.2 budget is under 50 MB", f.peakRSS)
	}
}

// startBaseline runs cmd/zrc-baseline on a free loopback port.
func startBaseline(t *testing.T, env []string) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &server{cmd: exec.Command(baselineBinary, "--listen", addr), url: "http://" + addr, baseline: true, done: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stderr = &s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	polltest.Until(t, "/health answers", func() bool {
		resp, err := http.Get(s.url + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return s
}

// TestMeasureMemoryPolicies is the measurement behind docs/performance.md,
// not a pass/fail test: it drives the bare baseline, this server with Go's
// default GC (GOGC=100, the governor off) and this server with its default
// automatic memory policy, alternating, through the same steady load, and
// logs a table of medians over the rounds. Run it with
//
//	ZRC_MEASURE=1 ZRC_MEASURE_POLLS=1000 go test -run TestMeasureMemoryPolicies -v ./cmd/zrc-rendezvous/
func TestMeasureMemoryPolicies(t *testing.T) {
	if os.Getenv("ZRC_MEASURE") == "" {
		t.Skip("set ZRC_MEASURE=1")
	}
	polls := 1000
	if n, err := strconv.Atoi(os.Getenv("ZRC_MEASURE_POLLS")); err == nil {
		polls = n
	}
	const rounds, rate, size, d = 3, 2000, 1024, 6 * time.Second
	type config struct {
		name     string
		baseline bool
		env      []string
	}
	configs := []config{
		{"baseline (GOGC=100)", true, []string{"GOGC=100"}},
		{"zrc-rendezvous, GOGC=100", false, []string{"GOGC=100"}},
		{"zrc-rendezvous, automatic policy", false, []string{"GOGC=", "GOMEMLIMIT="}},
	}
	results := make([][]loadFigures, len(configs))
	gcs := make([][]int, len(configs))
	for range rounds {
		for i, c := range configs {
			var s *server
			if c.baseline {
				s = startBaseline(t, append(c.env, "GODEBUG=gctrace=1"))
			} else {
				s = startServer(t, append(c.env, "GODEBUG=gctrace=1"), "--max-connections", "30000", "--max-mailboxes", "30000")
			}
			f := steadyLoad(t, s, polls, rate, size, d)
			s.cmd.Process.Kill()
			s.cmd.Wait()
			if !c.baseline {
				<-s.done
			}
			n := 0
			for _, l := range strings.Split(s.log()+s.logs.String(), "\n") {
				if strings.HasPrefix(l, "gc ") {
					n++
				}
			}
			results[i] = append(results[i], f)
			gcs[i] = append(gcs[i], n)
		}
	}
	median := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	t.Logf("%d parked long-polls, %d msg/s of %d B offered for %v, %d rounds, medians:", polls, rate, size, d, rounds)
	t.Logf("| server | idle RSS MiB | median RSS MiB | peak RSS MiB | delivered/s | CPU µs/msg | GCs |")
	for i, c := range configs {
		var idle, med, peak, rateOut, cpu, gc []float64
		for j, f := range results[i] {
			idle = append(idle, mib(f.idleRSS))
			med = append(med, mib(f.medianRSS))
			peak = append(peak, mib(f.peakRSS))
			rateOut = append(rateOut, float64(f.delivered)/d.Seconds())
			cpu = append(cpu, float64(f.cpu.Microseconds())/float64(max(f.delivered, 1)))
			gc = append(gc, float64(gcs[i][j]))
		}
		t.Logf("| %s | %.1f | %.1f | %.1f | %.0f | %.0f | %.0f |", c.name,
			median(idle), median(med), median(peak), median(rateOut), median(cpu), median(gc))
	}
}

// metricValue reads one unlabelled sample from a /metrics scrape.
func metricValue(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// A parked long-poll costs two goroutine stacks, both net/http's: the
// connection's, which keeps the size it grew to while the request was read
// and the wait prepared (the runtime halves a parked stack only while under
// a quarter of it is in use, and net/http's frames alone take about
// 1.3 KiB), and the background reader that notices a client leaving. The
// mailbox actor needs none while it waits. The connection's stack stays at
// 4 KiB as long as nothing on the GET's path needs more: a deeper path (a
// wrapping middleware, a fatter frame, the mailbox created under the
// checks' frames) puts every connection at 8 KiB — 11.9 MiB here when the
// last of those happened — and this test catches it.
func TestProcessParkedStackFootprint(t *testing.T) {
	const polls = 1000
	s := startServer(t, nil)
	cancel := parkPolls(t, s, polls)
	defer cancel()
	const budget = polls*(7<<10) + 2<<20
	stack := stacksSettle(t, s, budget)
	t.Logf("%d parked long-polls: %.1f MiB of goroutine stacks", polls, stack/(1<<20))
	if stack > budget {
		t.Fatalf("stacks hold %.0f bytes with %d parked long-polls; budget %d (7 KiB per waiting long-poll + 2 MiB)", stack, polls, budget)
	}
}

// A connection that has answered requests waits for its next long-poll on
// a 4 KiB stack: the answers are written off its goroutine (httpapi's
// postEndpoint). Answered on the connection's own goroutine, net/http's
// header writer would have grown each to 8 KiB for good: 12 KiB per
// waiting long-poll with its background reader, over this budget.
func TestProcessStackFootprintAfterAnswers(t *testing.T) {
	const polls = 1000
	s := startServer(t, nil)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	var answered atomic.Int64
	for i := range polls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A client of its own: all three requests on one connection.
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			url := fmt.Sprintf("%s/v1/mailbox/%064x", s.url, i+1)
			resp, err := client.Post(url, "", strings.NewReader("hello"))
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp, err = client.Get(url + "?wait_ms=0"); err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				answered.Add(1)
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", url+"?wait_ms=60000", nil)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		if i%250 == 249 {
			time.Sleep(20 * time.Millisecond) // spare the accept queue
		}
	}
	polltest.Until(t, "every long-poll waits", func() bool {
		return strings.Contains(metricsText(t, s), fmt.Sprintf("zrc_rendezvous_waiting_long_polls %d\n", polls))
	})
	if got := answered.Load(); got != polls {
		t.Fatalf("%d of %d connections had their message answered before waiting", got, polls)
	}
	const budget = polls*(8<<10) + 2<<20
	stack := stacksSettle(t, s, budget)
	t.Logf("%d long-polls parked after answers on their connections: %.1f MiB of goroutine stacks", polls, stack/(1<<20))
	if stack > budget {
		t.Fatalf("stacks hold %.0f bytes with %d parked long-polls whose connections answered before; budget %d (8 KiB per waiting long-poll + 2 MiB)", stack, polls, budget)
	}
}

// stacksSettle returns the server's goroutine stack bytes once they are
// within budget, or the last figure seen after 20 s. Stacks shrink and
// free stack memory returns only during garbage collections, and an idle
// server collects rarely: traffic (stir) brings them on.
func stacksSettle(t *testing.T, s *server, budget float64) float64 {
	t.Helper()
	client := &http.Client{}
	var stack float64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); stir(s, client) {
		stack = metricValue(t, metricsText(t, s), "go_memstats_stack_inuse_bytes")
		if stack <= budget {
			break
		}
	}
	return stack
}

// stir posts and gets 50 messages of 4 KiB on a mailbox of its own:
// traffic that brings the server's garbage collections on.
func stir(s *server, client *http.Client) {
	other := s.url + "/v1/mailbox/" + strings.Repeat("f", 64)
	for range 50 {
		if resp, err := client.Post(other, "", strings.NewReader(strings.Repeat("x", 4096))); err == nil {
			resp.Body.Close()
		}
		if resp, err := client.Get(other + "?wait_ms=0"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

// parkPolls opens n long-polls, one per mailbox, and returns once they are
// parked (by the server's count, or after a pause for the baseline) and a
// cancel func that ends them.
func parkPolls(t *testing.T, s *server, n int) (cancel func()) {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: n + 16}
	client := &http.Client{Transport: tr}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v1/mailbox/%064x?wait_ms=60000", s.url, i+1), nil)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		if i%250 == 249 {
			time.Sleep(20 * time.Millisecond) // spare the accept queue
		}
	}
	if s.baseline {
		time.Sleep(time.Second + time.Duration(n)*50*time.Microsecond)
	} else {
		polltest.Until(t, "every long-poll waits", func() bool {
			return strings.Contains(metricsText(t, s), fmt.Sprintf("zrc_rendezvous_waiting_long_polls %d\n", n))
		})
	}
	time.Sleep(500 * time.Millisecond)
	return func() { stop(); wg.Wait(); tr.CloseIdleConnections() }
}

// TestMeasureFootprints is the measurement behind docs/performance.md's
// per-long-poll and per-message figures (not a pass/fail test): resident
// memory per parked long-poll (one per mailbox) at 1,000 and 10,000, and
// per queued 1 KiB message, for cmd/zrc-baseline and this server with its
// defaults, alternating, medians of the rounds. Run it with
//
//	ZRC_MEASURE=1 go test -run TestMeasureFootprints -v ./cmd/zrc-rendezvous/
func TestMeasureFootprints(t *testing.T) {
	if os.Getenv("ZRC_MEASURE") == "" {
		t.Skip("set ZRC_MEASURE=1")
	}
	const rounds = 3
	start := func(baseline bool) *server {
		if baseline {
			return startBaseline(t, nil)
		}
		return startServer(t, []string{"GOGC=", "GOMEMLIMIT="}, "--max-connections", "30000", "--max-mailboxes", "30000")
	}
	rss := func(s *server) float64 {
		r, err := residentBytes(s.cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		return float64(r)
	}
	median := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	// The idle figure is taken once the server has answered a /metrics
	// scrape, as every deployed one has: parkPolls scrapes this server to
	// learn when its long-polls wait, and the first scrape alone brings
	// about 1 MiB of code and buffers in, which is not the long-polls'.
	idleRSS := func(s *server) float64 {
		if !s.baseline {
			metricsText(t, s)
		}
		return rss(s)
	}
	for _, n := range []int{1000, 10000} {
		per := map[bool][]float64{}
		for range rounds {
			for _, baseline := range []bool{true, false} {
				s := start(baseline)
				before := idleRSS(s)
				cancel := parkPolls(t, s, n)
				per[baseline] = append(per[baseline], (rss(s)-before)/float64(n))
				cancel()
				s.cmd.Process.Kill()
				s.cmd.Wait()
			}
		}
		b, z := median(per[true]), median(per[false])
		t.Logf("parked long-polls, %d: baseline %.1f KiB, zrc-rendezvous %.1f KiB each: ratio %.2f", n, b/1024, z/1024, z/b)
	}
	// Queued messages: 10,000 of 1 KiB over 1,000 mailboxes, nobody reading.
	const queued, size = 10000, 1024
	per := map[bool][]float64{}
	body := strings.Repeat("q", size)
	for range rounds {
		for _, baseline := range []bool{true, false} {
			s := start(baseline)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
			before := idleRSS(s)
			var wg sync.WaitGroup
			for p := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := p; i < queued; i += 8 {
						resp, err := client.Post(fmt.Sprintf("%s/v1/mailbox/%064x", s.url, i%1000+1), "", strings.NewReader(body))
						if err != nil {
							t.Error(err)
							return
						}
						resp.Body.Close()
						if resp.StatusCode != http.StatusAccepted {
							t.Errorf("post: %d", resp.StatusCode)
						}
					}
				}()
			}
			wg.Wait()
			time.Sleep(time.Second)
			per[baseline] = append(per[baseline], (rss(s)-before)/queued)
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
	}
	b, z := median(per[true]), median(per[false])
	t.Logf("queued 1 KiB messages, %d: baseline %.2f KiB, zrc-rendezvous %.2f KiB each: ratio %.2f", queued, b/1024, z/1024, z/b)
}
