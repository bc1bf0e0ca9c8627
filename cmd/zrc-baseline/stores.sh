#!/usr/bin/env bash
# stores.sh: the same load against the memory store, one node on Redis and
# three nodes on Redis, a fresh redis-server and fresh nodes per round, the
# configurations alternating; prints the medians of CPU per delivered
# message (nodes plus Redis), p99 delivery latency and throughput, and
# their ratios (docs/performance.md, "The Redis store"). One node and
# three nodes run twice each: with Go's default GOMAXPROCS (three nodes
# then schedule six Ps on two cores) and with GOMAXPROCS=1 (each node
# sized to one core, as on machines of its own or under a CPU quota).
#
#   bash cmd/zrc-baseline/stores.sh [ROUNDS] [MAILBOXES] [RATE] [DURATION]
#
# Needs Go, python3, redis-server and Linux (/proc). Loopback only; every
# process it starts it stops by PID.
set -euo pipefail
ROUNDS=${1:-5}; M=${2:-1000}; RATE=${3:-2000}; DUR=${4:-8s}
source "$(dirname "$0")/redis-lib.sh"
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1/health" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
configs=(memory redis1 redis1p1 redis3 redis3p1)
for r in $(seq 1 "$ROUNDS"); do
	k=$(((r - 1) % ${#configs[@]}))
	for which in "${configs[@]:k}" "${configs[@]:0:k}"; do
		run_pids=(); urls=()
		store=""
		if [ "$which" != memory ]; then
			rport=$(free_port)
			redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$bin" >/dev/null 2>&1 &
			rpid=$!; pids+=("$rpid")
			for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
			store="--store redis --redis-url redis://127.0.0.1:$rport/0"
		fi
		n=1; procs=()
		case $which in redis1p1) procs=(GOMAXPROCS=1) ;; redis3) n=3 ;; redis3p1) n=3; procs=(GOMAXPROCS=1) ;; esac
		for _ in $(seq "$n"); do
			port=$(free_port)
			env -u GOGC -u GOMEMLIMIT -u GOMAXPROCS "${procs[@]}" "$bin/zrc" $FLAGS $store --listen-port "$port" >/dev/null 2>&1 &
			run_pids+=("$!"); pids+=("$!")
			urls+=("http://127.0.0.1:$port")
			wait_http "http://127.0.0.1:$port"
		done
		all=$(IFS=,; echo "${run_pids[*]}")
		[ "$which" != memory ] && all="$all,$rpid"
		"$bin/zrc" loadtest --url "$(IFS=,; echo "${urls[*]}")" --server-pid "$all" $LOAD >"$bin/$which-$r.json"
		for p in "${run_pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
		if [ "$which" != memory ]; then kill "$rpid"; wait "$rpid" 2>/dev/null || true; fi
	done
done
python3 - "$bin" "$ROUNDS" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
runs = {w: [json.load(open(f"{d}/{w}-{r}.json")) for r in range(1, n + 1)] for w in ("memory", "redis1", "redis1p1", "redis3", "redis3p1")}
def med(w, f): return statistics.median(f(j) for j in runs[w])
cpu = lambda j: j["server"]["cpu_us_per_delivered"]
for w in runs:
    v = runs[w]
    print(f"{w}: cpu_us/msg {[round(cpu(j)) for j in v]} (median {med(w, cpu):.0f}), p99 ms {[round(j['latency_ms']['p99'], 1) for j in v]},"
          f" delivered/s {[round(j['throughput']['delivered_per_sec']) for j in v]}, lost {[j['verification']['lost'] for j in v]}, duplicated {[j['verification']['duplicated'] for j in v]}")
def ratio(a, b, f):
    v = [f(x) / f(y) for x, y in zip(runs[a], runs[b])]
    return f"{statistics.median(v):.2f}x  (rounds: {', '.join(f'{x:.2f}' for x in v)})"
print("CPU per delivered message, one Redis node (with Redis) / memory store:", ratio("redis1", "memory", cpu))
print("CPU per delivered message, three Redis nodes (with Redis) / one:     ", ratio("redis3", "redis1", cpu))
print("  the same, each of the three nodes at GOMAXPROCS=1:                ", ratio("redis3p1", "redis1", cpu))
print("  the same, every node at GOMAXPROCS=1 (three / one):                ", ratio("redis3p1", "redis1p1", cpu))
print("p99 delivery latency, one Redis node / memory store:                  ", ratio("redis1", "memory", lambda j: j["latency_ms"]["p99"]))
print("p99 delivery latency, three Redis nodes / one:                        ", ratio("redis3", "redis1", lambda j: j["latency_ms"]["p99"]))
PY
