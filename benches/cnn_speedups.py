"""benches/test_bench_cnn.py's pytest-benchmark JSON -> the README's "MIT lab CNN kernels" table.

    python -m pytest benches/test_bench_cnn.py --benchmark-only --benchmark-json=cnn.json
    python benches/cnn_speedups.py cnn.json [--check]

One row per group: the medians of the reference (NumPy float64), the NumPy float32 version
(im2col + np.matmul, where the group has one), TensorFlow (where it is installed: ``pip install
".[keras]"``) and fastpong, and fastpong's speedup over each. ``--check`` exits with status 1 when
a target (over NumPy float32, or TensorFlow where it ran) is missed.
"""

from __future__ import annotations

import argparse
import json
import sys

from speedups import format_seconds

#: The issue's targets on the 2-core machine: fastpong's speedup over the NumPy float32 version.
TARGETS = {"cnn-forward-batch8": 5.0, "cnn-backward-5games": 3.0}
#: And over the lab's network in TensorFlow (tf.function, oneDNN), where TensorFlow is installed.
TF_TARGETS = {"cnn-backward-5games": 3.0}
LABELS = {
    "cnn-forward-batch8": "forward, 8 frame changes -> probabilities",
    "cnn-backward-5games": "backward, 5,000 steps (one 5-game iteration)",
    "lab-frame-change": "two RGB frames -> 40x40 change",
    "lab-frame-change-batch8": "8 pairs of RGB frames -> 40x40 changes",
    "lab-differencer-lane": "16 steps of a lane of 4 games -> 40x40 changes (LabFrameDifferencer)",
}


def table(benchmarks: list[dict]) -> tuple[list[str], bool]:
    medians: dict[str, dict[str, float]] = {}
    for bench in benchmarks:
        side = bench["name"].rsplit("_", 1)[-1]  # reference, numpy32, tensorflow or fast
        medians.setdefault(bench["group"], {})[side] = bench["stats"]["median"]
    lines = ["| kernel | reference (NumPy float64) | NumPy float32 (im2col + matmul) "
             "| TensorFlow (tf.function) | fastpong | vs reference | vs NumPy float32 | vs TensorFlow "
             "| target |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    ok = True
    for group, label in LABELS.items():
        m = medians.get(group)
        if not m or "fast" not in m or "reference" not in m:
            continue
        fast = m["fast"]
        numpy32, tensorflow = m.get("numpy32"), m.get("tensorflow")
        targets = []
        for side, goals, name in (("numpy32", TARGETS, "NumPy float32"), ("tensorflow", TF_TARGETS, "TensorFlow")):
            goal = goals.get(group)
            if goal:
                targets.append(f"{goal:g}x {name}")
                if m.get(side) and m[side] / fast < goal:
                    ok = False
        lines.append(
            f"| {label} | {format_seconds(m['reference'])} | "
            f"{format_seconds(numpy32) if numpy32 else '-'} | "
            f"{format_seconds(tensorflow) if tensorflow else '-'} | {format_seconds(fast)} | "
            f"{m['reference'] / fast:.0f}x | {f'{numpy32 / fast:.1f}x' if numpy32 else '-'} | "
            f"{f'{tensorflow / fast:.1f}x' if tensorflow else '-'} | {', '.join(targets)} |")
    return lines, ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_file")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    with open(args.json_file) as f:
        data = json.load(f)
    lines, ok = table(data["benchmarks"])
    print("\n".join(lines))
    info = data.get("machine_info", {})
    print(f"\n{info.get('cpu', {}).get('brand_raw', '?')}, load average "
          f"{info.get('fastpong', {}).get('load_average', '?')}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
