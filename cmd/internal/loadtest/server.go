package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Metric names read from the server's /metrics (SPEC "Architecture").
const (
	metricRSS      = "process_resident_memory_bytes"
	metricCPU      = "process_cpu_seconds_total"
	metricActors   = "zrc_rendezvous_active_mailboxes"
	metricQueued   = "zrc_rendezvous_total_messages"
	metricWaiting  = "zrc_rendezvous_waiting_long_polls"
	metricEvicted  = "zrc_rendezvous_messages_evicted_total"
	metricPosted   = "zrc_rendezvous_messages_posted_total"
	metricDelivers = "zrc_rendezvous_messages_delivered_total"
)

// scrape is one read of /metrics: each series name with its samples
// summed over their labels (evicted_total over its reasons).
type scrape map[string]float64

// get returns the value of name, and whether the server reported it.
func (s scrape) get(name string) (float64, bool) {
	if s == nil {
		return 0, false
	}
	v, ok := s[name]
	return v, ok
}

// readMetrics reads every node's metrics and sums them: counters and
// gauges of the nodes together. nil when one has none.
func (r *run) readMetrics(ctx context.Context) scrape {
	var sum scrape
	for i, u := range r.metricsURLs {
		s := readMetrics(ctx, r.scrapeHC, u)
		if s == nil {
			return nil
		}
		if i == 0 {
			sum = s
			continue
		}
		for k, v := range s {
			sum[k] += v
		}
	}
	return sum
}

// readMetrics fetches and parses a Prometheus text page; nil (no error
// worth stopping for) when the server has none, like cmd/zrc-baseline.
func readMetrics(ctx context.Context, hc *http.Client, url string) scrape {
	if url == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	s := parseMetrics(io.LimitReader(resp.Body, 16<<20))
	if len(s) == 0 {
		return nil
	}
	return s
}

// parseMetrics reads Prometheus text format: "name{labels} value [ts]".
func parseMetrics(r io.Reader) scrape {
	s := scrape{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				continue
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s[name] += v
	}
	return s
}

// procStat is a process's CPU time and resident memory, read from /proc
// (Linux; elsewhere every read fails and the figures are n/a).
type procStat struct {
	cpu time.Duration
	rss int64
}

// readProcs sums the processes' CPU time and resident memory.
func readProcs(pids []int) (procStat, error) {
	var sum procStat
	for _, pid := range pids {
		ps, err := readProc(pid)
		if err != nil {
			return procStat{}, err
		}
		sum.cpu += ps.cpu
		sum.rss += ps.rss
	}
	return sum, nil
}

func readProc(pid int) (procStat, error) {
	var ps procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// The command name is in parentheses and may hold spaces: utime and
	// stime are the 12th and 13th fields after it.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return ps, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return ps, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return ps, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ps.cpu = time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return ps, err
			}
			ps.rss = kb << 10
			return ps, nil
		}
	}
	return ps, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}
