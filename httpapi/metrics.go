package httpapi

import (
	"net/http"

	"github.com/VictoriaMetrics/metrics"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/apierr"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
)

// latencyBuckets run from sub-millisecond answers up to the longest
// long-poll (long_poll_max_ms defaults to 60 s) and beyond, in seconds.
var latencyBuckets = []float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60, 120,
}

// apiMetrics are the HTTP layer's series, all created in New so that every
// labelled series exists at zero from the start. A request finds its
// series by array index: no map lookup and no formatting per request.
// Every pointer is nil when New got no metrics set.
type apiMetrics struct {
	latency [numRoutes][numMethods]*metrics.PrometheusHistogram
	// errors counts error answers by JSON code: those of errorTable and
	// internal_error; nil for the catalogue's other answers.
	errors [apierr.NumCodes]*metrics.Counter
	// rateLimitHits counts 429s by the request's kind (writeError).
	rateLimitHits [guard.NumKinds]*metrics.Counter
}

func newAPIMetrics(set *metrics.Set) apiMetrics {
	var m apiMetrics
	if set == nil {
		return m
	}
	for rt := range numRoutes {
		for mt := range numMethods {
			name := `zrc_rendezvous_request_latency_seconds{route="` + routeNames[rt] + `",method="` + methodNames[mt] + `"}`
			m.latency[rt][mt] = set.NewPrometheusHistogramExt(name, latencyBuckets)
		}
	}
	for _, row := range errorTable {
		m.errors[row.code] = set.NewCounter(`zrc_rendezvous_errors_total{code="` + row.code.Entry().Error + `"}`)
	}
	m.errors[apierr.Internal] = set.NewCounter(`zrc_rendezvous_errors_total{code="` + apierr.Internal.Entry().Error + `"}`)
	for k := range guard.NumKinds {
		m.rateLimitHits[k] = set.NewCounter(`zrc_rendezvous_rate_limit_hits_total{kind="` + k.String() + `"}`)
	}
	return m
}

var hvPrometheus = []string{"text/plain; version=0.0.4; charset=utf-8"}

// MetricsHandler serves set (nil: none) and the Go runtime and process
// metrics in the Prometheus text format (R6.2). New mounts it on GET
// /metrics when Options.ServeMetrics is set; cmd mounts it on
// metrics_listen otherwise.
func MetricsHandler(set *metrics.Set) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = hvPrometheus
		if set != nil {
			set.WritePrometheus(w)
		}
		metrics.WriteProcessMetrics(w)
		// Open and maximum file descriptors: every connection, a parked
		// long-poll's too, holds one (max_connections, LimitNOFILE).
		metrics.WriteFDMetrics(w)
	})
}
