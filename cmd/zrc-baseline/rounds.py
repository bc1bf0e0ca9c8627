"""Summarises the load tool's JSON reports of alternating rounds, for
stores.sh and cluster.sh: per configuration the rounds' CPU per delivered
message, p99, throughput and verification; then each ratio asked for, as
the median of the per-round ratios (A/B/C/D: A/B divided by C/D).

    python3 rounds.py DIR ROUNDS CONFIG,CONFIG,... [A/B[/C/D]:cpu|p99:LABEL ...]

reads DIR/<CONFIG>-<round>.json for rounds 1..ROUNDS.
"""
import json
import statistics
import sys

d, n, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
runs = {w: [json.load(open(f"{d}/{w}-{r}.json")) for r in range(1, n + 1)] for w in configs}
metrics = {"cpu": lambda j: j["server"]["cpu_us_per_delivered"], "p99": lambda j: j["latency_ms"]["p99"]}
cpu = metrics["cpu"]
for w, v in runs.items():
    print(f"{w}: cpu_us/msg {[round(cpu(j)) for j in v]} (median {statistics.median(cpu(j) for j in v):.0f}),"
          f" p99 ms {[round(j['latency_ms']['p99'], 1) for j in v]},"
          f" delivered/s {[round(j['throughput']['delivered_per_sec']) for j in v]},"
          f" lost {[j['verification']['lost'] for j in v]}, duplicated {[j['verification']['duplicated'] for j in v]}")
width = max((len(spec.split(":", 2)[2]) for spec in sys.argv[4:]), default=0)
for spec in sys.argv[4:]:
    pair, metric, label = spec.split(":", 2)
    names = pair.split("/")
    f = metrics[metric]
    v = [f(x) / f(y) for x, y in zip(runs[names[0]], runs[names[1]])]
    if len(names) == 4:  # A/B/C/D: A/B against C/D, round by round
        v = [r / (f(x) / f(y)) for r, x, y in zip(v, runs[names[2]], runs[names[3]])]
    print(f"{label + ':':<{width + 1}} {statistics.median(v):.2f}x  (rounds: {', '.join(f'{x:.2f}' for x in v)})")
