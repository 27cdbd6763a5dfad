"""A pytest-benchmark JSON file -> the README's markdown table of speedups.

    pytest benches --benchmark-only --benchmark-json=bench.json
    python benches/speedups.py bench.json [--check]

One row per fast-path benchmark: its group (the kernel), the median of the group's reference test
(``test_<kernel>_reference``, or ``test_<kernel>[reference]`` when one test is parametrized over
the paths), its own median and the ratio, against the project's target where it
has one. ``--check`` exits with status 1 if any target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

#: The issue's targets on the 2-core machine, fast median / reference median.
TARGETS = {
    "test_preprocess_fast": 10.0,
    "test_forward_fast": 30.0,
    "test_forward_fast_sparse": 30.0,
    "test_backward_fast": 20.0,
    "test_discount_fast": 50.0,
    "test_rmsprop_fast": 5.0,
    # The tutorial's own calls, its arrays as they come (issue #20).
    "test_backward_dense_fast": 10.0,
    "test_rmsprop_dict_fast": 5.0,
}


def format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _is_reference(name: str) -> bool:
    return name.endswith("_reference") or name.endswith("[reference]")


def _variant(name: str) -> str:
    """"fast_sparse" of test_forward_fast_sparse, "fast" of test_adam_cartpole[fast]."""
    if name.endswith("]"):
        return name[name.rindex("[") + 1:-1]
    return name[name.index("_fast") + 1:] if "_fast" in name else name


def rows(benchmarks: list[dict]) -> list[dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for bench in benchmarks:
        groups[bench["group"] or ""].append(bench)
    table = []
    for group, members in groups.items():
        references = [b for b in members if _is_reference(b["name"])]
        if len(references) != 1:
            continue
        ref_median = references[0]["stats"]["median"]
        for bench in members:
            if bench is references[0]:
                continue
            name = bench["name"]
            median = bench["stats"]["median"]
            target = TARGETS.get(name)
            speedup = ref_median / median
            table.append({
                "group": group,
                "name": name,
                "variant": _variant(name),
                "reference": ref_median,
                "fast": median,
                "speedup": speedup,
                "target": target,
                "met": None if target is None else speedup >= target,
            })
    return table


def markdown(table: list[dict], machine: dict | None = None) -> str:
    lines = []
    if machine:
        cpu = machine.get("cpu", {})
        brand = cpu.get("brand_raw") or machine.get("processor") or "unknown CPU"
        count = cpu.get("count")
        line = f"Machine: {brand}" + (f", {count} logical cores" if count else "")
        line += f", Python {machine.get('python_version', '?')}"
        fp = machine.get("fastpong")
        if fp:
            line += (f", NumPy {fp['numpy']}, fastpong {fp['version']} with {fp['threads']} "
                     f"kernel thread(s){'' if fp['openmp'] else ' (no OpenMP)'}; load average "
                     f"{fp['load_average'][0]:.1f} at the start")
        lines += [line + ".", ""]
    lines += [
        "| kernel | fast path | reference median | fast median | speedup | target |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in table:
        if r["target"] is None:
            target = "—"
        else:
            target = f"{r['target']:g}x {'✓' if r['met'] else '✗'}"
        lines.append(
            f"| {r['group']} | {r['variant']} | {format_seconds(r['reference'])} | "
            f"{format_seconds(r['fast'])} | {r['speedup']:,.1f}x | {target} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_file", help="output of pytest --benchmark-json")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    with open(args.json_file, encoding="utf-8") as f:
        data = json.load(f)
    table = rows(data.get("benchmarks", []))
    print(markdown(table, data.get("machine_info")))
    missed = [r for r in table if r["met"] is False]
    if args.check and missed:
        for r in missed:
            print(f"missed: {r['name']} {r['speedup']:.1f}x < {r['target']:g}x", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
