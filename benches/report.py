#!/usr/bin/env python3
"""Prints one markdown table of every benchmark ratio from one run of benches/run.sh.

Reads criterion's estimates (target/criterion/**/new/) for the engine and client-stack
benches, and the JSON rows the other bench binaries and benches/http.sh write under
target/bench-results/. Figures are medians; ratios are ours / peer from the same run.
"""
import glob
import json
import os
import sys

TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "target")


def criterion_medians():
    """full benchmark id -> median time in ns."""
    out = {}
    for bench in glob.glob(os.path.join(TARGET, "criterion", "**", "new", "benchmark.json"),
                           recursive=True):
        with open(bench) as f:
            meta = json.load(f)
        with open(os.path.join(os.path.dirname(bench), "estimates.json")) as f:
            est = json.load(f)
        out[meta["full_id"]] = est["median"]["point_estimate"]
    return out


# (label, ours id, peer id, peer name, max ratio)
ENGINE = [
    ("one keyed check, hot key, default clocks",
     "hot_key/tower_throttle/default_clock", "hot_key/governor/default_clock",
     "governor 0.10 keyed (DashMap, quanta)", 0.8),
    ("one keyed check, hot key, ours from a multi_thread task",
     "hot_key/tower_throttle/default_clock_in_task", "hot_key/governor/default_clock",
     "governor 0.10 keyed (DashMap, quanta)", 0.8),
    ("one keyed check, hot key, manual / fake clocks",
     "hot_key/tower_throttle/manual_clock", "hot_key/governor/fake_clock",
     "governor 0.10 keyed (DashMap, fake clock)", None),
    ("two limits on one request (per-IP + global), hot keys",
     "two_limits/tower_throttle/default_clock", "two_limits/governor/default_clock",
     "governor 0.10 keyed + direct check (not atomic)", None),
    ("one keyed check, 1,000,000 keys, default clocks",
     "1M_keys/tower_throttle/default_clock", "1M_keys/governor/default_clock",
     "governor 0.10 keyed (DashMap, quanta)", 1.0),
]

CLIENT_ADDED_NS = 1000.0


def fmt(x):
    if x is None:
        return "—"
    if x == int(x) and abs(x) < 1e12:
        return f"{int(x):,}"
    return f"{x:,.1f}"


def main():
    rows = []  # (label, ours, peer, unit, peer name, ratio, target, met)
    med = criterion_medians()
    for label, ours_id, peer_id, peer_name, max_ratio in ENGINE:
        if ours_id in med and peer_id in med:
            ours, peer = med[ours_id], med[peer_id]
            ratio = ours / peer
            met = None if max_ratio is None else ratio <= max_ratio
            rows.append((label, ours, peer, "ns", peer_name, f"{ratio:.2f}",
                         "—" if max_ratio is None else f"≤ {max_ratio}", met))
    cases = sorted({k.rsplit("/", 1)[0] for k in med if k.startswith("client_stack/")})
    for case in cases:
        bare, stack = med.get(case + "/bare"), med.get(case + "/stack")
        if bare is None or stack is None:
            continue
        added = stack - bare
        rows.append((f"client stack, {case.split('/', 1)[1]}: added per request", added,
                     bare, "ns", "the bare service", f"{stack / bare:.2f}",
                     f"≤ {CLIENT_ADDED_NS:.0f} ns added", added <= CLIENT_ADDED_NS))
    for path in sorted(glob.glob(os.path.join(TARGET, "bench-results", "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        with open(path) as f:
            for r in json.load(f):
                ours, peer = r["ours"], r["peer"]
                # A row may carry its own ratio (e.g. the median of paired ratios).
                value = r.get("ratio")
                if value is None and peer:
                    value = ours / peer
                ratio = "—" if value is None else f"{value:.2f}"
                targets, met = [], []
                if r.get("max_ratio") is not None:
                    targets.append(f"ratio ≤ {r['max_ratio']}")
                    met.append(value is not None and value <= r["max_ratio"])
                if r.get("min_ratio") is not None:
                    targets.append(f"ratio ≥ {r['min_ratio']}")
                    met.append(value is not None and value >= r["min_ratio"])
                if r.get("max_ours") is not None:
                    targets.append(f"ours ≤ {fmt(r['max_ours'])}")
                    met.append(ours <= r["max_ours"])
                rows.append((f"{name}: {r['metric']}", ours, peer, r["unit"], r["peer_name"],
                             ratio, ", ".join(targets) or "—",
                             all(met) if met else None))
    if not rows:
        print("no results found under", TARGET, file=sys.stderr)
        return 1
    print("| benchmark | ours | peer | unit | peer | ours / peer | target | met |")
    print("|---|---:|---:|---|---|---:|---|---|")
    for label, ours, peer, unit, peer_name, ratio, target, met in rows:
        verdict = "—" if met is None else ("yes" if met else "**no**")
        print(f"| {label} | {fmt(ours)} | {fmt(peer)} | {unit} | {peer_name} | {ratio} "
              f"| {target} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
