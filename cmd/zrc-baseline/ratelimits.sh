#!/usr/bin/env bash
# ratelimits.sh: what redis_shared_rate_limits costs. One node on a fresh
# redis-server per run, the same load with the shared limits on and off,
# alternating, in two settings: "loose", the load tool's usual limits far
# above the load (a node reserves a fifth of a huge bucket, so almost
# never calls Redis), and "tight", 250 sources each with a budget of 19
# requests a second of each kind and about 8 of each sent (a fifth of
# 19 is 3 tokens: a Redis call for every third request). CPU of the node
# and Redis from /proc (docs/performance.md).
#
#   bash cmd/zrc-baseline/ratelimits.sh [ROUNDS] [MAILBOXES] [RATE] [DURATION]
#
# Needs Go, python3, redis-server and Linux (/proc; 127.0.0.0/8 on
# loopback). Every process it starts it stops by PID.
set -euo pipefail
ROUNDS=${1:-3}; M=${2:-1000}; RATE=${3:-2000}; DUR=${4:-6s}
source "$(dirname "$0")/redis-lib.sh"
TIGHT="--rate-limit-window-seconds 1 --rate-limit-posts-per-minute 19 --rate-limit-gets-per-minute 19"
for r in $(seq 1 "$ROUNDS"); do
	order="loose-off loose-on tight-off tight-on"; [ $((r % 2)) = 0 ] && order="tight-on tight-off loose-on loose-off"
	for c in $order; do
		rport=$(free_port); port=$(free_port)
		redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$bin" >/dev/null 2>&1 &
		rpid=$!; pids+=("$rpid")
		for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
		shared=true; [ "${c#*-}" = off ] && shared=false
		limits=""; load=$LOAD
		if [ "${c%-*}" = tight ]; then
			limits=$TIGHT
			load="${LOAD/--posters 8/--posters 250} --source-addrs 250"
		fi
		env -u GOGC -u GOMEMLIMIT "$bin/zrc" $FLAGS $limits --store redis --redis-url "redis://127.0.0.1:$rport/0" \
			--redis-shared-rate-limits="$shared" --listen-port "$port" >/dev/null 2>&1 &
		npid=$!; pids+=("$npid")
		for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
		"$bin/zrc" loadtest --url "http://127.0.0.1:$port" --server-pid "$npid,$rpid" $load >"$bin/$c-$r.json"
		for p in "$npid" "$rpid"; do kill "$p"; wait "$p" 2>/dev/null || true; done
	done
done
python3 - "$bin" "$ROUNDS" <<'PY'
import json, statistics, sys
d, n = sys.argv[1], int(sys.argv[2])
cpu = lambda j: j["server"]["cpu_us_per_delivered"]
for s in ("loose", "tight"):
    on = [json.load(open(f"{d}/{s}-on-{r}.json")) for r in range(1, n + 1)]
    off = [json.load(open(f"{d}/{s}-off-{r}.json")) for r in range(1, n + 1)]
    ratios = [cpu(a) / cpu(b) for a, b in zip(on, off)]
    limited = lambda j: sum(v for k, v in j["statuses"].items() if " 429" in k)
    print(f"{s}: cpu_us/msg shared {[round(cpu(j)) for j in on]} local {[round(cpu(j)) for j in off]};"
          f" shared/local {statistics.median(ratios):.2f}x (rounds {', '.join(f'{x:.2f}' for x in ratios)});"
          f" 429s shared {[limited(j) for j in on]} local {[limited(j) for j in off]};"
          f" lost {[j['verification']['lost'] for j in on + off]}, duplicated {[j['verification']['duplicated'] for j in on + off]}")
PY
