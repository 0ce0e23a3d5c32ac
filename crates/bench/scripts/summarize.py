#!/usr/bin/env python3
"""Turns the JSON lines of `talk bench` runs (run-all.sh) into the markdown
tables of BENCHMARKS.md: medians over the runs of each size."""
import json
import statistics
import sys
from collections import defaultdict


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def load(path):
    runs = []
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if line.startswith("{"):
                try:
                    runs.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return runs


def server(usage, key):
    return (usage.get("server") or {}).get(key)


def peer_of(run):
    return run.get("peer") or "talk"


def fanout_runs(runs, interval_ms, peer):
    return [run for run in runs
            if run["scenario"] == "fanout" and run["config"]["interval_ms"] == interval_ms
            and peer_of(run) == peer]


def fanout_table(runs, interval_ms, peer="talk"):
    rows = defaultdict(list)
    for run in fanout_runs(runs, interval_ms, peer):
        result = dict(run["result"])
        result["load"] = (run.get("load_average") or {}).get("before")
        rows[run["config"]["pollers"]].append(result)
    print("| pollers | runs | p50 ms | p90 ms | p99 ms | max ms | best p99 ms | delivered / expected | missing | dup | out of order | server CPU % | server RSS MiB | bench CPU % | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for pollers in sorted(rows):
        results = rows[pollers]
        lat = lambda key: median([r["latency"][key] for r in results])
        comp = lambda key: sum(r["completeness"][key] for r in results)
        delivered = sum(r["deliveries"] for r in results)
        expected = sum(r["expected_deliveries"] for r in results)
        rss = median([server(r["usage"], "rss_kib") for r in results])
        best = min(r["latency"]["p99_ms"] for r in results)
        print(f"| {pollers:,} | {len(results)} | {fmt(lat('p50_ms'))} | {fmt(lat('p90_ms'))} | {fmt(lat('p99_ms'))} | {fmt(lat('max_ms'))} | {fmt(best)} "
              f"| {delivered:,} / {expected:,} | {comp('missing')} | {comp('duplicates')} | {comp('out_of_order')} "
              f"| {fmt(median([server(r['usage'], 'cpu_percent') for r in results]))} "
              f"| {fmt(rss / 1024 if rss else None)} | {fmt(median([r['usage']['bench']['cpu_percent'] for r in results]))} | {fmt(median([r['load'] for r in results]), 2)} |")


def side_by_side(runs, interval_ms, peers):
    """p99 of each peer beside talk's: medians, best run in brackets."""
    cells = defaultdict(dict)
    for peer in peers:
        rows = defaultdict(list)
        for run in fanout_runs(runs, interval_ms, peer):
            rows[run["config"]["pollers"]].append(run["result"])
        for pollers, results in rows.items():
            p99 = [r["latency"]["p99_ms"] for r in results if r["latency"]["count"]]
            clean = sum(1 for r in results if r.get("clean"))
            cells[pollers][peer] = (f"{fmt(median(p99))} ({fmt(min(p99) if p99 else None)}), "
                                    f"{clean}/{len(results)} clean")
    print("| pollers | " + " | ".join(f"{peer} p99 ms (best), clean runs" for peer in peers) + " |")
    print("|---:|" + "---|" * len(peers))
    for pollers in sorted(cells):
        print(f"| {pollers:,} | " + " | ".join(cells[pollers].get(peer, "–") for peer in peers) + " |")


def floor_table(runs):
    """loopback-floor.py's runs: the kernel's cost of one send per answer.
    Its first version's reader waited in epoll (no `reader` in its lines)."""
    rows = defaultdict(list)
    for run in runs:
        if run["scenario"] == "loopback_floor":
            rows[(run.get("reader", "epoll"), run["connections"])].append(run)
    print("| reader | connections | runs | µs per send | kernel µs | user µs | 99% of a burst sent ms | whole burst ms | load avg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for reader, connections in sorted(rows):
        group = rows[(reader, connections)]
        cell = lambda key, digits=1: fmt(median([run[key] for run in group]), digits)
        print(f"| {reader} | {connections:,} | {len(group)} | {cell('send_us', 2)} | {cell('kernel_us', 2)} | {cell('user_us', 2)} "
              f"| {cell('p99_sent_ms')} | {cell('span_ms')} | {cell('load_average', 2)} |")


def capacity_table(runs):
    rows = defaultdict(list)
    for run in runs:
        if run["scenario"] == "capacity":
            rows[run["config"]["pollers"]].append(run["result"])
    print("| pollers | runs | hold s | ready (min) | alive at end (min) | pollers with errors (sum) | held polls answered in hold | server RSS before → held MiB | KiB per held poll | server CPU % in hold | server CPU % in ramp |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for pollers in sorted(rows):
        results = rows[pollers]
        before = median([r["server_rss_before_kib"] for r in results])
        held = median([r["server_rss_held_kib"] for r in results])
        print(f"| {pollers:,} | {len(results)} | {fmt(median([r['hold_secs'] for r in results]), 0)} "
              f"| {min(r['ready'] for r in results):,} | {min(r['alive_at_end'] for r in results):,} "
              f"| {sum(r['pollers_with_errors'] for r in results)} | {fmt(median([r['held_polls_during_hold'] for r in results]))} "
              f"| {fmt(before / 1024 if before else None)} → {fmt(held / 1024 if held else None)} "
              f"| {fmt(median([r['server_rss_per_poll_kib'] for r in results]), 2)} "
              f"| {fmt(median([server(r['hold_usage'], 'cpu_percent') for r in results]), 2)} "
              f"| {fmt(median([server(r['ramp'], 'cpu_percent') for r in results]))} |")


def throughput_tables(runs):
    rows = defaultdict(list)
    for run in runs:
        if run["scenario"] == "throughput":
            config = run["config"]
            rows[(config["channels"], config["pollers_per_channel"])].append(run["result"])
    print("| channels × pollers | runs | best rate msgs/s (median) | deliveries/s at best (median) | best rates of the runs |")
    print("|---|---:|---:|---:|---|")
    for key in sorted(rows):
        results = rows[key]
        best = [r["best_rate"] or 0 for r in results]
        print(f"| {key[0]} × {key[1]} | {len(results)} | {fmt(median(best), 0)} "
              f"| {fmt(median([r['best_deliveries_per_second'] for r in results]), 0)} | {', '.join(fmt(b, 0) for b in best)} |")
    for key in sorted(rows):
        print()
        print(f"Steps, {key[0]} channels × {key[1]} pollers (medians over the runs that reached the step):")
        print()
        print("| rate msgs/s | runs | sent/s | deliveries/s | p50 ms | p99 ms | max ms | missing | passed | server CPU % | bench CPU % |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        steps = defaultdict(list)
        for result in rows[key]:
            for step in result["steps"]:
                steps[step["rate"]].append(step)
        for rate in sorted(steps):
            group = steps[rate]
            print(f"| {fmt(rate, 0)} | {len(group)} | {fmt(median([s['sends']['achieved_rate'] for s in group]), 0)} "
                  f"| {fmt(median([s['deliveries_per_second'] for s in group]), 0)} "
                  f"| {fmt(median([s['latency']['p50_ms'] for s in group]))} | {fmt(median([s['latency']['p99_ms'] for s in group]))} "
                  f"| {fmt(median([s['latency']['max_ms'] for s in group]))} | {sum(s['completeness']['missing'] for s in group)} "
                  f"| {sum(1 for s in group if s['passed'])}/{len(group)} "
                  f"| {fmt(median([server(s['usage'], 'cpu_percent') for s in group]))} | {fmt(median([s['usage']['bench']['cpu_percent'] for s in group]))} |")


def main():
    runs = load(sys.argv[1] if len(sys.argv) > 1 else "bench-results.jsonl")
    peers = sorted({peer_of(run) for run in runs if run["scenario"] == "fanout"},
                   key=lambda peer: (peer != "talk", peer))
    for interval_ms, title in ((100, "10 msgs/s (100 messages)"),
                               (500, "2 msgs/s (20 messages, 500 ms apart)")):
        for peer in peers:
            if fanout_runs(runs, interval_ms, peer):
                print(f"### Fan-out, {title}: {peer}\n")
                fanout_table(runs, interval_ms, peer)
                print()
        present = [peer for peer in peers if fanout_runs(runs, interval_ms, peer)]
        if len(present) > 1:
            print(f"### Fan-out, {title}: side by side\n")
            side_by_side(runs, interval_ms, present)
            print()
    if any(run["scenario"] == "loopback_floor" for run in runs):
        print("### Loopback floor (loopback-floor.py)\n")
        floor_table(runs)
        print()
    print("\n### Capacity\n")
    capacity_table(runs)
    print("\n### Throughput\n")
    throughput_tables(runs)


main()
