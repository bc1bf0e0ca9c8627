#!/usr/bin/env bash
# stores.sh: the same load against the memory store, one node on Redis and
# three nodes on Redis (and the controls below), a fresh redis-server and
# fresh nodes per round, the configurations alternating; prints the
# medians of CPU per delivered message (nodes plus Redis), p99 delivery
# latency and throughput, and their ratios (docs/performance.md, "The
# Redis store"). One node and three nodes run twice each: with Go's
# default GOMAXPROCS (three nodes then schedule six Ps on two cores) and
# with GOMAXPROCS=1 (each node sized to one core, as on machines of its
# own or under a CPU quota). Three nodes run a third time with each
# mailbox's posts on the node of its long-polls (loadtest --same-node, a
# load balancer routing by path): what three processes cost when no
# message crosses between them. And three memory-store nodes routed the
# same way, sharing nothing: what three processes cost on this machine
# whatever the store.
#
#   bash cmd/zrc-baseline/stores.sh [ROUNDS] [MAILBOXES] [RATE] [DURATION]
#
# Needs Go, python3, redis-server and Linux (/proc). Loopback only; every
# process it starts it stops by PID.
set -euo pipefail
ROUNDS=${1:-5}; M=${2:-1000}; RATE=${3:-2000}; DUR=${4:-8s}
source "$(dirname "$0")/redis-lib.sh"
wait_http() { for _ in $(seq 100); do curl -sf -o /dev/null "$1/health" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
configs=(memory memory3 redis1 redis1p1 redis3 redis3p1 redis3same)
for r in $(seq 1 "$ROUNDS"); do
	k=$(((r - 1) % ${#configs[@]}))
	for which in "${configs[@]:k}" "${configs[@]:0:k}"; do
		run_pids=(); urls=()
		store=""
		if [[ $which != memory* ]]; then
			rport=$(free_port)
			redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$bin" >/dev/null 2>&1 &
			rpid=$!; pids+=("$rpid")
			for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
			store="--store redis --redis-url redis://127.0.0.1:$rport/0"
		fi
		n=1; procs=(); route=""
		case $which in
		redis1p1) procs=(GOMAXPROCS=1) ;;
		redis3) n=3 ;;
		redis3p1) n=3; procs=(GOMAXPROCS=1) ;;
		redis3same | memory3) n=3; route=--same-node ;;
		esac
		for _ in $(seq "$n"); do
			port=$(free_port)
			env -u GOGC -u GOMEMLIMIT -u GOMAXPROCS "${procs[@]}" "$bin/zrc" $FLAGS $store --listen-port "$port" >/dev/null 2>&1 &
			run_pids+=("$!"); pids+=("$!")
			urls+=("http://127.0.0.1:$port")
			wait_http "http://127.0.0.1:$port"
		done
		all=$(IFS=,; echo "${run_pids[*]}")
		[[ $which != memory* ]] && all="$all,$rpid"
		"$bin/zrc" loadtest --url "$(IFS=,; echo "${urls[*]}")" --server-pid "$all" $LOAD $route >"$bin/$which-$r.json"
		for p in "${run_pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
		if [[ $which != memory* ]]; then kill "$rpid"; wait "$rpid" 2>/dev/null || true; fi
	done
done
python3 cmd/zrc-baseline/rounds.py "$bin" "$ROUNDS" memory,memory3,redis1,redis1p1,redis3,redis3p1,redis3same \
	"redis1/memory:cpu:CPU per delivered message, one Redis node (with Redis) / memory store" \
	"redis3/redis1:cpu:CPU per delivered message, three Redis nodes (with Redis) / one" \
	"redis3p1/redis1:cpu:  the same, each of the three nodes at GOMAXPROCS=1" \
	"redis3p1/redis1p1:cpu:  the same, every node at GOMAXPROCS=1 (three / one)" \
	"redis3same/redis1:cpu:  the same, each mailbox's posts on the node of its long-polls" \
	"redis3/redis3same:cpu:three nodes, every message crossing / none crossing" \
	"memory3/memory:cpu:three memory-store nodes sharing nothing / one" \
	"redis3/redis1/memory3/memory:cpu:three Redis nodes / one, against three memory nodes / one" \
	"redis1/memory:p99:p99 delivery latency, one Redis node / memory store" \
	"redis3/redis1:p99:p99 delivery latency, three Redis nodes / one"
