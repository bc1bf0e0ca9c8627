package httpapi

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	metricTypes  = []string{"counter", "gauge", "histogram", "summary", "untyped"}
)

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// key is the series' canonical form: labels sorted by name.
func seriesKey(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(name + "{")
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// parseExposition checks text against the Prometheus text format as
// strictly as Prometheus' own parser and promtool do — line syntax, label
// escaping, values, TYPE lines before their samples, no duplicate series,
// each family in one block, histograms cumulative with +Inf = _count —
// and returns the samples by series key.
func parseExposition(t testing.TB, text string) map[string]float64 {
	t.Helper()
	if !strings.HasSuffix(text, "\n") {
		t.Fatal("exposition does not end in a newline")
	}
	types := map[string]string{}
	var samples []sample
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("line %d %q: %s", n+1, line, fmt.Sprintf(format, args...))
		}
		if strings.HasPrefix(line, "#") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[1] == "TYPE" {
				if len(f) != 4 || !metricNameRE.MatchString(f[2]) || !slices.Contains(metricTypes, f[3]) {
					fail("bad TYPE line")
				}
				if _, dup := types[f[2]]; dup {
					fail("second TYPE for %s", f[2])
				}
				for _, s := range samples {
					if s.name == f[2] || strings.HasPrefix(s.name, f[2]+"_") {
						fail("TYPE after samples of %s", f[2])
					}
				}
				types[f[2]] = f[3]
			}
			continue
		}
		if line == "" {
			fail("empty line")
		}
		s, err := parseSample(line)
		if err != nil {
			fail("%v", err)
		}
		samples = append(samples, s)
	}

	// Histogram families: every base name with le-labelled _bucket series.
	hist := map[string]bool{}
	for _, s := range samples {
		if base, ok := strings.CutSuffix(s.name, "_bucket"); ok && s.labels["le"] != "" {
			hist[base] = true
		}
	}
	family := func(name string) string {
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok && hist[base] {
				return base
			}
		}
		return name
	}
	out := map[string]float64{}
	seenFamily := map[string]bool{}
	prev := ""
	for _, s := range samples {
		k := seriesKey(s.name, s.labels)
		if _, dup := out[k]; dup {
			t.Fatalf("duplicate series %s", k)
		}
		out[k] = s.value
		f := family(s.name)
		if f != prev && seenFamily[f] {
			t.Fatalf("family %s is split into several blocks", f)
		}
		seenFamily[f], prev = true, f
	}

	// Histograms: cumulative buckets ending in +Inf, which equals _count.
	type group struct {
		les   []float64
		count []float64
	}
	groups := map[string]*group{}
	for _, s := range samples {
		base, ok := strings.CutSuffix(s.name, "_bucket")
		if !ok || !hist[base] {
			continue
		}
		rest := map[string]string{}
		for k, v := range s.labels {
			if k != "le" {
				rest[k] = v
			}
		}
		gk := seriesKey(base, rest)
		g := groups[gk]
		if g == nil {
			g = &group{}
			groups[gk] = g
		}
		le, err := strconv.ParseFloat(s.labels["le"], 64)
		if err != nil {
			t.Fatalf("%s: bad le %q", gk, s.labels["le"])
		}
		g.les, g.count = append(g.les, le), append(g.count, s.value)
	}
	for gk, g := range groups {
		if !slices.IsSorted(g.les) || !slices.IsSorted(g.count) {
			t.Errorf("%s: buckets not cumulative: le %v counts %v", gk, g.les, g.count)
		}
		if len(g.les) == 0 || !math.IsInf(g.les[len(g.les)-1], 1) {
			t.Errorf("%s: no +Inf bucket", gk)
			continue
		}
		base, labels, _ := strings.Cut(gk, "{")
		if labels != "" {
			labels = "{" + labels
		}
		// Prometheus accepts a histogram without _count and _sum (the Go
		// runtime histograms come so); one that has them must agree.
		cnt, okCount := out[base+"_count"+labels]
		_, okSum := out[base+"_sum"+labels]
		if okCount != okSum || okCount && cnt != g.count[len(g.count)-1] {
			t.Errorf("%s: _count %v (present %v, _sum present %v); want both or neither, _count = +Inf bucket %v",
				gk, cnt, okCount, okSum, g.count[len(g.count)-1])
		}
		if strings.HasPrefix(base, "zrc_rendezvous_") && !okCount {
			t.Errorf("%s: no _count and _sum", gk)
		}
	}
	return out
}

