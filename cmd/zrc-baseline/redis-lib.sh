# redis-lib.sh: what stores.sh and replicas.sh share, sourced by both
# after they set ROUNDS, M, RATE and DUR: a static build of the server in
# a scratch directory, the load and the server flags, a free-port helper,
# and a trap that stops every process listed in pids by PID.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$bin"; }
trap cleanup EXIT
CGO_ENABLED=0 go build -o "$bin/zrc" ./cmd/zrc-rendezvous
ulimit -n "$(ulimit -Hn)"
# Defaults, but for the per-source limits: all the load comes from one host.
FLAGS="--listen-addr 127.0.0.1 --rate-limit-posts-per-minute 100000000 --rate-limit-gets-per-minute 100000000
  --max-waiting-per-source 1000000 --max-connections-per-source 1000000 --max-connections 30000 --max-mailboxes 30000"
# --sample-every 0: no reads of /metrics during the run, which would be
# work the baseline (which has none) is spared.
LOAD="--mailboxes $M --posters 8 --rate $RATE --size 1024 --warmup 2s --duration $DUR --json --quiet --sample-every 0"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
