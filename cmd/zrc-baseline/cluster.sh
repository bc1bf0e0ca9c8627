#!/usr/bin/env bash
# cluster.sh: the same load against three nodes on one redis-server and
# three nodes on a Redis Cluster of three masters (no replicas), fresh
# Redis processes and nodes per round, the two alternating; prints the
# medians of CPU per delivered message (nodes plus every Redis process),
# p99 delivery latency and throughput, and their ratios
# (docs/performance.md, "Redis Cluster").
#
#   bash cmd/zrc-baseline/cluster.sh [ROUNDS] [MAILBOXES] [RATE] [DURATION]
#
# Needs Go, python3, redis-server, redis-cli and Linux (/proc). Loopback
# only; every process it starts it stops by PID.
set -euo pipefail
ROUNDS=${1:-5}; M=${2:-1000}; RATE=${3:-2000}; DUR=${4:-8s}
source "$(dirname "$0")/redis-lib.sh"
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1/health" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
# start_redis ARGS...: a redis-server on a free port (whose port + 10000,
# the cluster bus, is free too); sets rport and rpid.
start_redis() {
	while :; do
		rport=$(free_port)
		[ $((rport + 10000)) -lt 65536 ] && break
	done
	mkdir -p "$bin/r$rport"
	redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$bin/r$rport" "$@" >/dev/null 2>&1 &
	rpid=$!; pids+=("$rpid")
	for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
}
for r in $(seq 1 "$ROUNDS"); do
	order="single cluster"
	[ $((r % 2)) = 0 ] && order="cluster single"
	for which in $order; do
		run_pids=(); urls=(); rpids=(); addrs=()
		if [ "$which" = single ]; then
			start_redis
			rpids=("$rpid")
			store="--store redis --redis-url redis://127.0.0.1:$rport/0"
		else
			for _ in 1 2 3; do
				start_redis --cluster-enabled yes --cluster-node-timeout 2000
				rpids+=("$rpid"); addrs+=("127.0.0.1:$rport")
			done
			redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
			for a in "${addrs[@]}"; do
				for _ in $(seq 200); do redis-cli -p "${a#*:}" cluster info | grep -q cluster_state:ok && break; sleep 0.05; done
			done
			store="--store redis --redis-mode cluster --redis-url redis://${addrs[0]}?addr=${addrs[1]}&addr=${addrs[2]}"
		fi
		for _ in 1 2 3; do
			port=$(free_port)
			env -u GOGC -u GOMEMLIMIT -u GOMAXPROCS "$bin/zrc" $FLAGS $store --listen-port "$port" >/dev/null 2>&1 &
			run_pids+=("$!"); pids+=("$!")
			urls+=("http://127.0.0.1:$port")
			wait_http "http://127.0.0.1:$port"
		done
		all=$(IFS=,; echo "${run_pids[*]},${rpids[*]}")
		"$bin/zrc" loadtest --url "$(IFS=,; echo "${urls[*]}")" --server-pid "$all" $LOAD >"$bin/$which-$r.json"
		for p in "${run_pids[@]}" "${rpids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
	done
done
python3 cmd/zrc-baseline/rounds.py "$bin" "$ROUNDS" single,cluster \
	"cluster/single:cpu:CPU per delivered message, three nodes on a three-master Cluster / on one Redis" \
	"cluster/single:p99:p99 delivery latency, the same"
