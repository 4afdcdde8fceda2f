#!/usr/bin/env python3
"""The seed program with its teacher frozen (`teacher.trainable = False` before the
Distiller is built, otherwise unchanged), timed phase by phase: the Keras side of kd-wgpu's
default program (`--distill-teacher frozen`), to set the whole program's time beside it.

Usage:
    python3 scripts/keras_frozen_program.py [--train-limit N] [--test-limit N] [--json PATH]

Reads Fashion-MNIST through keras.datasets (copy the four IDX .gz files to
~/.keras/datasets/fashion-mnist/ to run offline). Takes about as long as the seed program:
18 to 50 minutes on two CPU cores; the limits take the first N images, as kd-wgpu's flags of
the same names do, for a run at a fraction of the scale. Needs keras with TensorFlow (and safetensors, which keras_distill_epoch.py imports).
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_distill_epoch import Distiller  # noqa: E402  (the seed's, unchanged)
from keras_step_time import seed_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-limit", type=int, metavar="N", help="train on the first N images only")
    parser.add_argument("--test-limit", type=int, metavar="N", help="evaluate on the first N test images only")
    parser.add_argument("--json", help="also write the phase times here")
    args = parser.parse_args()
    start = time.perf_counter()
    times = {}

    def timed(name, f):
        t = time.perf_counter()
        result = f()
        times[name] = time.perf_counter() - t
        print(f"{name}: {times[name]:.1f} s")
        return result

    teacher, student = seed_model("teacher"), seed_model("student")
    student_scratch = keras.models.clone_model(student)
    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    x_train = (x_train.astype("float32") / 255.0).reshape(-1, 28, 28, 1)
    x_test = (x_test.astype("float32") / 255.0).reshape(-1, 28, 28, 1)
    x_train, y_train = x_train[: args.train_limit], y_train[: args.train_limit]
    x_test, y_test = x_test[: args.test_limit], y_test[: args.test_limit]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    teacher.compile(optimizer=keras.optimizers.Adam(), loss=loss,
                    metrics=[keras.metrics.SparseCategoricalAccuracy()])
    timed("teacher fit", lambda: teacher.fit(x_train, y_train, epochs=5, verbose=2))
    timed("teacher evaluate", lambda: teacher.evaluate(x_test, y_test, verbose=2))
    teacher.trainable = False
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(), metrics=[keras.metrics.SparseCategoricalAccuracy("acc")],
                      student_loss_fn=loss, distillation_loss_fn=keras.losses.KLDivergence(),
                      alpha=0.1, temperature=10)
    timed("distiller fit", lambda: distiller.fit(x_train, y_train, epochs=3, verbose=2))
    timed("distiller evaluate", lambda: distiller.evaluate(x_test, y_test, verbose=2))
    student_scratch.compile(optimizer=keras.optimizers.Adam(), loss=loss,
                            metrics=[keras.metrics.SparseCategoricalAccuracy("acc")])
    timed("scratch fit", lambda: student_scratch.fit(x_train, y_train, epochs=3, verbose=2))
    timed("scratch evaluate", lambda: student_scratch.evaluate(x_test, y_test, verbose=2))
    times["whole program"] = time.perf_counter() - start
    print(f"whole program: {times['whole program']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"keras": keras.__version__, "seconds": times}, f, indent=2)


if __name__ == "__main__":
    main()
