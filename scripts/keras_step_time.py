#!/usr/bin/env python3
"""Keras's training step time for the seed program's teacher and student, to set beside
`kd-wgpu bench` on the same machine.

Usage:
    python3 scripts/keras_step_time.py [--steps 50] [--fits 3] [--predict N] [--json PATH]

Builds both models as the seed program does (Adam, sparse cross-entropy from logits, the
accuracy metric, batch 32), runs one `fit` as a warm-up (graph tracing), then times `fit`
over `--steps` batches `--fits` times and prints the best and every fit's ms/step: Keras's
step time varies by 1.5x from one fit to the next on a shared machine. With --predict N, also
times the teacher's `predict` over N images at batch 32 (the frozen teacher's logits phase:
70,000 images in the seed program), after a warm-up predict. Random images stand in for
Fashion-MNIST (the time does not depend on the values). Needs keras with TensorFlow.
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402
import numpy as np  # noqa: E402


MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")


def seed_model(name):
    """The seed's teacher or student, from the Keras file kd-wgpu's tests check against it."""
    with open(os.path.join(MODELS, f"seed-{name}.json")) as f:
        return keras.models.model_from_json(f.read())


def step_times(model, steps, fits, batch=32):
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    rng = np.random.default_rng(1)
    x = rng.random((steps * batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, steps * batch)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # warm-up: tracing, allocation
    times = []
    for _ in range(fits):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        times.append(1000 * (time.perf_counter() - start) / steps)
    return times


def predict_seconds(model, images, batch=32):
    rng = np.random.default_rng(2)
    x = rng.random((images, 28, 28, 1), dtype=np.float32)
    model.predict(x[: 20 * batch], batch_size=batch, verbose=0)  # warm-up: tracing
    start = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--fits", type=int, default=3)
    parser.add_argument("--predict", type=int, default=0, metavar="N",
                        help="also time the teacher's predict over N images")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    report = {"keras": keras.__version__, "steps": args.steps}
    for name in ["teacher", "student"]:
        times = step_times(seed_model(name), args.steps, args.fits)
        report[name] = {"best_ms": min(times), "fits_ms": times}
        print(f"{name} train step, batch 32: best {min(times):.1f} ms "
              f"(fits: {', '.join(f'{t:.1f}' for t in times)} ms)")
    if args.predict:
        seconds = predict_seconds(seed_model("teacher"), args.predict)
        report["teacher_predict"] = {"images": args.predict, "seconds": seconds}
        print(f"teacher predict, {args.predict} images at batch 32: {seconds:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