// parseSample parses `name{label="value",…} value [timestamp]`.
func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value")
	}
	s.name = line[:i]
	if !metricNameRE.MatchString(s.name) {
		return s, fmt.Errorf("bad metric name %q", s.name)
	}
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			// Prometheus' parsers allow blanks around label pairs, as
			// VictoriaMetrics writes go_info_ext.
			rest = strings.TrimLeft(rest, " \t")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 || !labelNameRE.MatchString(rest[:eq]) {
				return s, fmt.Errorf("bad label in %q", rest)
			}
			name := rest[:eq]
			rest = rest[eq+2:]
			var val strings.Builder
			for {
				if rest == "" {
					return s, fmt.Errorf("unterminated label value")
				}
				c := rest[0]
				rest = rest[1:]
				if c == '"' {
					break
				}
				if c == '\\' {
					if rest == "" {
						return s, fmt.Errorf("dangling escape")
					}
					switch rest[0] {
					case '\\', '"':
						val.WriteByte(rest[0])
					case 'n':
						val.WriteByte('\n')
					default:
						return s, fmt.Errorf("bad escape \\%c", rest[0])
					}
					rest = rest[1:]
					continue
				}
				if c == '\n' {
					return s, fmt.Errorf("raw newline in label value")
				}
				val.WriteByte(c)
			}
			if _, dup := s.labels[name]; dup {
				return s, fmt.Errorf("duplicate label %s", name)
			}
			s.labels[name] = val.String()
			rest = strings.TrimLeft(rest, " \t")
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
			}
		}
	}
	f := strings.Split(rest, " ")
	if len(f) < 2 || len(f) > 3 || f[0] != "" {
		return s, fmt.Errorf("want one space, a value and an optional timestamp")
	}
	v, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return s, fmt.Errorf("bad value %q", f[1])
	}
	s.value = v
	if len(f) == 3 {
		if _, err := strconv.ParseInt(f[2], 10, 64); err != nil {
			return s, fmt.Errorf("bad timestamp %q", f[2])
		}
	}
	return s, nil
}

