#!/usr/bin/env bash
# compare.sh: drive cmd/zrc-baseline and zrc-rendezvous with the same load,
# alternating, a fresh process of each per round, and print the median of
# the per-round ratios (docs/performance.md, "CPU and latency against the baseline").
#
#   bash cmd/zrc-baseline/compare.sh [ROUNDS] [MAILBOXES] [RATE] [DURATION]
#
# Needs Go, python3 and Linux (/proc). Loopback only; every run is bounded.
set -euo pipefail
ROUNDS=${1:-5}; M=${2:-1000}; RATE=${3:-2000}; DUR=${4:-8s}
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
# Both static, as releases are built (Taskfile.yml).
CGO_ENABLED=0 go build -o "$bin/zrc" ./cmd/zrc-rendezvous
CGO_ENABLED=0 go build -o "$bin/base" ./cmd/zrc-baseline
ulimit -n "$(ulimit -Hn)"
# Defaults, but for the per-source limits: all the load comes from one host.
FLAGS="--listen-addr 127.0.0.1 --rate-limit-posts-per-minute 100000000 --rate-limit-gets-per-minute 100000000
  --max-waiting-per-source 1000000 --max-connections-per-source 1000000 --max-connections 30000 --max-mailboxes 30000"
# --sample-every 0: no reads of /metrics during the run, which would be
# work the baseline (which has none) is spared.
LOAD="--mailboxes $M --posters 8 --rate $RATE --size 1024 --warmup 2s --duration $DUR --json --quiet --sample-every 0"
for r in $(seq 1 "$ROUNDS"); do
	port=$((18300 + r * 2))
	# Which server goes first alternates, so that neither always meets the
	# machine in the state the other left it.
	order="base zrc"; [ $((r % 2)) = 0 ] && order="zrc base"
	for which in $order; do
		port=$((port + 1))
		if [ "$which" = base ]; then
			"$bin/base" --listen "127.0.0.1:$port" >/dev/null 2>&1 &
			extra="--metrics-url -"
		else
			env -u GOGC -u GOMEMLIMIT "$bin/zrc" $FLAGS --listen-port "$port" >/dev/null 2>&1 &
			extra=""
		fi
		pid=$!
		for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
		"$bin/zrc" loadtest --url "http://127.0.0.1:$port" $extra --server-pid "$pid" $LOAD >"$bin/$which-$r.json"
		kill "$pid"; wait "$pid" 2>/dev/null || true
	done
done
python3 - "$bin" "$ROUNDS" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
runs = [(json.load(open(f"{d}/base-{r}.json")), json.load(open(f"{d}/zrc-{r}.json"))) for r in range(1, n + 1)]
def ratio(f):
    v = [f(z) / f(b) for b, z in runs]
    return f"{statistics.median(v):.2f}x  (rounds: {', '.join(f'{x:.2f}' for x in v)})"
print("server CPU per delivered message:", ratio(lambda j: j["server"]["cpu_us_per_delivered"]))
print("p50 delivery latency:            ", ratio(lambda j: j["latency_ms"]["p50"]))
print("p99 delivery latency:            ", ratio(lambda j: j["latency_ms"]["p99"]))
print("RSS under load:                  ", ratio(lambda j: j["server"]["rss_bytes"]))
for name, i in (("baseline", 0), ("zrc-rendezvous", 1)):
    v = [p[i] for p in runs]
    print(f"{name}: cpu_us/msg {[round(j['server']['cpu_us_per_delivered']) for j in v]}, p99 ms {[round(j['latency_ms']['p99'], 1) for j in v]},"
          f" sent/s {[round(j['throughput']['sent_per_sec']) for j in v]}, lost {[j['verification']['lost'] for j in v]}, duplicated {[j['verification']['duplicated'] for j in v]}")
PY
