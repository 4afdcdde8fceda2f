#!/usr/bin/env python3
"""One markdown table row per `--runs N` experiment: where did distillation help?

Usage:
    python3 scripts/regimes_table.py "label" A.json ["label" B.json ...]

Each file is a `--metrics-out` file of `kd-wgpu --runs N` (or of `kd-wgpu merge`). A row
gives the regime's settings as the file records them (alpha, T, the --distill terms and their
weights, --labelled, augmentation), the teacher's test accuracy, the distilled and the scratch
students' mean test accuracy with its standard deviation, the paired difference with its 95%
interval (all as the program's statistics give them), and the classes whose paired difference
has a 95% interval clear of zero. Needs only Python 3.
"""
import json
import sys


def settings(config):
    terms = config.get("distill") or ["logits"]
    weights = config.get("distill_weights") or [1] * len(terms)
    parts = [term if w == 1 else f"{term} x{w:g}" for term, w in zip(terms, weights)]
    s = f"alpha {config['alpha']:g}, T {config['temperature']:g}, {' + '.join(parts)}"
    if config.get("labelled"):
        s += f", {config['labelled']} labelled"
    if config.get("teacher_augment"):
        s += f", teacher moved {config['teacher_augment']} px, {config['teacher_epochs']} epochs"
    if config.get("student_augment"):
        s += f", students moved {config['student_augment']} px"
    if config.get("distill_teacher", "Frozen").lower() != "frozen":
        s += ", co-trained teacher"
    return s


def points(v):
    return f"{100 * v:+.2f}"


def row(label, path):
    with open(path) as f:
        m = json.load(f)
    st = m.get("statistics")
    if not st:
        sys.exit(f"{path}: no statistics (it is not a --runs experiment of two or more runs)")
    lo, hi = st["difference_ci95"]
    moved = [
        f"{c['class']} {points(c['difference_mean'])}"
        for c in st["per_class"]
        if c["difference_ci95"][0] > 0 or c["difference_ci95"][1] < 0
    ]
    cells = [
        label,
        settings(m["config"]),
        f"{m['teacher']['test_accuracy']:.4f}",
        f"{st['distilled_mean']:.4f} ± {st['distilled_std']:.4f}",
        f"{st['scratch_mean']:.4f} ± {st['scratch_std']:.4f}",
        f"{points(st['difference_mean'])} [{points(lo)}, {points(hi)}]",
        ", ".join(moved) or "none",
    ]
    return "| " + " | ".join(cells) + " |"


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit(__doc__)
    print("| regime | settings | teacher | distilled | scratch | distilled - scratch, points [95%] | classes that moved (points) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, path in zip(args[::2], args[1::2]):
        print(row(label, path))


if __name__ == "__main__":
    main()