func (s *testServer) scrape() map[string]float64 {
	s.t.Helper()
	r := s.do(req{method: "GET", path: "/metrics"})
	if r.status != 200 {
		s.t.Fatalf("GET /metrics = %d", r.status)
	}
	wantHeader(s.t, r.header, map[string]string{"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
	return parseExposition(s.t, string(r.body))
}

// TestMetrics (R6.2): the exposition parses, carries SPEC.md's metric
// names with every labelled series at zero from the start, and counts
// requests and errors.
func TestMetrics(t *testing.T) {
	s := newTestServer(t)
	m := s.scrape()

	want := []string{
		"zrc_rendezvous_active_mailboxes",
		"zrc_rendezvous_total_messages",
		"zrc_rendezvous_messages_posted_total",
		"zrc_rendezvous_messages_delivered_total",
		`zrc_rendezvous_messages_evicted_total{reason="ttl"}`,
		`zrc_rendezvous_messages_evicted_total{reason="memory"}`,
		`zrc_rendezvous_messages_evicted_total{reason="idle"}`,
		`zrc_rendezvous_rate_limit_hits_total{kind="post"}`,
		`zrc_rendezvous_rate_limit_hits_total{kind="get"}`,
		"zrc_rendezvous_queued_bytes",
		"zrc_rendezvous_waiting_long_polls",
		"zrc_rendezvous_busy_mailboxes",
		"zrc_rendezvous_reclaim_scans_total",
		`zrc_rendezvous_queue_depth_bucket{le="+Inf"}`,
	}
	for _, row := range errorTable {
		want = append(want, `zrc_rendezvous_errors_total{code="`+row.code.Entry().Error+`"}`)
	}
	want = append(want, `zrc_rendezvous_errors_total{code="internal_error"}`)
	for _, rt := range routeNames {
		for _, mt := range methodNames {
			want = append(want, fmt.Sprintf(`zrc_rendezvous_request_latency_seconds_bucket{le="+Inf",method=%q,route=%q}`, mt, rt))
		}
	}
	for _, k := range want {
		v, ok := m[k]
		if !ok {
			t.Errorf("missing series %s", k)
		} else if v != 0 {
			t.Errorf("%s = %v before any request; want 0", k, v)
		}
	}
	var goMetrics, processMetrics bool
	for k := range m {
		goMetrics = goMetrics || strings.HasPrefix(k, "go_")
		processMetrics = processMetrics || strings.HasPrefix(k, "process_")
		if strings.Contains(k, "mailbox_id") || strings.Contains(k, rid("m")) {
			t.Errorf("per-mailbox series %s", k)
		}
	}
	if !goMetrics || !processMetrics {
		t.Errorf("go runtime metrics %v, process metrics %v; want both", goMetrics, processMetrics)
	}

	id := rid("m")
	wantError(t, s.post("nothex", "x"), 400, "bad_recipient_id")
	wantAccepted(t, s.post(id, "x"), seq0, 1)
	wantMessage(t, s.get(id, "?wait_ms=0"), "x", seq0, 0)
	wantError(t, s.do(req{method: "GET", path: "/nope"}), 404, "not_found")
	s.do(req{method: "HEAD", path: mailboxPath(id)})

	m = s.scrape()
	for k, want := range map[string]float64{
		`zrc_rendezvous_errors_total{code="bad_recipient_id"}`:                                  1,
		`zrc_rendezvous_errors_total{code="not_found"}`:                                         1,
		`zrc_rendezvous_errors_total{code="method_not_allowed"}`:                                1,
		`zrc_rendezvous_errors_total{code="queue_full"}`:                                        0,
		`zrc_rendezvous_request_latency_seconds_count{method="POST",route="mailbox"}`:           2,
		`zrc_rendezvous_request_latency_seconds_count{method="GET",route="mailbox"}`:            1,
		`zrc_rendezvous_request_latency_seconds_count{method="other",route="mailbox"}`:          1,
		`zrc_rendezvous_request_latency_seconds_count{method="GET",route="other"}`:              1,
		`zrc_rendezvous_request_latency_seconds_count{method="GET",route="metrics"}`:            1,
		`zrc_rendezvous_request_latency_seconds_bucket{le="+Inf",method="GET",route="metrics"}`: 1,
		"zrc_rendezvous_messages_posted_total":                                                  1,
		"zrc_rendezvous_messages_delivered_total":                                               1,
		"zrc_rendezvous_active_mailboxes":                                                       1,
	} {
		if got := m[k]; got != want {
			t.Errorf("%s = %v; want %v", k, got, want)
		}
	}
}

// TestMetricsRoutes: /metrics only where asked for; MetricsHandler alone
// (for metrics_listen) and without a set.
func TestMetricsRoutes(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.api.ServeMetrics = false })
	wantError(t, s.do(req{method: "GET", path: "/metrics"}), 404, "not_found")

	for _, set := range []*metrics.Set{nil, s.set} {
		w := httptest.NewRecorder()
		MetricsHandler(set).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		m := parseExposition(t, w.Body.String())
		if _, ok := m["zrc_rendezvous_active_mailboxes"]; ok != (set != nil) {
			t.Errorf("set %v: engine metrics present = %v", set != nil, ok)
		}
		if _, ok := m["go_goroutines"]; !ok {
			t.Errorf("set %v: no go_goroutines", set != nil)
		}
	}
}

// TestNoMetrics: a handler without a metrics set works and counts nothing.
func TestNoMetrics(t *testing.T) {
	s := newTestServer(t)
	h := New(Deps{Mailboxes: s.sup, Options: defaultConfig().api})
	for _, r := range []*http.Request{
		httptest.NewRequest("POST", mailboxPath(rid("n")), strings.NewReader("x")),
		httptest.NewRequest("GET", mailboxPath(rid("n"))+"?wait_ms=0", nil),
		httptest.NewRequest("GET", "/nope", nil),
		httptest.NewRequest("GET", "/metrics", nil),
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Errorf("%s %s = %d", r.Method, r.URL, w.Code)
		}
	}
}

// TestMetricsWithMetadata: with TYPE and HELP lines on (cmd may turn
// them on), this package's series still parse: one TYPE per family, before
// its samples. The supervisor's series are left out: its metrics writer
// repeats the TYPE line of each labelled messages_evicted_total series when
// metadata is on, which Prometheus rejects (reported to its owner).
func TestMetricsWithMetadata(t *testing.T) {
	metrics.ExposeMetadata(true)
	defer metrics.ExposeMetadata(false)
	s := newTestServer(t, func(c *config) { c.noEngineMetrics = true })
	wantAccepted(t, s.post(rid("md"), "x"), seq0, 1)
	m := s.scrape()
	if _, ok := m[`zrc_rendezvous_errors_total{code="queue_full"}`]; !ok {
		t.Error("errors_total series missing")
	}
}
