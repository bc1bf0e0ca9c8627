#!/usr/bin/env bash
# replicas.sh: what redis_wait_replicas = 1 costs. One node on a master
# with one replica, the same load with redis_wait_replicas 0 and 1,
# alternating, a fresh master and replica per run; CPU of the node, the
# master and the replica from /proc (docs/performance.md, "The Redis
# store").
#
#   bash cmd/zrc-baseline/replicas.sh [ROUNDS] [MAILBOXES] [RATE] [DURATION]
#
# Needs Go, python3, redis-server and Linux (/proc). Loopback only; every
# process it starts it stops by PID.
set -euo pipefail
ROUNDS=${1:-2}; M=${2:-1000}; RATE=${3:-2000}; DUR=${4:-6s}
source "$(dirname "$0")/redis-lib.sh"
for r in $(seq 1 "$ROUNDS"); do
	order="0 1"; [ $((r % 2)) = 0 ] && order="1 0"
	for w in $order; do
		mport=$(free_port); rport=$(free_port); port=$(free_port)
		mkdir -p "$bin/m$r$w" "$bin/r$r$w"
		redis-server --port "$mport" --bind 127.0.0.1 --save '' --appendonly no --dir "$bin/m$r$w" >/dev/null 2>&1 &
		mpid=$!; pids+=("$mpid")
		redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$bin/r$r$w" --replicaof 127.0.0.1 "$mport" >/dev/null 2>&1 &
		rpid=$!; pids+=("$rpid")
		for _ in $(seq 100); do redis-cli -p "$rport" info replication 2>/dev/null | grep -q 'master_link_status:up' && break; sleep 0.1; done
		env -u GOGC -u GOMEMLIMIT "$bin/zrc" $FLAGS --store redis --redis-url "redis://127.0.0.1:$mport/0" \
			--redis-wait-replicas "$w" --listen-port "$port" >/dev/null 2>&1 &
		npid=$!; pids+=("$npid")
		for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
		"$bin/zrc" loadtest --url "http://127.0.0.1:$port" --server-pid "$npid,$mpid,$rpid" $LOAD >"$bin/w$w-$r.json"
		for p in "$npid" "$mpid" "$rpid"; do kill "$p"; wait "$p" 2>/dev/null || true; done
	done
done
python3 - "$bin" "$ROUNDS" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
for r in range(1, n + 1):
    for w in (0, 1):
        j = json.load(open(f"{d}/w{w}-{r}.json"))
        refused = sum(v for k, v in j["statuses"].items() if k.startswith("POST 503"))
        print(f"round {r} redis_wait_replicas={w}: cpu_us/msg {j['server']['cpu_us_per_delivered']:.0f}, p99 {j['latency_ms']['p99']:.1f} ms,"
              f" sent/s {j['throughput']['sent_per_sec']:.0f}, POST 503 {refused}, lost {j['verification']['lost']}, duplicated {j['verification']['duplicated']}")
PY
