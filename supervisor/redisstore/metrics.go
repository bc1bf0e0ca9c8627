package redisstore

import (
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// op names a store call for its metrics and logs.
type op int

const (
	opPost op = iota
	opTake
	opPutBack
	opAck
	opUnclaim
	opRateLimit
	numOps
)

func (o op) String() string {
	return [...]string{"post", "take", "put_back", "ack", "unclaim", "rate_limit"}[o]
}

// callBuckets span a local round trip (~0.1 ms) to the largest
// redis_timeout_ms worth telling apart.
var callBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

type storeMetrics struct {
	latency     [numOps]*metrics.PrometheusHistogram
	errors      [numOps]*metrics.Counter
	redelivered *metrics.Counter // messages back from an expired lease
	reconnects  *metrics.Counter // pub/sub connections regained
	pushed      *metrics.Counter // messages another node's post leased to a waiter here
	moved       *metrics.Counter // Cluster watches subscribed again on their slot's master
}

// newStoreMetrics registers the store's series on set; nil: a private
// set nobody scrapes.
func newStoreMetrics(set *metrics.Set) storeMetrics {
	if set == nil {
		set = metrics.NewSet()
	}
	var m storeMetrics
	for o := range numOps {
		m.latency[o] = set.NewPrometheusHistogramExt(`zrc_rendezvous_store_call_seconds{op="`+o.String()+`"}`, callBuckets)
		m.errors[o] = set.NewCounter(`zrc_rendezvous_store_errors_total{op="` + o.String() + `"}`)
	}
	m.redelivered = set.NewCounter("zrc_rendezvous_store_lease_redeliveries_total")
	m.reconnects = set.NewCounter("zrc_rendezvous_store_pubsub_reconnects_total")
	m.pushed = set.NewCounter("zrc_rendezvous_store_pushed_total")
	m.moved = set.NewCounter("zrc_rendezvous_store_subscriptions_moved_total")
	return m
}

func (m *storeMetrics) observe(o op, d time.Duration, err error) {
	m.latency[o].Update(d.Seconds())
	if err != nil {
		m.errors[o].Inc()
	}
}
