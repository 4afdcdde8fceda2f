#!/usr/bin/env python3
"""Compares the distilled students of two `--runs N` experiments run over the same seeds, run
by run: for instance the frozen teacher against the seed's co-trained one.

Usage:
    python3 scripts/compare_runs.py A.json B.json

A.json and B.json are `--metrics-out` files of `kd-wgpu --runs N` with the same seed, so that
run i of both starts from the same student weights and sample order. Their scratch students are
then the same models, and the script checks that their test accuracies are equal. It prints
one line per run (each distilled student, the scratch student, the co-trained teacher after
distillation where there is one), then the paired difference of the distilled students
(B - A) with its 95% interval from Student's t, as the program reports distilled - scratch.
Needs only Python 3.
"""
import json
import math
import sys

# The 97.5% quantile of Student's t for 1..30 degrees of freedom (two-sided 95%).
T_975 = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
]


def t_975(df):
    # Beyond 30 degrees of freedom the table's last value is within 2% of the true quantile
    # and errs on the wide side.
    return T_975[min(df, len(T_975)) - 1]


def paired(a, b):
    """Mean and sample sd of b - a, and the 95% interval of the mean."""
    diff = [y - x for x, y in zip(a, b)]
    n = len(diff)
    mean = sum(diff) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diff) / (n - 1))
    half = t_975(n - 1) * sd / math.sqrt(n)
    return mean, sd, (mean - half, mean + half)


def load_runs(path):
    try:
        with open(path) as f:
            metrics = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"{path}: cannot read it as JSON: {e}")
    if not isinstance(metrics, dict) or "config" not in metrics:
        sys.exit(f"{path}: not a kd-wgpu --metrics-out file (no \"config\")")
    runs = metrics.get("runs") or []
    if len(runs) < 2:
        sys.exit(f"{path}: {len(runs)} run(s); this needs the metrics of `--runs N` with N >= 2")
    return metrics["config"], runs


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    (config_a, runs_a), (config_b, runs_b) = load_runs(sys.argv[1]), load_runs(sys.argv[2])
    if [r["seed"] for r in runs_a] != [r["seed"] for r in runs_b]:
        sys.exit("the two files' runs have different seeds; pair only runs of the same --seed and --runs")
    name_a = f"A ({config_a['distill_teacher'].lower()}, alpha {config_a['alpha']}, T {config_a['temperature']})"
    name_b = f"B ({config_b['distill_teacher'].lower()}, alpha {config_b['alpha']}, T {config_b['temperature']})"
    print(f"A: {sys.argv[1]}  {name_a}\nB: {sys.argv[2]}  {name_b}\n")
    print("run  seed   distilled A  distilled B  scratch   B - A    teacher after (A, B)")
    for i, (a, b) in enumerate(zip(runs_a, runs_b)):
        scratch = a["scratch"]["test_accuracy"]
        if b["scratch"]["test_accuracy"] != scratch:
            sys.exit(f"run {i + 1}: the scratch students differ ({scratch} and "
                     f"{b['scratch']['test_accuracy']}): not the same starting weights and order")
        da, db = a["distilled"]["test_accuracy"], b["distilled"]["test_accuracy"]
        after = [r.get("teacher_after_distillation") for r in (a, b)]
        after = ", ".join("-" if t is None else f"{t['test_accuracy']:.4f}" for t in after)
        print(f"{i + 1:>3} {a['seed']:>5}   {da:.4f}       {db:.4f}       {scratch:.4f}   {db - da:+.4f}  {after}")
    distilled_a = [r["distilled"]["test_accuracy"] for r in runs_a]
    distilled_b = [r["distilled"]["test_accuracy"] for r in runs_b]
    mean, sd, (lo, hi) = paired(distilled_a, distilled_b)
    below = sum(b < a for a, b in zip(distilled_a, distilled_b))
    print(f"\ndistilled B - distilled A over {len(runs_a)} runs: {mean:+.4f} (sd {sd:.4f}), "
          f"95% interval [{lo:+.4f}, {hi:+.4f}]; B below A in {below} of {len(runs_a)}")
    print("the interval " + ("excludes zero" if lo > 0 or hi < 0 else "contains zero"))


if __name__ == "__main__":
    main()
