#!/usr/bin/env python3
"""keras.distillation's Distiller on kd-wgpu's weight files, with kd-wgpu's --distill terms.

Usage:
    kd-wgpu --train-limit 2000 --teacher-epochs 1 --student-epochs 0 --save-dir w \\
        --teacher-channels 16,32
    python3 scripts/keras_distillation_api.py w/teacher.safetensors w/student.safetensors \\
        --alpha 0.5 --temperature 3 --distill logits --distill logits:mse \\
        --distill feature:conv2d_1:conv2d_1 --distill-weights 1,0.5,0.25
    kd-wgpu --teacher w/teacher.safetensors --student-init w/student.safetensors \\
        --teacher-channels 16,32 --train-limit 2000 --no-shuffle --student-epochs 1 \\
        --alpha 0.5 --temperature 3 --distill logits --distill logits:mse \\
        --distill feature:conv2d_1:conv2d_1 --distill-weights 1,0.5,0.25

builds `keras.distillation.Distiller(teacher, student, distillation_losses,
distillation_loss_weights, student_loss_weight=alpha)` with one loss per --distill term
(`logits`: LogitsDistillation(T, KLDivergence()); `logits:mse`: LogitsDistillation(T, "mse");
`feature:T:S`: FeatureDistillation("mse", T, S); `:project` has no Keras counterpart), trains
it one unshuffled epoch (Adam, batch 32) on the first training images from kd-wgpu's starting
weights, and prints the training loss and accuracy and the student's test accuracy to compare
with kd-wgpu's. Needs Keras 3.12 or later with TensorFlow, numpy and safetensors; the data
from Keras's cache (~/.keras/datasets/fashion-mnist, or Keras downloads it).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402
from keras import distillation  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_to_keras  # noqa: E402


def keras_loss(spec, temperature):
    """The keras.distillation loss of one kd-wgpu --distill term."""
    if spec in ("logits", "logits:kl"):
        # An instance: the string default "kl_divergence" takes Keras's other-loss branch.
        return distillation.LogitsDistillation(temperature=temperature, loss=keras.losses.KLDivergence())
    if spec == "logits:mse":
        return distillation.LogitsDistillation(temperature=temperature, loss="mse")
    parts = spec.split(":")
    if len(parts) == 3 and parts[0] == "feature":
        return distillation.FeatureDistillation(loss="mse", teacher_layer_name=parts[1], student_layer_name=parts[2])
    sys.exit(f"{spec}: no keras.distillation counterpart (a projection is kd-wgpu's own)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", help="the teacher's kd-wgpu weights")
    ap.add_argument("student", help="the student's starting weights")
    ap.add_argument("--alpha", type=float, default=0.5, help="student_loss_weight")
    ap.add_argument("--temperature", type=float, default=3.0)
    ap.add_argument("--distill", action="append", help="a kd-wgpu --distill term (repeat)")
    ap.add_argument("--distill-weights", default=None, help="comma-separated, one per term")
    ap.add_argument("--train-limit", type=int, default=2000)
    args = ap.parse_args()
    specs = args.distill or ["logits"]
    weights = [float(w) for w in args.distill_weights.split(",")] if args.distill_weights else None

    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    x_train = (x_train.astype("float32") / 255.0).reshape(-1, 28, 28, 1)[: args.train_limit]
    y_train = y_train[: args.train_limit]
    x_test = (x_test.astype("float32") / 255.0).reshape(-1, 28, 28, 1)
    teacher, student = safetensors_to_keras.load(args.teacher), safetensors_to_keras.load(args.student)
    distiller = distillation.Distiller(
        teacher=teacher,
        student=student,
        distillation_losses=[keras_loss(s, args.temperature) for s in specs],
        distillation_loss_weights=weights,
        student_loss_weight=args.alpha,
    )
    distiller.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy("acc")],
    )
    history = distiller.fit(x_train, y_train, epochs=1, shuffle=False, verbose=0)
    logits = student.predict(x_test, verbose=0)
    print(json.dumps({
        "distill": specs,
        "weights": weights,
        "train": {"loss": history.history["loss"], "acc": history.history["acc"]},
        "student_test_acc": float((logits.argmax(axis=1) == y_test).mean()),
    }, indent=1))


if __name__ == "__main__":
    main()
